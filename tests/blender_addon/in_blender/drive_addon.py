"""Drives the installed FaceEdit extension inside the bpy module against running servers.

    BPY_PYTHON tests/blender_addon/in_blender/drive_addon.py ZIP ADDRESS SLOW_ADDRESS DOWN_ADDRESS OUT_DIR

Run by tests/blender_addon/test_blender_addon.py (BLENDER_USER_RESOURCES in a temporary folder),
once per bpy version; writes OUT_DIR/results.json and OUT_DIR/arrays.npz for the test to check
against the server. Each part runs in a `section` whose traceback (if any) goes to the results.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from types import SimpleNamespace  # noqa: E402

from common import (  # noqa: E402
    CheckedLayout,
    configure,
    drain,
    evaluated_coords,
    install,
    key_coords,
    poll_refusal,
    section,
    snapshot,
)

PROMPT = "A person who is raising brow"
SECOND = "A person who is smiling"
# 70 characters, non-ASCII: 80 bytes of UTF-8 -> 'FE ' + it does not fit Blender's 63-byte names
LONG_PROMPT = "Smiling — a warm, gentle smile with raised brows: très content ☺ ✓ ok!"
SLIDER_VALUES = (0.5, -1.3, 2.0)


def temp_files() -> list[str]:
    found = []
    for folder in {tempfile.gettempdir(), bpy.app.tempdir}:
        for root, _, files in os.walk(folder):
            found += [os.path.join(root, f) for f in files if f.lower().endswith((".png", ".exr", ".jpg"))]
    return sorted(found)


def fake_flame_rig(n_keys: int = 3):
    """A mesh shaped like the official add-on's object: 5023 vertices, Shape<i>/Exp<i> keys."""
    rng = np.random.default_rng(0)
    verts = rng.normal(scale=0.05, size=(5023, 3)).astype(np.float32)
    mesh = bpy.data.meshes.new("FLAME-generic")
    mesh.vertices.add(len(verts))
    mesh.vertices.foreach_set("co", verts.ravel())
    obj = bpy.data.objects.new("FLAME-generic", mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis", from_mix=False)
    for kind in ("Shape", "Exp"):
        for i in range(1, n_keys + 1):
            kb = obj.shape_key_add(name=f"{kind}{i}", from_mix=False)
            kb.data.foreach_set("co", (verts + rng.normal(scale=0.01, size=verts.shape).astype(np.float32)).ravel())
            kb.value = 0.1 * i
    return obj


def draw_all(fe) -> list:
    """Draw the panels, the presets menu, the preferences and the status bar through a checked layout."""
    log: list = []
    ctx = bpy.context
    for panel in (fe.ui.FACEEDIT_PT_panel, fe.ui.FACEEDIT_PT_tools):
        panel.draw(SimpleNamespace(layout=CheckedLayout(log)), ctx)
    fe.ui.FACEEDIT_MT_presets.draw(SimpleNamespace(layout=CheckedLayout(log)), ctx)
    p = ctx.preferences.addons[fe.__name__].preferences
    fe.prefs.FaceEditPreferences.draw(SimpleNamespace(layout=CheckedLayout(log), bl_rna=p.bl_rna), ctx)
    log.append(("statusbar", None))
    fe.session.draw_status(SimpleNamespace(layout=CheckedLayout(log)), ctx)
    return log


def status_bar(fe) -> list:
    log: list = []
    fe.session.draw_status(SimpleNamespace(layout=CheckedLayout(log)), bpy.context)
    return log


def camera_view(scene, cam, obj) -> list:
    """The object's bounding-box corners in the camera's normalised view (x, y in 0..1 is inside)."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    return [list(world_to_camera_view(scene, cam, obj.matrix_world @ Vector(c))) for c in obj.bound_box]


def world_box(obj) -> list:
    from mathutils import Vector

    pts = np.array([list(obj.matrix_world @ Vector(c)) for c in obj.bound_box])
    return [pts.min(0).tolist(), pts.max(0).tolist()]


def attribute_colours(obj, name: str) -> np.ndarray | None:
    """A colour attribute's sRGB values [V,4] (None when the mesh has none of that name)."""
    attr = obj.data.color_attributes.get(name)
    if attr is None:
        return None
    out = np.empty(len(attr.data) * 4, np.float32)
    attr.data.foreach_get("color_srgb", out)
    return out.reshape(-1, 4)


def head_look(fe, obj) -> dict:
    """The demo head's colour attribute and materials: what feeds each material's surface."""
    attrs = obj.data.color_attributes
    look = {
        "attributes": [(a.name, a.domain, a.data_type) for a in attrs],
        "active_color": attrs.active_color_name,
        "default_color": attrs.default_color_name,
        "materials": [],
    }
    for mat in obj.data.materials:
        nodes = mat.node_tree.nodes
        out = next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
        surface = out.inputs["Surface"].links[0].from_node
        base = surface.inputs.get("Base Color")
        feeds = base.links[0].from_node if base is not None and base.links else None
        look["materials"].append(
            {
                "name": mat.name,
                "surface": surface.type,
                "base_from": [feeds.type, feeds.layer_name] if feeds is not None else None,
                "viewport_alpha": mat.diffuse_color[3],
            }
        )
    return look


def render_png(scene, path: Path, percent: int = 10, samples: int = 4) -> str:
    """A small Cycles render through the scene camera at the scene's aspect ratio."""
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", samples, False
    scene.render.resolution_percentage = percent
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return str(path)


def main() -> None:
    zip_path, address, slow, down, out = sys.argv[-5:]
    out = Path(out)
    res: dict = {"timings_s": {}}
    arrays: dict = {}
    fe = None

    with section(res, "install"):
        t0 = time.perf_counter()
        fe = install(zip_path)
        res["timings_s"]["install_s"] = time.perf_counter() - t0
        res["module"] = fe.__name__
        res["has_torch"] = "torch" in sys.modules
        res["python"] = list(sys.version_info[:2])
        res["bpy"] = bpy.app.version_string
        import zmq

        res["zmq_from"] = zmq.__file__
        configure(fe, address, timeout_s=60.0, retries=1)
        kc = bpy.context.window_manager.keyconfigs.addon
        res["esc_keymap"] = [
            (km.name, kmi.idname, kmi.type)
            for km in (kc.keymaps if kc else [])
            for kmi in km.keymap_items
            if kmi.idname.startswith("faceedit.")
        ]
        res["esc_keymap_item"] = [
            (km.space_type, km.region_type, kmi.value, kmi.active, kmi.any, kmi.shift, kmi.ctrl, kmi.alt, kmi.oskey)
            for km in (kc.keymaps if kc else [])
            for kmi in km.keymap_items
            if kmi.idname == "faceedit.cancel"
        ]
        res["undo_ops"] = sorted(
            c.bl_idname
            for c in fe.CLASSES
            if issubclass(c, bpy.types.Operator) and "UNDO" in getattr(c, "bl_options", ())
        )
        res["background"] = bpy.app.background
        res["report_no_window"] = sorted(bpy.ops.faceedit.report("INVOKE_DEFAULT", level="WARNING", message="probe"))
        pushes: list = []
        undo_push = fe.session.undo_push

        def recording_undo_push(label):
            pushes.append(label)
            undo_push(label)

        fe.session.undo_push = recording_undo_push
        res["ops_without_poll"] = [
            c.bl_idname for c in fe.CLASSES if issubclass(c, bpy.types.Operator) and not hasattr(c, "poll")
        ]
        res["handlers"] = {
            "load_pre": [f.__name__ for f in bpy.app.handlers.load_pre if "faceedit" in f.__module__],
            "load_post": [f.__name__ for f in bpy.app.handlers.load_post if "faceedit" in f.__module__],
        }
    scene, settings = bpy.context.scene, bpy.context.scene.faceedit
    temps_before = temp_files()
    draws: dict = {}

    with section(res, "refusals_idle"):
        ops = bpy.ops.faceedit
        res["refusals_idle"] = {
            "edit_no_target": poll_refusal(ops.edit_expression),
            "render_no_target": poll_refusal(ops.render_views),
            "keyframe_no_target": poll_refusal(ops.keyframe),
            "turntable_no_target": poll_refusal(ops.turntable),
            "cancel_idle": poll_refusal(ops.cancel),
            "backend_start_unset": poll_refusal(ops.backend_start),
            "backend_stop_none": poll_refusal(ops.backend_stop),
            "history_no_target": poll_refusal(ops.history_apply),
        }
        draws["offline"] = draw_all(fe)

    with section(res, "head"):
        cube = bpy.data.objects.get("Cube")
        res["had_cube"] = cube is not None
        bpy.ops.faceedit.connect()
        res["connect"] = drain(fe)
        res["undo_connect"] = list(pushes)
        res["server"] = {k: v for k, v in fe.session.server.items() if k in ("tier", "head_verts", "n_exp", "n_shape")}
        res["n_expressions"] = len(fe.session.server.get("expressions", []))
        bpy.ops.faceedit.add_demo_head()
        res["add_head"] = drain(fe)
        head = settings.target
        draws["connected"] = draw_all(fe)
        res["head"] = {
            "name": head.name,
            "kind": fe.rig.target_kind(head),
            "verts": len(head.data.vertices),
            "uv_layers": [uv.name for uv in head.data.uv_layers],
            "box": world_box(head),
            "cube_box": world_box(cube) if cube else None,
            "selected": sorted(o.name for o in bpy.context.selected_objects),
            "active": bpy.context.view_layer.objects.active.name,
            "camera": scene.camera.name,
            "in_view": camera_view(scene, scene.camera, head),
        }
        res["head_look"] = head_look(fe, head)
        arrays["colours"] = attribute_colours(head, fe.demo_head.COLOUR_ATTR)
        arrays["material_index"] = np.array([p.material_index for p in head.data.polygons], np.int32)
        arrays["basis"] = key_coords(head.data.shape_keys.reference_key) if head.data.shape_keys else None
        if arrays["basis"] is None:
            co = np.empty(len(head.data.vertices) * 3, np.float32)
            head.data.vertices.foreach_get("co", co)
            arrays["basis"] = co.reshape(-1, 3)
        res["head_render"] = render_png(scene, out / "head_from_fe_camera.png")

    with section(res, "edit"):
        # edit at intensity 1 with a keyframe at frame 5, then at 0.5 without: one key, its value the intensity
        settings.prompt, settings.intensity, settings.keyframe = PROMPT, 1.0, True
        scene.frame_set(5)
        t = time.perf_counter()
        r = bpy.ops.faceedit.edit_expression()
        res["edit_returned"] = sorted(r)
        res["edit_busy_after_call"] = fe.session.JOBS.busy  # the operator returned before the reply
        res["refusal_busy"] = poll_refusal(bpy.ops.faceedit.edit_expression)
        res["cancel_poll_busy"] = bpy.ops.faceedit.cancel.poll()
        draws["busy"] = draw_all(fe)
        seen_bar, cursor = [], []

        def watch():
            bar = status_bar(fe)
            if fe.session.JOBS.busy and bar not in seen_bar and len(seen_bar) < 4:
                seen_bar.append(bar)
            on = bool(fe.session._progress_on)  # window_manager.progress_begin ran (and raised nothing)
            if fe.session.JOBS.busy and (not cursor or cursor[-1] != on):
                cursor.append(on)
            return False

        n_pushes = len(pushes)
        res["edit1"] = drain(fe, until=watch)
        res["undo_edit1"] = pushes[n_pushes:]
        res["progress_cursor"] = {"busy": cursor, "after": bool(fe.session._progress_on)}
        res["status_bar_busy"] = seen_bar
        res["status_bar_after"] = status_bar(fe)
        res["timings_s"]["edit1_s"] = time.perf_counter() - t
        name = fe.apply.key_name(PROMPT)
        keys = head.data.shape_keys.key_blocks
        arrays["edit1"] = key_coords(keys[name])
        res["edit1_value"] = keys[name].value
        settings.intensity, settings.keyframe = 0.5, False
        bpy.ops.faceedit.edit_expression()
        res["edit2"] = drain(fe)
        arrays["edit2"] = key_coords(keys[name])
        res["key_names"] = [kb.name for kb in keys]
        res["key_value"] = keys[name].value
        res["key_slider"] = [keys[name].slider_min, keys[name].slider_max]
        # keyframes: one from the edit (frame 5), one from the Keyframe button (frame 12, value 0.25)
        scene.frame_set(12)
        keys[name].value = 0.25
        res["keyframe_op"] = sorted(bpy.ops.faceedit.keyframe())
        fc = fe.apply.fcurve(head.data.shape_keys, keys[name].path_from_id("value"))
        res["fcurve"] = {"data_path": fc.data_path, "points": [tuple(kp.co) for kp in fc.keyframe_points]}
        res["slotted"] = getattr(head.data.shape_keys.animation_data, "action_slot", None) is not None
        res["history"] = [(h.prompt, round(h.intensity, 4), h.key, h.kind) for h in head.faceedit_history]

    with section(res, "identity"):
        # the panel's identity (paper tier) travels in the edit and render requests only when chosen; a
        # preview-tier server refuses it with a clear error, reported once, and the scene stays as it was
        jobs, sent = fe.session.JOBS, []
        submit = jobs.submit

        def recording(op, args, *rest, **kw):
            sent.append([op, {k: v for k, v in args.items() if k != "params"}])
            return submit(op, args, *rest, **kw)

        jobs.submit = recording
        settings.prompt, settings.intensity, settings.views, settings.view_size = PROMPT, 1.0, 2, 32
        ident: dict = {}
        try:
            for text, op in (("7", "edit_expression"), (" 7 ", "render_views"), ("my face", "edit_expression")):
                settings.identity = text
                before, n_sent = snapshot(), len(sent)
                getattr(bpy.ops.faceedit, op)()
                ident[f"{text.strip()}-{op}"] = {
                    "status": drain(fe),
                    "same": snapshot() == before,
                    "sent": sent[n_sent:],
                }
            settings.identity = str(2**63)
            ident["seed_too_big"] = poll_refusal(bpy.ops.faceedit.edit_expression)
            settings.identity = "  "
            n_sent = len(sent)
            bpy.ops.faceedit.edit_expression()
            ident["default"] = {"status": drain(fe), "sent": sent[n_sent:]}
        finally:
            del jobs.submit
            settings.identity = ""
        res["identity"] = ident

    with section(res, "mix"):
        # Replace (default): a new edit sets the earlier FE keys to 0; Add keeps them
        keys = head.data.shape_keys.key_blocks
        keys[name].value = 0.8
        settings.prompt, settings.intensity, settings.mix = SECOND, 1.0, "REPLACE"
        bpy.ops.faceedit.edit_expression()
        res["mix_replace"] = {"log": drain(fe)["log"], "values": {k.name: k.value for k in fe.apply.fe_keys(head)}}
        keys[name].value = 0.8
        settings.prompt, settings.intensity, settings.mix = PROMPT, 0.5, "ADD"
        bpy.ops.faceedit.edit_expression()
        res["mix_add"] = {"log": drain(fe)["log"], "values": {k.name: k.value for k in fe.apply.fe_keys(head)}}
        settings.mix = "REPLACE"

    with section(res, "slider"):
        # the live slider: key value v gives exactly the vertices of intensity v (the smile key has no keyframes)
        second = fe.apply.key_name(SECOND)
        fe.apply.solo_key(head, second, 0.0)
        for v in SLIDER_VALUES:
            head.data.shape_keys.key_blocks[second].value = v
            arrays[f"slider@{v}"] = evaluated_coords(head)
        arrays["smile_key"] = key_coords(head.data.shape_keys.key_blocks[second])

    with section(res, "keyed"):
        # a re-edit that would change the shape of a keyed key is refused (the animation never changes silently)
        keys = head.data.shape_keys.key_blocks
        co = key_coords(keys[name])
        co[:, 1] += 0.001  # as if an earlier server had made another shape
        keys[name].data.foreach_set("co", co.ravel())
        settings.prompt, settings.intensity = PROMPT, 1.0
        before = snapshot()
        bpy.ops.faceedit.edit_expression()
        res["keyed_refused"] = {"status": drain(fe), "same": snapshot() == before}
        settings.replace_keyed = True
        pts = [
            tuple(kp.co)
            for kp in fe.apply.fcurve(head.data.shape_keys, keys[name].path_from_id("value")).keyframe_points
        ]
        bpy.ops.faceedit.edit_expression()
        res["keyed_replaced"] = drain(fe)
        fc = fe.apply.fcurve(head.data.shape_keys, keys[name].path_from_id("value"))
        res["keyed_points_kept"] = [tuple(kp.co) for kp in fc.keyframe_points] == pts
        arrays["edit_replaced"] = key_coords(keys[name])
        settings.replace_keyed = False

    with section(res, "views"):
        settings.prompt, settings.intensity, settings.views, settings.view_size = PROMPT, 1.0, 3, 64
        bpy.ops.faceedit.render_views()
        res["views"] = drain(fe)
        coll = next((c for c in bpy.data.collections if c.get("faceedit_views")), None)
        planes = []
        for ob in coll.objects if coll else []:
            img = next(n.image for n in ob.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE")
            planes.append(
                {
                    "name": ob.name,
                    "image": img.name,
                    "packed": img.packed_file is not None,
                    "packed_bytes": img.packed_file.size if img.packed_file else 0,
                    "size": list(img.size),
                    "filepath": img.filepath,
                    "yaw": ob["faceedit_yaw_deg"],
                    "hide_render": ob.hide_render,
                }
            )
        res["planes"] = planes
        res["views_again_returned"] = sorted(bpy.ops.faceedit.render_views(wait=True))  # replaces, never duplicates
        res["views_again"] = {"busy": fe.session.JOBS.busy, **drain(fe)}
        res["n_view_collections"] = sum(1 for c in bpy.data.collections if c.get("faceedit_views"))
        res["n_plane_images"] = sum(1 for i in bpy.data.images if i.name.startswith("FE view"))
        settings.planes_in_render = True
        res["planes_shown"] = [ob.hide_render for ob in bpy.data.objects if ob.get("faceedit_plane")]
        settings.planes_in_render = False
        res["planes_hidden"] = [ob.hide_render for ob in bpy.data.objects if ob.get("faceedit_plane")]

    with section(res, "turntable"):
        res["range_before"] = [scene.frame_start, scene.frame_end]
        old_camera = scene.camera.name
        settings.turntable_frames = 8
        bpy.ops.faceedit.turntable()
        empty, cam = bpy.data.objects["FE turntable"], bpy.data.objects["FE turntable camera"]
        bpy.context.view_layer.update()
        tfc = fe.apply.fcurve(empty, "rotation_euler", 2)
        res["turntable"] = {
            "points": [tuple(kp.co) for kp in tfc.keyframe_points],
            "interp": [kp.interpolation for kp in tfc.keyframe_points],
            "camera_parent": cam.parent.name if cam.parent else None,
            "track": [(c.type, c.target.name) for c in cam.constraints],
            "scene_camera": scene.camera.name,
            "old_camera": old_camera,
            "frames": [scene.frame_start, scene.frame_end],
            "in_view": camera_view(scene, cam, head),
        }
        settings.turntable_range = True
        bpy.ops.faceedit.turntable()
        res["turntable_range"] = [scene.frame_start, scene.frame_end]
        settings.turntable_range = False
        scene.frame_end = res["range_before"][1]
        lines = []
        written = fe.batch.turntable(
            scene,
            [None, PROMPT],
            str(out / "frames"),
            frames=4,
            size=48,
            samples=2,
            indices=[0, 1],
            progress=lines.append,
        )
        res["batch"] = {k: [str(p) for p in v] for k, v in written.items()}
        res["turntable_actions"] = sorted(a.name for a in bpy.data.actions if a.name.startswith("FE turntable"))
        res["batch_progress"] = lines
        sheet = fe.batch.contact_sheet([[Path(p) for p in v] for v in written.values()], str(out / "sheet.png"))
        res["sheet"] = str(sheet)

    with section(res, "long_prompt"):
        settings.prompt, settings.intensity = LONG_PROMPT, 1.0
        bpy.ops.faceedit.edit_expression()
        first = drain(fe)
        bpy.ops.faceedit.edit_expression()  # again: the same key, never a '.001'
        second_run = drain(fe)
        long_name = fe.apply.key_name(LONG_PROMPT)
        res["long_prompt"] = {
            "chars": len(LONG_PROMPT),
            "name": long_name,
            "name_bytes": len(long_name.encode("utf-8")),
            "first": first,
            "second": second_run,
            "keys": [kb.name for kb in head.data.shape_keys.key_blocks],
            "keyframe_poll": bpy.ops.faceedit.keyframe.poll(),
            "keyframe": sorted(bpy.ops.faceedit.keyframe()),
        }

    with section(res, "save_reload"):
        blend = out / "test.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        bpy.ops.wm.open_mainfile(filepath=str(blend))
        res["reloaded_packed"] = sorted(i.name for i in bpy.data.images if i.packed_file is not None)
        res["temps_new"] = sorted(set(temp_files()) - set(temps_before))
        scene, settings = bpy.context.scene, bpy.context.scene.faceedit
        head = settings.target
        res["history_after_reload"] = len(head.faceedit_history)

    with section(res, "liveness"):
        # a server silent for 4 x the timeout while it loads its models, then 4 x while it edits: both complete
        configure(fe, slow, timeout_s=0.5, retries=0)
        fe.session.server.clear()
        t = time.perf_counter()
        bpy.ops.faceedit.connect()
        res["slow_hello"] = drain(fe)
        res["slow_hello_s"] = time.perf_counter() - t
        settings.prompt, settings.intensity = PROMPT, 1.0
        t = time.perf_counter()
        bpy.ops.faceedit.edit_expression()
        res["slow_edit"] = drain(fe)
        res["slow_edit_s"] = time.perf_counter() - t

    with section(res, "file_new"):
        # File > New while a request runs: the request is cancelled (also on the server), nothing is written,
        # the add-on is not left busy and its timer survives
        settings.prompt = SECOND
        bpy.ops.faceedit.edit_expression()
        job = fe.session.JOBS.job
        req_id = job.req_id if job else None
        bpy.ops.wm.read_homefile(use_empty=False)
        res["file_new"] = {
            "busy": fe.session.JOBS.busy,
            "log_last": list(fe.session.JOBS.log[-1]),
            "timer": bpy.app.timers.is_registered(fe.session.timer_step),
            "load_post_ran": fe.session._loading is False,
            "objects": sorted(o.name for o in bpy.data.objects),
        }
        client = fe.session.JOBS.client()  # the server keys jobs by client: ask as the add-on
        state = None
        for _ in range(100):
            state = client.call("status", {"job": req_id})["state"]
            if state in ("cancelled", "done", "failed"):
                break
            time.sleep(0.05)
        res["file_new"]["server_state"] = state
        scene, settings = bpy.context.scene, bpy.context.scene.faceedit
        configure(fe, address, timeout_s=60.0, retries=1)
        fe.session.server.clear()
        bpy.ops.faceedit.add_demo_head()
        res["file_new"]["head_again"] = drain(fe)
        head = settings.target

    with section(res, "errors"):
        # errors leave the scene unchanged: a prompt the server does not understand, then no server
        errors = {}
        settings.prompt = "the quarterly tax report"
        before = snapshot()
        bpy.ops.faceedit.edit_expression()
        errors["prompt"] = {"status": drain(fe), "same": snapshot() == before}
        configure(fe, down, timeout_s=0.3, retries=1)
        settings.prompt = PROMPT
        for op in ("edit_expression", "render_views", "add_demo_head"):
            before, n_pushes = snapshot(), len(pushes)
            getattr(bpy.ops.faceedit, op)()
            errors[op] = {"status": drain(fe), "same": snapshot() == before, "undo": pushes[n_pushes:]}
        configure(fe, address, timeout_s=60.0, retries=1)
        # a mesh shaped like the official rig (5023 vertices) on the preview server's 9554-vertex head: refused
        rig = fake_flame_rig()
        settings.target = rig
        res["rig_kind"], res["rig_describe"] = fe.rig.target_kind(rig), fe.rig.describe(rig)
        before = snapshot()
        try:
            status = bpy.ops.faceedit.edit_expression()
        except RuntimeError as exc:  # an operator that reports an error raises when called from Python
            status = {"CANCELLED", f"raised: {exc}"}
        errors["flame_on_preview"] = {
            "returned": sorted(status),
            "status": drain(fe),
            "same": snapshot() == before,
            "error": fe.session.JOBS.status.error,
        }
        draws["error"] = draw_all(fe)
        # edit mode: the operators refuse with a reason
        settings.target = head
        bpy.context.view_layer.objects.active = head
        bpy.ops.object.mode_set(mode="EDIT")
        res["refusal_edit_mode"] = poll_refusal(bpy.ops.faceedit.edit_expression)
        bpy.ops.object.mode_set(mode="OBJECT")
        res["errors"] = errors

    with section(res, "undo"):
        # a reply is one undo step: undo takes back the whole edit (key, value, history), redo restores it
        settings.prompt, settings.intensity = "A person who is frowning", 1.0
        bpy.ops.ed.undo_push(message="before the edit")
        before, n_pushes = snapshot(), len(pushes)
        n_history = len(settings.target.faceedit_history)
        bpy.ops.faceedit.edit_expression()
        status = drain(fe)
        after = snapshot()
        bpy.ops.ed.undo()
        undone = snapshot()
        history_undone = len(bpy.context.scene.faceedit.target.faceedit_history) - n_history
        bpy.ops.ed.redo()
        res["undo"] = {
            "status": status,
            "pushes": pushes[n_pushes:],
            "changed": after != before,
            "undone": undone == before,
            "history_undone": history_undone,
            "redone": snapshot() == after,
        }

    res["draws"] = draws
    res["has_torch_end"] = "torch" in sys.modules
    res["log"] = [list(e) for e in fe.session.JOBS.log] if fe else []
    np.savez(out / "arrays.npz", **{k: v for k, v in arrays.items() if v is not None})
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
