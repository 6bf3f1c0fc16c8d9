"""Drives the FLAME-rig path, the animator tools and the backend lifecycle inside the bpy module.

    BPY_PYTHON tests/blender_addon/in_blender/drive_rig_tools.py ZIP ADDRESS SLOW_ADDRESS RIG_NPZ BACKEND_ENV OUT_DIR

Run by tests/blender_addon/test_blender_rig_tools.py, once per bpy version. RIG_NPZ holds the
server's FLAME-layout head model (template, blendshapes, joint regressor, skinning weights);
the rig is built from it the way the official FLAME Blender add-on's object is made
(`FLAME-generic`: Shape<i>/Exp<i>/Pose<i> keys, an armature with root/neck/jaw/left_eye/right_eye,
mesh data in FLAME's Y-up frame, the armature turned to stand up in Blender).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import configure, drain, evaluated_coords, install_connected, key_coords, poll_refusal, section, snapshot  # noqa: E402

PROMPT = "A person who is raising brow"
SECOND = "A person who is smiling"
BONES = ("root", "neck", "jaw", "left_eye", "right_eye")
JAW = (0.21, 0.04, -0.03)  # a FLAME jaw rotation (axis-angle, radians) written through the bone
ARKIT_SUBSET = "eyeBlinkLeft,browInnerUp,jawOpen,jawForward"


def official_rig(data, name="FLAME-generic", n_shape=20, n_exp=None, padded=False, swap=None):
    """Mesh + shape keys + armature as the official FLAME add-on's object is made (Shape keys for the
    first n_shape identity components, Exp keys for n_exp expression components: all by default)."""
    v = data["v_template"].astype(np.float32)
    dirs = data["shapedirs"]
    model_shape = int(data["n_shape"])  # identity columns come first (300 in FLAME's files)
    n_shape = min(n_shape, model_shape)
    n_exp = dirs.shape[2] - model_shape if n_exp is None else n_exp
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(v.tolist(), [], data["f"].tolist())
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis", from_mix=False)

    def key(kind, i, disp):
        label = f"{kind}{i:03d}" if padded else f"{kind}{i + 1}"
        kb = obj.shape_key_add(name=label, from_mix=False)
        kb.data.foreach_set("co", (v + disp.astype(np.float32)).ravel())
        kb.value = 0.0  # (the slider range stays Blender's default 0..1: the add-on widens it when needed)

    for i in range(n_shape):
        key("Shape", i, dirs[:, :, i])
    order = list(range(n_exp))
    if swap:
        order[swap[0]], order[swap[1]] = order[swap[1]], order[swap[0]]
    for i in range(n_exp):
        key("Exp", i, dirs[:, :, model_shape + order[i]])
    for i in range(data["posedirs"].shape[2]):
        key("Pose", i, data["posedirs"][:, :, i])
    # the armature: bones at the regressed joints, pointing along FLAME's +z (as the add-on places them)
    joints = data["J_regressor"] @ v
    arm = bpy.data.objects.new(f"{name}-armature", bpy.data.armatures.new(f"{name}-armature"))
    bpy.context.scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    made = []
    for j, bone in enumerate(BONES):
        eb = arm.data.edit_bones.new(bone)
        eb.head = tuple(joints[j])
        eb.tail = tuple(joints[j] + np.array([0.0, 0.0, 0.01]))
        if data["parents"][j] >= 0:
            eb.parent = made[data["parents"][j]]
        made.append(eb)
    bpy.ops.object.mode_set(mode="OBJECT")
    arm.rotation_euler = (np.pi / 2, 0.0, 0.0)  # FLAME is Y-up; the rig stands up in Blender
    obj.parent = arm
    for j, bone in enumerate(BONES):
        group = obj.vertex_groups.new(name=bone)
        for vi in np.flatnonzero(data["weights"][:, j] > 0):
            group.add([int(vi)], float(data["weights"][vi, j]), "REPLACE")
    mod = obj.modifiers.new("Armature", "ARMATURE")
    mod.object = arm
    for pb in arm.pose.bones:
        pb.rotation_mode = "XYZ"  # the add-on's jaw slider writes rotation_euler
    bpy.context.view_layer.update()
    return obj, arm


def status_bar(fe) -> list:
    from types import SimpleNamespace

    from common import CheckedLayout

    log: list = []
    fe.session.draw_status(SimpleNamespace(layout=CheckedLayout(log)), bpy.context)
    return log


def wait_listening(fe, limit_s: float = 300.0) -> None:
    """The poll timer's work while a started backend comes up (timers never fire in the bpy module)."""
    t0 = time.monotonic()
    while fe.backend.BACKEND.starting and time.monotonic() - t0 < limit_s:
        fe.session.timer_step()
        time.sleep(0.05)


def main() -> None:
    zip_path, address, slow, rig_npz, backend_env, out = sys.argv[-6:]
    out = Path(out)
    res: dict = {"timings_s": {}}
    arrays: dict = {}
    data = dict(np.load(rig_npz))
    fe = install_connected(res, zip_path, address)
    scene, settings = bpy.context.scene, bpy.context.scene.faceedit

    with section(res, "rig"):
        rig, arm = official_rig(data)
        settings.target = rig
        res["rig_kind"], res["rig_describe"] = fe.rig.target_kind(rig), fe.rig.describe(rig)
        settings.prompt, settings.intensity, settings.mix, settings.keyframe = PROMPT, 0.7, "REPLACE", True
        scene.frame_set(3)
        bpy.ops.faceedit.edit_expression()
        res["rig_edit"] = drain(fe)
        exp = fe.rig.flame_keys(rig)["Exp"]
        arrays["rig_exp_values"] = np.array([kb.value for kb in exp], np.float32)
        arrays["rig_evaluated"] = evaluated_coords(rig)
        keys = rig.data.shape_keys
        res["rig_keyed"] = sorted(
            fc.data_path for fc in (fe.apply.fcurve(keys, kb.path_from_id("value")) for kb in exp) if fc is not None
        )
        res["rig_bones_keyed"] = [
            b for b in BONES if fe.apply.fcurve(arm, f'pose.bones["{b}"].rotation_euler', 0) is not None
        ]
        res["rig_history"] = [(h.prompt, round(h.intensity, 4), h.kind) for h in rig.faceedit_history]
        ids = fe.rig.basis_ids(rig, fe.session.server)
        t, _scale, res["rig_frame"] = fe.rig.match_basis(rig, {k: fe.session.server["basis"][k] for k in ids})
        res["rig_bones"] = {b: fe.rig.read_bone(rig, b, t).tolist() for b in ("jaw", "left_eye", "right_eye")}
        arrays["rig_pose_values"] = np.array([kb.value for kb in fe.rig.flame_keys(rig)["Pose"]], np.float32)
        for b in ("jaw", "left_eye", "right_eye"):  # the expression alone (the shape-key mix), unposed
            fe.rig.write_bone(rig, b, t, np.zeros(3))
        for kb in fe.rig.flame_keys(rig)["Pose"]:  # (and no pose correctives)
            kb.value = 0.0
        arrays["rig_unposed"] = evaluated_coords(rig)
        # a reply whose jaw_pose opens the jaw sets the bone so that Blender's skinning rotates the jaw
        # vertices as FLAME's axis-angle says (the test checks it against numpy LBS)
        sent = fe.rig.read_params(rig, fe.session.server, "ADD", t)
        reply = {"params": {"expression": sent["expression"].copy(), "jaw_pose": np.array([JAW], np.float32)}}
        s = {"intensity": 1.0, "mix": "ADD", "keyframe": False, "frame": 3, "prompt": "jaw test", "identity": ""}
        res["rig_jaw_message"] = fe.operators.apply_rig_edit(scene, rig, {"params": sent, "prompt": "jaw"}, reply, s, t)
        res["rig_jaw_read_back"] = fe.rig.read_bone(rig, "jaw", t).tolist()
        arrays["rig_jaw_evaluated"] = evaluated_coords(rig)
        fe.rig.write_bone(rig, "jaw", t, np.zeros(3))
        # a rig of another FLAME model (padded names, two Exp keys swapped) is refused, nothing changes
        bad, _bad_arm = official_rig(data, name="FLAME-male", n_shape=5, n_exp=20, padded=True, swap=(1, 2))
        res["padded_describe"] = fe.rig.describe(bad)
        res["padded_first"] = fe.rig.flame_keys(bad)["Exp"][0].name
        res["padded_values"] = [kb.value for kb in fe.rig.flame_keys(bad)["Exp"]]
        settings.target = bad
        before = snapshot()
        try:
            bpy.ops.faceedit.edit_expression()
        except RuntimeError:  # refused at once when the server's basis is already known
            pass
        res["rig_mismatch"] = {"status": drain(fe), "same": snapshot() == before}
        bpy.data.objects.remove(bad)
        settings.target = rig
        scene.frame_set(9)  # the Keyframe button on a rig keys its Exp values and bones
        res["rig_keyframe_op"] = sorted(bpy.ops.faceedit.keyframe())
        res["rig_keyframe_frames"] = {
            b: [kp.co[0] for kp in fe.apply.fcurve(arm, f'pose.bones["{b}"].rotation_euler', 0).keyframe_points]
            for b in ("jaw", "left_eye", "right_eye")
        }

    with section(res, "heads"):
        settings.keyframe, settings.intensity, settings.mix = False, 1.0, "REPLACE"
        bpy.ops.faceedit.add_demo_head()
        res["head1"] = drain(fe)
        head1 = settings.target
        bpy.ops.faceedit.add_demo_head()
        res["head2"] = drain(fe)
        head2 = settings.target
        res["heads_apart"] = (head2.location - head1.location).length
        for ob in bpy.context.view_layer.objects:
            ob.select_set(ob in (head1, head2))
        settings.target, settings.all_selected, settings.prompt = head1, True, PROMPT
        res["all_selected_returned"] = sorted(bpy.ops.faceedit.edit_expression(wait=True))
        res["all_selected_log"] = [list(e) for e in fe.session.JOBS.log[-2:]]
        name = fe.apply.key_name(PROMPT)
        res["all_selected_keys"] = [
            name in (h.data.shape_keys.key_blocks if h.data.shape_keys else {}) for h in (head1, head2)
        ]
        res["turntable_heads"] = sorted(bpy.ops.faceedit.turntable())
        bpy.context.view_layer.update()
        cam = bpy.data.objects["FE turntable camera"]
        from bpy_extras.object_utils import world_to_camera_view
        from mathutils import Vector

        res["turntable_heads_view"] = [
            list(world_to_camera_view(scene, cam, h.matrix_world @ Vector(c)))
            for h in (head1, head2)
            for c in h.bound_box
        ]
        settings.all_selected = False

    with section(res, "presets_history"):
        settings.prompt, settings.intensity = SECOND, 0.6
        res["preset_add"] = sorted(bpy.ops.faceedit.preset_add())
        p = bpy.context.preferences.addons[fe.__name__].preferences
        res["presets"] = [(i.prompt, round(i.intensity, 4)) for i in p.presets]
        settings.prompt, settings.intensity = "x", 0.0
        bpy.ops.faceedit.set_prompt(prompt=p.presets[0].prompt, intensity=p.presets[0].intensity)
        res["preset_applied"] = [settings.prompt, round(settings.intensity, 4)]
        bpy.ops.faceedit.edit_expression(wait=True)
        res["history_before"] = [(h.prompt, round(h.intensity, 4)) for h in head1.faceedit_history]
        fe.apply.solo_key(head1, None)
        res["history_apply"] = sorted(bpy.ops.faceedit.history_apply(index=0, wait=True))
        res["history_after"] = [(h.prompt, round(h.intensity, 4)) for h in head1.faceedit_history]
        res["history_values"] = {kb.name: round(kb.value, 4) for kb in fe.apply.fe_keys(head1)}
        res["preset_remove"] = sorted(bpy.ops.faceedit.preset_remove(prompt=SECOND))
        res["presets_after"] = len(p.presets)

    with section(res, "sequence"):
        settings.sequence, settings.sequence_start, settings.sequence_end = "", 1, 41
        res["sequence"] = sorted(bpy.ops.faceedit.key_sequence())
        keys = head1.data.shape_keys
        curves = {}
        for kb in fe.apply.fe_keys(head1):
            fc = fe.apply.fcurve(keys, kb.path_from_id("value"))
            curves[kb.name] = [[*kp.co, kp.interpolation] for kp in fc.keyframe_points] if fc else []
        res["sequence_curves"] = curves
        res["sequence_again"] = sorted(bpy.ops.faceedit.key_sequence())  # its own keys it may replace
        # a key the user owns inside the range: the sequence refuses and changes nothing
        kb = keys.key_blocks[fe.apply.key_name(SECOND)]
        kb.value = 0.33
        kb.keyframe_insert("value", frame=15)
        before = snapshot()
        try:
            res["sequence_user_key"] = sorted(bpy.ops.faceedit.key_sequence())
        except RuntimeError as exc:
            res["sequence_user_key"] = ["CANCELLED", str(exc)]
        res["sequence_user_key_same"] = snapshot() == before

    with section(res, "arkit"):
        settings.target = head2
        res["arkit_returned"] = sorted(bpy.ops.faceedit.arkit52(only=ARKIT_SUBSET, wait=True))
        res["arkit_log"] = [list(e) for e in fe.session.JOBS.log[-6:]]
        blocks = head2.data.shape_keys.key_blocks
        basis = key_coords(blocks["Basis"])
        for n in ARKIT_SUBSET.split(","):
            arrays[f"arkit_{n}"] = key_coords(blocks[n]) - basis if n in blocks else np.zeros(0)
        res["arkit_values"] = {n: blocks[n].value for n in ARKIT_SUBSET.split(",") if n in blocks}
        res["arkit_names"] = len(fe.tools.ARKIT)

    with section(res, "train"):
        # against the slow server, whose trainings take 40 progress steps
        configure(fe, slow, timeout_s=0.5, retries=0)
        fe.session.server.clear()
        settings.prompt = "lip pucker"
        res["train_returned"] = sorted(bpy.ops.faceedit.train(wait=True))
        res["train_log"] = list(fe.session.JOBS.log[-1])
        settings.prompt = "chin raiser"
        bpy.ops.faceedit.train()
        job = fe.session.JOBS.job
        seen = drain(fe, until=lambda: bool(fe.session.JOBS.job and fe.session.JOBS.job.progress))
        res["train_bar"] = [list(c) for c in status_bar(fe)]
        bpy.ops.faceedit.cancel()
        client = fe.session.JOBS.client()
        state = None
        for _ in range(200):
            state = client.call("status", {"job": job.req_id})["state"]
            if state in ("cancelled", "done", "failed"):
                break
            time.sleep(0.05)
        res["train_cancel"] = {"seen": seen["seen"][-3:], "log": list(fe.session.JOBS.log[-1]), "state": state}
        configure(fe, address, timeout_s=60.0, retries=1)
        fe.session.server.clear()

    with section(res, "gltf"):
        settings.target = head2
        path = out / "head.glb"
        objects = sorted(o.name for o in bpy.data.objects)
        meshes = len(bpy.data.meshes)
        res["gltf_returned"] = sorted(bpy.ops.faceedit.export_gltf(filepath=str(path)))
        res["gltf_copy_gone"] = sorted(o.name for o in bpy.data.objects) == objects and len(bpy.data.meshes) == meshes
        before = {o.name for o in bpy.data.objects}
        bpy.ops.import_scene.gltf(filepath=str(path))
        imported = next(o for o in bpy.data.objects if o.name not in before and o.type == "MESH")
        blocks = imported.data.shape_keys.key_blocks
        res["gltf_names"] = [kb.name for kb in blocks]
        mw = np.array(imported.matrix_world)
        arrays["gltf_basis"] = key_coords(blocks[0]) @ mw[:3, :3].T + mw[:3, 3]
        for kb in blocks[1:]:
            arrays[f"gltf_{kb.name}"] = key_coords(kb) @ mw[:3, :3].T + mw[:3, 3]
        hw = np.array(head2.matrix_world)
        src = head2.data.shape_keys.key_blocks
        arrays["src_basis"] = key_coords(src[0]) @ hw[:3, :3].T + hw[:3, 3]
        for kb in src[1:]:
            arrays[f"src_{kb.name.replace(' ', '_')}"] = key_coords(kb) @ hw[:3, :3].T + hw[:3, 3]

    with section(res, "backend"):
        # Start a local backend from the preferences and kill it while its first request runs (it loads
        # its models then): the failure is reported once and Add Demo Head leaves the scene as it was
        p = bpy.context.preferences.addons[fe.__name__].preferences
        p.backend_env = backend_env
        p.timeout_s, p.retries = 1.0, 0
        res["backend_start"] = sorted(bpy.ops.faceedit.backend_start())
        backend = fe.backend.BACKEND
        res["backend_address"] = p.address
        res["backend_refusal_start"] = poll_refusal(bpy.ops.faceedit.backend_start)
        fe.backend.BACKEND.starting = False  # (send the request ourselves instead of the automatic Connect)
        while not backend.listening():
            time.sleep(0.05)
        before = snapshot()
        logged = len(fe.session.JOBS.log)
        bpy.ops.faceedit.add_demo_head()
        drain(fe, limit_s=300, until=lambda: fe.session.JOBS.job.pending.state == "running")
        res["backend_busy_at_kill"] = fe.session.JOBS.busy
        os.kill(backend.proc.pid, signal.SIGKILL)
        res["backend_killed"] = drain(fe, limit_s=120)
        res["backend_killed_log"] = [list(e) for e in fe.session.JOBS.log[logged:]]
        res["backend_killed_same"] = snapshot() == before
        res["backend_state_killed"] = backend.state()
        # start again: the first hello (1 s timeout) is waited for while the backend loads its models;
        # leave it running: quitting Blender (this process ending) must stop it
        res["backend_restart"] = sorted(bpy.ops.faceedit.backend_start())
        wait_listening(fe)
        res["backend_hello"] = drain(fe, limit_s=300)
        res["backend_state"] = backend.state()
        res["backend_log_tail"] = backend.log_tail()
        res["backend_pid"] = backend.proc.pid

    res["log"] = [list(e) for e in fe.session.JOBS.log] if fe else []
    np.savez(out / "arrays.npz", **arrays)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
