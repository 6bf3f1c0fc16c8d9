"""Scene writes: named shape keys, keyframes, packed image planes, the turntable camera rig.

Each function gets everything it needs already checked, so a failure upstream leaves the scene
as it was. Keyframe curves are found through the Blender 5.0 channelbag API (slotted actions,
4.4+) or, on 4.2-4.3, through `Action.fcurves`.
"""

from __future__ import annotations

import math

import bpy
import numpy as np

KEY_PREFIX = "FE "
PLANE_SIZE_M = 0.24
PLANE_GAP_M = 0.03


def key_name(prompt: str) -> str:
    """'A person who is smiling' -> 'FE smiling' (at most 63 bytes, Blender's name limit)."""
    text = " ".join(prompt.split())
    for lead in ("A person who is ", "a person who is ", "A person ", "a person "):
        text = text.removeprefix(lead)
    return (KEY_PREFIX + text)[:63]


def write_shape_key(obj, name: str, coords: np.ndarray):
    """Create or update the shape key `name` with positions coords [V,3]; never duplicates it."""
    if obj.data.shape_keys is None:
        obj.shape_key_add(name="Basis", from_mix=False)
    kb = obj.data.shape_keys.key_blocks.get(name) or obj.shape_key_add(name=name, from_mix=False)
    kb.data.foreach_set("co", np.ascontiguousarray(coords, np.float32).ravel())
    kb.slider_min = min(kb.slider_min, 0.0)
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


def keyframe_key(obj, name: str, frame: float):
    """Keyframe the value of shape key `name` at `frame` -> its F-curve."""
    kb = obj.data.shape_keys.key_blocks[name]
    kb.keyframe_insert("value", frame=frame)
    return fcurve(obj.data.shape_keys, kb.path_from_id("value"))


def solo_key(obj, name: str | None) -> None:
    """Show only FaceEdit key `name` (value 1); other FE keys go to 0."""
    for kb in obj.data.shape_keys.key_blocks if obj.data.shape_keys else ():
        if kb.name.startswith(KEY_PREFIX):
            kb.value = 1.0 if kb.name == name else 0.0


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


def image_planes(scene, head, name: str, pngs: list[bytes], size: int, yaws_deg: list[float]):
    """One upright plane per rendered view, in a row beside the head (stacked above earlier rows).

    Replaces an earlier collection of the same name. -> the collection.
    """
    remove_views(name)
    rows = sum(1 for c in scene.collection.children if c.get("faceedit_views"))
    coll = bpy.data.collections.new(name)
    coll["faceedit_views"] = True
    scene.collection.children.link(coll)
    origin = bbox_center(head)
    step = PLANE_SIZE_M + PLANE_GAP_M
    for i, (png, yaw) in enumerate(zip(pngs, yaws_deg)):
        label = f"{name} {i:02d}"
        img = packed_image(label, png, size)
        mesh = _plane_mesh(label, PLANE_SIZE_M)
        mesh.materials.append(_image_material(label, img))
        ob = bpy.data.objects.new(label, mesh)
        ob.location = (origin.x + 0.3 + i * step, origin.y, origin.z + rows * step)
        ob.rotation_euler = (math.pi / 2, 0.0, 0.0)  # faces -Y, Blender's front view
        ob["faceedit_yaw_deg"] = float(yaw)
        coll.objects.link(ob)
    return coll


def bbox_center(obj):
    """World-space centre of an object's bounding box."""
    from mathutils import Vector

    return sum((obj.matrix_world @ Vector(c) for c in obj.bound_box), Vector()) / 8


def turntable_rig(scene, head, frames: int, distance_m: float = 0.7, height_m: float = 0.05, lens_mm: float = 85.0):
    """An empty at the head turning 360 degrees over `frames` frames (linear, loops without a
    repeated frame) and a camera parented to it that tracks it. Reuses an existing rig -> (empty, camera)."""
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
    cam.location = (0.0, -distance_m, height_m)
    empty.location = bbox_center(head)
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
    scene.frame_end = start + frames - 1
    scene.camera = cam
    return empty, cam
