"""Drives the installed FaceEdit extension inside the bpy module against a running server.

    .venv-blender/bin/python tests/blender_addon/in_blender/drive_addon.py ZIP ADDRESS DOWN_ADDRESS OUT_DIR

Run by tests/blender_addon/test_blender_addon.py (with BLENDER_USER_RESOURCES set to a temporary folder);
writes OUT_DIR/results.json and OUT_DIR/arrays.npz for the test to check against the server.
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

from common import CheckedLayout, configure, drain, install, key_coords, snapshot  # noqa: E402

PROMPT = "A person who is raising brow"


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
    """Draw the panel, the presets menu and the preferences through a checked layout -> what was drawn."""
    log: list = []
    fe.ui.FACEEDIT_PT_panel.draw(SimpleNamespace(layout=CheckedLayout(log)), bpy.context)
    fe.ui.FACEEDIT_MT_presets.draw(SimpleNamespace(layout=CheckedLayout(log)), bpy.context)
    p = bpy.context.preferences.addons[fe.__name__].preferences
    fe.prefs.FaceEditPreferences.draw(SimpleNamespace(layout=CheckedLayout(log), bl_rna=p.bl_rna), bpy.context)
    return log


def main() -> None:
    zip_path, address, down, out = sys.argv[-4:]
    out = Path(out)
    res: dict = {"timings_s": {}}
    arrays: dict = {}
    t0 = time.perf_counter()
    fe = install(zip_path)
    res["timings_s"]["install"] = time.perf_counter() - t0
    res["module"] = fe.__name__
    res["has_torch"] = "torch" in sys.modules
    configure(fe, address, timeout_s=60.0, retries=1)
    scene, settings = bpy.context.scene, bpy.context.scene.faceedit
    temps_before = temp_files()

    # connection indicator + demo head
    draws = {"offline": draw_all(fe)}
    bpy.ops.faceedit.connect()
    res["connect"] = drain(fe)
    res["server"] = {k: v for k, v in fe.session.server.items() if k != "expressions"}
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
    }

    # edit twice (intensity 1 then 0.5) with a keyframe at frame 5
    settings.prompt, settings.intensity, settings.keyframe = PROMPT, 1.0, True
    scene.frame_set(5)
    t = time.perf_counter()
    r = bpy.ops.faceedit.edit_expression()
    res["edit_returned"] = sorted(r)
    res["edit_busy_after_call"] = fe.session.JOBS.busy  # the operator returned before the reply
    draws["busy"] = draw_all(fe)
    res["edit1"] = drain(fe)
    res["timings_s"]["edit1"] = time.perf_counter() - t
    name = fe.apply.key_name(PROMPT)
    keys = head.data.shape_keys.key_blocks
    arrays["basis"], arrays["edit1"] = key_coords(keys["Basis"]), key_coords(keys[name])
    settings.intensity, settings.keyframe = 0.5, False
    t = time.perf_counter()
    bpy.ops.faceedit.edit_expression()
    res["edit2"] = drain(fe)
    res["timings_s"]["edit2_mapper_cached"] = time.perf_counter() - t
    arrays["edit2"] = key_coords(keys[name])
    res["key_names"] = [kb.name for kb in keys]
    res["key_value"] = keys[name].value

    # keyframes: one from the edit (frame 5), one from the Keyframe button (frame 12, value 0.25)
    scene.frame_set(12)
    keys[name].value = 0.25
    bpy.ops.faceedit.keyframe()
    fc = fe.apply.fcurve(head.data.shape_keys, keys[name].path_from_id("value"))
    res["fcurve"] = (
        None if fc is None else {"data_path": fc.data_path, "points": [tuple(kp.co) for kp in fc.keyframe_points]}
    )
    ad = head.data.shape_keys.animation_data
    res["slotted"] = getattr(ad, "action_slot", None) is not None

    # render views -> packed image planes
    settings.intensity, settings.views, settings.view_size = 1.0, 3, 64
    t = time.perf_counter()
    bpy.ops.faceedit.render_views()
    res["views"] = drain(fe)
    res["timings_s"]["views"] = time.perf_counter() - t
    coll = next((c for c in bpy.data.collections if c.get("faceedit_views")), None)
    planes = []
    for ob in coll.objects if coll else []:
        mat = ob.data.materials[0]
        img = next(n.image for n in mat.node_tree.nodes if n.type == "TEX_IMAGE")
        planes.append(
            {
                "name": ob.name,
                "image": img.name,
                "packed": img.packed_file is not None,
                "packed_bytes": img.packed_file.size if img.packed_file else 0,
                "size": list(img.size),
                "filepath": img.filepath,
                "yaw": ob["faceedit_yaw_deg"],
            }
        )
    res["planes"] = planes
    bpy.ops.faceedit.render_views(wait=True)  # again, blocking: replaces the planes, never duplicates them
    res["views_again"] = {"busy": fe.session.JOBS.busy, **drain(fe)}
    res["n_view_collections"] = sum(1 for c in bpy.data.collections if c.get("faceedit_views"))
    res["n_plane_images"] = sum(1 for i in bpy.data.images if i.name.startswith("FE views"))

    # turntable rig + background batch (blocking calls, Cycles)
    settings.turntable_frames = 8
    bpy.ops.faceedit.turntable()
    empty = bpy.data.objects["FE turntable"]
    cam = bpy.data.objects["FE turntable camera"]
    tfc = fe.apply.fcurve(empty, "rotation_euler", 2)
    res["turntable"] = {
        "points": [tuple(kp.co) for kp in tfc.keyframe_points],
        "interp": [kp.interpolation for kp in tfc.keyframe_points],
        "camera_parent": cam.parent.name if cam.parent else None,
        "track": [(c.type, c.target.name) for c in cam.constraints],
        "scene_camera": scene.camera.name,
        "frames": [scene.frame_start, scene.frame_end],
    }
    t = time.perf_counter()
    lines = []
    written = fe.batch.turntable(
        scene, [None, PROMPT], str(out / "frames"), frames=4, size=32, samples=1, indices=[0, 1], progress=lines.append
    )
    res["timings_s"]["batch"] = time.perf_counter() - t
    res["batch"] = {k: [str(p) for p in v] for k, v in written.items()}
    res["turntable_actions"] = sorted(a.name for a in bpy.data.actions if a.name.startswith("FE turntable"))
    res["batch_progress"] = lines
    sheet = fe.batch.contact_sheet([[Path(p) for p in v] for v in written.values()], str(out / "sheet.png"))
    res["sheet"] = str(sheet)

    # save and reload: the images are inside the .blend
    blend = out / "test.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    res["reloaded_packed"] = sorted(i.name for i in bpy.data.images if i.packed_file is not None)
    res["temps_new"] = sorted(set(temp_files()) - set(temps_before))
    scene, settings = bpy.context.scene, bpy.context.scene.faceedit

    # errors leave the scene unchanged: a prompt the server does not understand, then no server
    errors = {}
    settings.prompt = "the quarterly tax report"
    before = snapshot()
    bpy.ops.faceedit.edit_expression()
    errors["prompt"] = {"status": drain(fe), "same": snapshot() == before}
    configure(fe, down, timeout_s=0.3, retries=1)
    settings.prompt = PROMPT
    for op in ("edit_expression", "render_views", "add_demo_head"):
        before = snapshot()
        t = time.perf_counter()
        getattr(bpy.ops.faceedit, op)()
        errors[op] = {"status": drain(fe), "same": snapshot() == before, "seconds": time.perf_counter() - t}
    # the official rig's object is recognised; a preview server (not FLAME) is refused before sending
    configure(fe, address, timeout_s=60.0, retries=1)
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
    res["errors"], res["draws"] = errors, draws
    # the rig mapping: key = basis + sum_k dpsi_k (Exp_k - basis), from the reply's params
    sent = fe.rig.read_params(rig)
    psi = sent["expression"].copy()
    psi[0, 1] += 0.7
    arrays["rig_edit"] = fe.rig.edited_coords(rig, sent, {"params": {"expression": psi}})
    kb = rig.data.shape_keys.key_blocks
    arrays["rig_basis"], arrays["rig_exp2"] = key_coords(kb["Basis"]), key_coords(kb["Exp2"])
    res["rig_params"] = {k: v.tolist() for k, v in sent.items()}
    res["has_torch_end"] = "torch" in sys.modules

    np.savez(out / "arrays.npz", **arrays)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
