"""Scene writes: named shape keys, keyframes, packed image planes, the turntable camera rig.

Each function gets everything it needs already checked (or checks before its first write), so
a failure leaves the scene as it was. Keyframe curves are found through the Blender 5.0 channelbag API (slotted actions,
4.4+) or, on 4.2-4.3, through `Action.fcurves`.
"""

from __future__ import annotations

import hashlib
import math

import bpy
import numpy as np

from .wire.client import ServerError

KEY_PREFIX = "FE "
NAME_BYTES = 63  # Blender's name limit is 63 bytes of UTF-8, not 63 characters
SLIDER_RANGE = (-2.0, 2.0)  # an edit's key holds intensity 1; its value is the intensity (edits are linear)
PLANE_SIZE_M = 0.24
PLANE_GAP_M = 0.03
SAME_SHAPE_M = 1e-6  # a re-edit whose vertices move less than this leaves the key as it is


def fit_name(prefix: str, text: str) -> str:
    """prefix + text within Blender's 63-byte name limit, never cut inside a UTF-8 character.

    A name that does not fit is cut and ends in a short hash of the whole text, so two long
    prompts that share their first 50-odd bytes still get two names, and the same prompt always
    gets the same name (Keyframe finds it; Blender never has to add '.001').
    """
    name = prefix + text
    if len(name.encode("utf-8")) <= NAME_BYTES:
        return name
    tag = " ~" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]
    head = name.encode("utf-8")[: NAME_BYTES - len(tag)].decode("utf-8", "ignore").rstrip()
    return head + tag


def prompt_text(prompt: str) -> str:
    """'A person who is smiling' -> 'smiling' (spaces collapsed, the paper's lead-in dropped)."""
    text = " ".join(prompt.split())
    for lead in ("A person who is ", "a person who is ", "A person ", "a person "):
        text = text.removeprefix(lead)
    return text


def key_name(prompt: str) -> str:
    """'A person who is smiling' -> 'FE smiling' (at most 63 bytes, Blender's name limit)."""
    return fit_name(KEY_PREFIX, prompt_text(prompt))


def key_coords(kb) -> np.ndarray:
    co = np.empty(len(kb.data) * 3, np.float32)
    kb.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def keyed_frames(id_data, data_path: str, index: int = 0) -> list[float]:
    fc = fcurve(id_data, data_path, index)
    return [kp.co[0] for kp in fc.keyframe_points] if fc is not None else []


def check_key_write(obj, name: str, coords: np.ndarray, replace_keyed: bool) -> bool:
    """Before anything is written: may the key `name` take these positions? -> whether its shape changes.

    A key with keyframes keeps its shape unless replace_keyed: re-editing never changes existing
    animation silently (an identical shape is fine: then only the value changes).
    """
    keys = obj.data.shape_keys
    kb = keys.key_blocks.get(name) if keys is not None else None
    if kb is None:
        return True
    moved = float(np.abs(key_coords(kb) - coords).max()) if len(kb.data) == len(coords) else math.inf
    if moved <= SAME_SHAPE_M:
        return False
    frames = keyed_frames(keys, kb.path_from_id("value"))
    if frames and not replace_keyed:
        shown = ", ".join(f"{f:g}" for f in frames[:6]) + (" ..." if len(frames) > 6 else "")
        raise ServerError(
            "keyed",
            f"'{name}' has keyframes (frames {shown}) and this edit would change its shape (by up to "
            f"{moved * 1000:.2f} mm), which would change that animation: nothing was written. Tick "
            f"'Replace keyed shapes' to overwrite it, or rename the key to keep both",
        )
    return True


def write_shape_key(obj, name: str, coords: np.ndarray):
    """Create or update the shape key `name` with positions coords [V,3]; never duplicates it.

    The key is a live slider over [-2, 2]: it holds the edit at intensity 1, its value is the intensity.
    """
    if obj.data.shape_keys is None:
        obj.shape_key_add(name="Basis", from_mix=False)
    kb = obj.data.shape_keys.key_blocks.get(name)
    if kb is None:
        kb = obj.shape_key_add(name=name, from_mix=False)
        if kb.name != name:  # Blender renamed it (too long or taken): never leave a stray key
            obj.shape_key_remove(kb)
            raise ServerError("invalid_name", f"Blender could not name a shape key '{name}'")
    kb.data.foreach_set("co", np.ascontiguousarray(coords, np.float32).ravel())
    kb.slider_min, kb.slider_max = SLIDER_RANGE
    obj.data.update()
    return kb


def fcurve(id_data, data_path: str, index: int = 0):
    """The F-curve animating `data_path` of an ID, or None."""
    ad = id_data.animation_data
    action = ad.action if ad is not None else None
    if action is None:
        return None
    slot = getattr(ad, "action_slot", None)
    if slot is not None:  # slotted actions (4.4+; the only way in 5.0)
        from bpy_extras import anim_utils

        bag = anim_utils.action_get_channelbag_for_slot(action, slot)
        curves = bag.fcurves if bag is not None else ()
    else:  # 4.2-4.3
        curves = action.fcurves
    return next((fc for fc in curves if fc.data_path == data_path and fc.array_index == index), None)


def key_at(fc, frame: float):
    """The keyframe point of fc at `frame`, or None."""
    return next((kp for kp in fc.keyframe_points if abs(kp.co[0] - frame) < 1e-4), None) if fc else None


def keyframe_key(obj, name: str, frame: float):
    """Keyframe the value of shape key `name` at `frame` -> (its F-curve, the value it replaced or None)."""
    keys = obj.data.shape_keys
    kb = keys.key_blocks[name]
    old = key_at(fcurve(keys, kb.path_from_id("value")), frame)
    replaced = old.co[1] if old is not None and abs(old.co[1] - kb.value) > 1e-6 else None
    kb.keyframe_insert("value", frame=frame)
    return fcurve(keys, kb.path_from_id("value")), replaced


def fe_keys(obj) -> list:
    keys = obj.data.shape_keys if obj is not None and obj.type == "MESH" else None
    return [kb for kb in keys.key_blocks if kb.name.startswith(KEY_PREFIX)] if keys else []


def solo_key(obj, name: str | None, value: float = 1.0) -> None:
    """Show only FaceEdit key `name` (at `value`); other FE keys go to 0."""
    for kb in fe_keys(obj):
        kb.value = value if kb.name == name else 0.0


def _plane_mesh(name: str, size_m: float):
    mesh = bpy.data.meshes.new(name)
    h = size_m / 2
    mesh.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])
    mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", [0, 0, 1, 0, 1, 1, 0, 1])
    return mesh


def _image_material(name: str, image):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    emit = nodes.new("ShaderNodeEmission")
    clear = nodes.new("ShaderNodeBsdfTransparent")
    mix = nodes.new("ShaderNodeMixShader")
    out = nodes.new("ShaderNodeOutputMaterial")
    links.new(tex.outputs["Color"], emit.inputs["Color"])
    links.new(tex.outputs["Alpha"], mix.inputs["Fac"])
    links.new(clear.outputs["BSDF"], mix.inputs[1])
    links.new(emit.outputs["Emission"], mix.inputs[2])
    links.new(mix.outputs["Shader"], out.inputs["Surface"])
    return mat


def packed_image(name: str, png: bytes, size: int):
    """An image datablock holding the PNG bytes packed in the .blend (nothing written to disk)."""
    img = bpy.data.images.new(name, size, size, alpha=True)
    img.pack(data=png, data_len=len(png))
    img.source = "FILE"
    return img


def remove_views(name: str) -> None:
    """Delete a views collection made by image_planes() with its planes, materials and images."""
    coll = bpy.data.collections.get(name)
    if coll is None:
        return
    for ob in list(coll.objects):
        mesh = ob.data
        for mat in list(mesh.materials):
            for node in mat.node_tree.nodes if mat and mat.node_tree else ():
                if node.type == "TEX_IMAGE" and node.image is not None:
                    bpy.data.images.remove(node.image)
            if mat is not None:
                bpy.data.materials.remove(mat)
        bpy.data.objects.remove(ob)
        bpy.data.meshes.remove(mesh)
    bpy.data.collections.remove(coll)


def image_planes(scene, head, text: str, pngs: list[bytes], size: int, yaws_deg: list[float], in_render: bool = False):
    """One upright plane per rendered view, in a row beside the head (stacked above earlier rows).

    Replaces an earlier collection for the same prompt. The planes are hidden from final renders
    unless in_render (the scene's 'Planes in renders'). -> the collection.
    """
    name = fit_name("FE views ", text)
    remove_views(name)
    rows = sum(1 for c in scene.collection.children if c.get("faceedit_views"))
    coll = bpy.data.collections.new(name)
    coll["faceedit_views"] = True
    scene.collection.children.link(coll)
    origin = bbox_center(head)
    step = PLANE_SIZE_M + PLANE_GAP_M
    for i, (png, yaw) in enumerate(zip(pngs, yaws_deg)):
        label = fit_name(f"FE view {i:02d} ", text)
        img = packed_image(label, png, size)
        mesh = _plane_mesh(label, PLANE_SIZE_M)
        mesh.materials.append(_image_material(label, img))
        ob = bpy.data.objects.new(label, mesh)
        ob.location = (origin.x + 0.3 + i * step, origin.y, origin.z + rows * step)
        ob.rotation_euler = (math.pi / 2, 0.0, 0.0)  # faces -Y, Blender's front view
        ob["faceedit_yaw_deg"] = float(yaw)
        ob["faceedit_plane"] = True
        ob.hide_render = not in_render
        coll.objects.link(ob)
    return coll


def set_planes_in_render(show: bool) -> int:
    """Show or hide every FaceEdit image plane in final renders -> how many planes."""
    planes = [ob for ob in bpy.data.objects if ob.get("faceedit_plane")]
    for ob in planes:
        ob.hide_render = not show
    return len(planes)


def bbox_center(obj):
    """World-space centre of an object's bounding box."""
    from mathutils import Vector

    return sum((obj.matrix_world @ Vector(c) for c in obj.bound_box), Vector()) / 8


def world_bbox(objs) -> tuple[np.ndarray, np.ndarray]:
    """(min [3], max [3]) of the objects' world bounding boxes."""
    pts = np.array([tuple(ob.matrix_world @ _vec(c)) for ob in objs for c in ob.bound_box], np.float64)
    return pts.min(0), pts.max(0)


def _vec(c):
    from mathutils import Vector

    return Vector(c)


def place_clear_of_others(scene, obj, margin_m: float = 0.25) -> bool:
    """Move obj (already linked) along +X until its box is clear of every other visible object's -> moved?"""
    others = [
        ob
        for ob in scene.objects
        if ob is not obj and ob.type in ("MESH", "CURVE", "SURFACE", "META", "FONT", "VOLUME") and ob.visible_get()
    ]
    bpy.context.view_layer.update()
    lo, hi = world_bbox([obj])
    hits = []
    for ob in others:
        olo, ohi = world_bbox([ob])
        if np.all(lo - margin_m < ohi) and np.all(olo < hi + margin_m):
            hits.append(ob)
    if not hits:
        return False
    _, ohi = world_bbox(hits)
    obj.location.x += float(ohi[0] + margin_m - lo[0])
    bpy.context.view_layer.update()
    return place_clear_of_others(scene, obj, margin_m) or True


def frame_camera(scene, objs, name: str, lens_mm: float = 85.0, fill: float = 0.8):
    """A camera `name` (made or reused) in front of the objects (looking along +Y, Blender's front
    view), far enough that their box fills `fill` of the frame -> the camera object."""
    lo, hi = world_bbox(objs)
    center, size = (lo + hi) / 2, hi - lo
    cam = bpy.data.objects.get(name)
    if cam is None or cam.type != "CAMERA":
        cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        scene.collection.objects.link(cam)
    cam.data.lens = lens_mm
    tan_w, tan_h = _view_tangents(scene, cam, lens_mm)
    dist = max(size[0] / 2 / fill / tan_w, size[2] / 2 / fill / tan_h) + size[1] / 2
    cam.location = (center[0], center[1] - dist, center[2])
    cam.rotation_euler = (math.pi / 2, 0.0, 0.0)
    return cam


def _view_tangents(scene, cam, lens_mm: float) -> tuple[float, float]:
    """tan of the half field of view across and up the scene's frame (the sensor spans the longer side)."""
    tan = cam.data.sensor_width / 2 / lens_mm
    aspect = scene.render.resolution_x * scene.render.pixel_aspect_x
    aspect /= max(scene.render.resolution_y * scene.render.pixel_aspect_y, 1)
    return (tan, tan / aspect) if aspect >= 1 else (tan * aspect, tan)


def select_only(context, obj) -> None:
    for ob in context.view_layer.objects:
        if ob.select_get():
            ob.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj


def view_selected(context) -> int:
    """Frame the selection in every 3D view (none in background mode) -> how many views."""
    done = 0
    wm = context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type != "VIEW_3D":
                continue
            region = next((r for r in area.regions if r.type == "WINDOW"), None)
            if region is None:
                continue
            with context.temp_override(window=window, area=area, region=region):
                bpy.ops.view3d.view_selected()
            done += 1
    return done


def turntable_rig(
    scene, heads, frames: int, set_camera: bool = True, set_range: bool = False, lens_mm: float = 85.0
) -> tuple:
    """An empty at the heads' centre turning 360 degrees over `frames` frames from the scene's
    start (linear, loops without a repeated frame) and its own camera parented to it, tracking
    it, far enough to see every head. Reuses an existing rig; the scene camera and the frame
    range change only when asked -> (empty, camera, message)."""
    heads = list(heads) if isinstance(heads, (list, tuple)) else [heads]
    lo, hi = world_bbox(heads)
    center, size = (lo + hi) / 2, hi - lo
    empty = bpy.data.objects.get("FE turntable")
    if empty is None:
        empty = bpy.data.objects.new("FE turntable", None)
        scene.collection.objects.link(empty)
    cam = bpy.data.objects.get("FE turntable camera")
    if cam is None:
        cam = bpy.data.objects.new("FE turntable camera", bpy.data.cameras.new("FE turntable camera"))
        scene.collection.objects.link(cam)
        con = cam.constraints.new("TRACK_TO")
        con.target, con.track_axis, con.up_axis = empty, "TRACK_NEGATIVE_Z", "UP_Y"
    cam.parent = empty
    cam.data.lens = lens_mm
    tan_w, tan_h = _view_tangents(scene, cam, lens_mm)
    radius = float(np.linalg.norm(size[:2])) / 2  # what the turn sweeps, seen from the side
    distance = max(0.7, max(radius / 0.8 / tan_w, size[2] / 2 / 0.8 / tan_h) + radius)
    cam.location = (0.0, -distance, 0.05 * distance / 0.7)
    empty.location = tuple(center)
    old = empty.animation_data.action if empty.animation_data else None
    empty.animation_data_clear()
    if old is not None and old.users == 0:  # re-running replaces the turn, leaving no orphan action
        bpy.data.actions.remove(old)
    start = scene.frame_start
    empty.rotation_euler = (0.0, 0.0, 0.0)
    empty.keyframe_insert("rotation_euler", index=2, frame=start)
    empty.rotation_euler[2] = 2 * math.pi
    empty.keyframe_insert("rotation_euler", index=2, frame=start + frames)
    fc = fcurve(empty, "rotation_euler", 2)
    for kp in fc.keyframe_points:
        kp.interpolation = "LINEAR"
    notes = [f"turntable: one turn over frames {start}-{start + frames - 1}"]
    if set_range:
        old_range = (scene.frame_start, scene.frame_end)
        scene.frame_end = start + frames - 1
        notes.append(f"frame range {old_range[0]}-{old_range[1]} -> {start}-{scene.frame_end}")
    else:
        notes.append(f"your frame range {scene.frame_start}-{scene.frame_end} is kept")
    if set_camera and scene.camera is not cam:
        notes.append(f"scene camera '{scene.camera.name if scene.camera else 'none'}' -> '{cam.name}'")
        scene.camera = cam
    elif not set_camera:
        notes.append(f"its camera is '{cam.name}' (the scene camera is unchanged)")
    return empty, cam, "; ".join(notes)
