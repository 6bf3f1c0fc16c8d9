"""The official-FLAME-rig path, the animator tools and the backend lifecycle, in both bpy versions.

in_blender/drive_rig_tools.py builds a rig the way the official FLAME Blender add-on's object is
made, from the server's FLAME-layout head (the demo head's FLAME model, as
tests/helpers/paper.py writes it in FLAME pickle layout), edits it through the add-on against
the test server, runs the tools (presets, history, all selected heads, key sequence, ARKit 52,
train + cancel, glTF export + re-import) and starts, kills and restarts a real backend
(`python -m backend_server` from the main venv) from Blender's preferences.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from faceedit_core.flame.default_head import demo_head
from faceedit_wire.client import Client
from tests.blender_addon.conftest import ROOT, correctives, rotation, run_driver, save_rig_npz, section_ok

PROMPT = "A person who is raising brow"
JAW = (0.21, 0.04, -0.03)
pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def rig_npz(tmp_path_factory):
    """The server's head model in FLAME's layout (what the official add-on's .blend is made from)."""
    return save_rig_npz(demo_head().model, tmp_path_factory.mktemp("rig") / "flame_model.npz")


@pytest.fixture(scope="module")
def run(blender, addon_zip, server, slow_server, rig_npz, tmp_path_factory):
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip(".venv is absent: the backend Blender starts comes from it")
    tmp = tmp_path_factory.mktemp(f"rig-{blender.id}")
    res, arrays, log = run_driver(
        blender,
        "drive_rig_tools.py",
        tmp,
        [str(addon_zip), server.address, slow_server.address, str(rig_npz), str(ROOT / ".venv")],
        timeout_s=1400,
    )
    return res, arrays, log


@pytest.fixture(scope="module")
def expected(server):
    """The server's edit of the neutral rig's parameters at intensity 1, asked here directly."""
    c = Client(server.address, timeout_s=120, retries=0)
    m = demo_head().model
    params = {
        "shape": np.zeros((1, min(20, m.n_shape)), np.float32),
        "expression": np.zeros((1, m.n_exp), np.float32),
        "jaw_pose": np.zeros((1, 3), np.float32),
        "eye_pose": np.zeros((1, 6), np.float32),
        "neck_pose": np.zeros((1, 3), np.float32),
    }
    edit = c.call("edit", {"params": params, "prompt": PROMPT, "intensity": 1.0})
    out = {k: v[0].astype(np.float32) for k, v in edit["params"].items()}
    head = c.call("hello", {"head_mesh": True})["head"]
    demo = {"shape": np.zeros((1, head["n_shape"]), np.float32), "expression": np.zeros((1, head["n_exp"]), np.float32)}
    for name, prompt in (
        ("eyeBlinkLeft", "left eye closed"),
        ("browInnerUp", "inner brow raiser"),
        ("jawOpen", "jaw drop"),
    ):
        verts = c.call("edit", {"params": demo, "prompt": prompt, "intensity": 1.0})["vertices"][0]
        out[f"arkit_{name}"] = verts - head["vertices"]
    c.close()
    return out


def skinned(rest: np.ndarray, poses: dict) -> np.ndarray:
    """Linear blend skinning of rest [V,3] by rotations {joint index: axis-angle} about the neutral
    joints (the neck, their parent, unrotated): what Blender's Armature modifier computes."""
    m = demo_head().model
    joints = m.J_regressor @ m.v_template
    w = m.weights.astype(np.float64)
    out = rest.astype(np.float64) * (1 - sum(w[:, j : j + 1] for j in poses))
    for j, r in poses.items():
        out += w[:, j : j + 1] * ((rest - joints[j]) @ rotation(r).T + joints[j])
    return out


def test_official_rig_edit_sets_exp_values_and_bones_scaled_exactly_by_the_intensity(run, expected):
    res, arrays, _ = run
    section_ok(res, "rig")
    assert res["rig_kind"] == "flame"
    m = demo_head().model
    want = f"FLAME rig, {min(20, m.n_shape)} Shape + {m.n_exp} Exp keys, jaw bone in 'FLAME-generic-armature'"
    assert res["rig_describe"] == want
    assert res["rig_edit"]["error"] == "", res["rig_edit"]
    psi = expected["expression"]
    assert np.abs(psi).max() > 0.05  # the edit moves the expression
    np.testing.assert_array_equal(arrays["rig_exp_values"], np.float32(0.7) * psi)  # exactly s * dpsi
    s = np.float32(0.7)
    np.testing.assert_allclose(res["rig_bones"]["jaw"], s * expected["jaw_pose"], atol=2e-6)
    np.testing.assert_allclose(res["rig_bones"]["left_eye"], s * expected["eye_pose"][:3], atol=2e-6)
    np.testing.assert_allclose(res["rig_bones"]["right_eye"], s * expected["eye_pose"][3:], atol=2e-6)
    # the rig's own blendshapes give FLAME's expression blend; its bones pose it by Blender's skinning
    mix = m.v_template + m.shapedirs[:, :, m.n_shape :] @ (s * psi).astype(np.float64)
    np.testing.assert_allclose(arrays["rig_unposed"], mix, atol=2e-6)
    poses = {2: s * expected["jaw_pose"], 3: s * expected["eye_pose"][:3], 4: s * expected["eye_pose"][3:]}
    # the neutral rig's correctives are on (FLAME's): its Pose values follow the jaw bone
    fix = correctives(m.posedirs, np.zeros(3), poses[2])
    np.testing.assert_allclose(arrays["rig_pose_values"][:9], 0.0, atol=1e-7)
    np.testing.assert_allclose(arrays["rig_pose_values"][9:18], (rotation(poses[2]) - np.eye(3)).ravel(), atol=1e-6)
    want = skinned(arrays["rig_unposed"] + fix, poses)
    np.testing.assert_allclose(arrays["rig_evaluated"], want, atol=5e-6)
    assert res["rig_frame"] == "as is"  # mesh data in FLAME's frame (the armature stands it up)
    nonzero = {f'key_blocks["Exp{k + 1}"].value' for k in np.flatnonzero(psi)}
    assert set(res["rig_keyed"]) == nonzero and res["rig_bones_keyed"] == ["jaw", "left_eye", "right_eye"]
    assert res["rig_history"] == [[PROMPT, 0.7, "flame"]]
    assert res["rig_keyframe_op"] == ["FINISHED"]
    assert res["rig_keyframe_frames"] == {b: [3.0, 9.0] for b in ("jaw", "left_eye", "right_eye")}


def test_the_jaw_bone_rotates_the_jaw_as_flames_axis_angle_says(run):
    res, arrays, _ = run
    section_ok(res, "rig")
    np.testing.assert_allclose(res["rig_jaw_read_back"], JAW, atol=1e-6)
    want = skinned(arrays["rig_unposed"] + correctives(demo_head().model.posedirs, np.zeros(3), JAW), {2: JAW})
    np.testing.assert_allclose(arrays["rig_jaw_evaluated"], want, atol=5e-6)
    assert np.abs(arrays["rig_jaw_evaluated"] - arrays["rig_unposed"]).max() > 5e-3  # the jaw moved


def test_a_rig_of_another_flame_model_is_refused_naming_the_key(run):
    res, _, _ = run
    section_ok(res, "rig")
    assert res["padded_describe"].startswith("FLAME rig, 5 Shape + 20 Exp keys") and res["padded_first"] == "Exp000"
    assert res["padded_values"] == [0.0] * 20
    err = res["rig_mismatch"]["status"]["error"]
    assert "does not match the server's FLAME model" in err and "key Exp00" in err and "component" in err
    assert res["rig_mismatch"]["same"]


def test_edit_and_turntable_over_all_selected_heads(run):
    res, _, _ = run
    section_ok(res, "heads")
    assert res["head1"]["error"] == "" and res["head2"]["error"] == "" and res["heads_apart"] > 0.2
    assert res["all_selected_returned"] == ["FINISHED"] and res["all_selected_keys"] == [True, True]
    assert [e[0] for e in res["all_selected_log"]] == ["INFO", "INFO"]
    assert res["turntable_heads"] == ["FINISHED"]
    view = np.array(res["turntable_heads_view"])
    assert np.all((view[:, :2] > 0) & (view[:, :2] < 1)) and np.all(view[:, 2] > 0)  # both heads in frame


def test_presets_and_history_reapply(run):
    res, _, _ = run
    section_ok(res, "presets_history")
    assert res["preset_add"] == ["FINISHED"] and res["presets"] == [["A person who is smiling", 0.6]]
    assert res["preset_applied"] == ["A person who is smiling", 0.6]
    assert res["history_apply"] == ["FINISHED"]
    first = res["history_before"][0]
    assert res["history_after"][-1] == first and len(res["history_after"]) == len(res["history_before"]) + 1
    assert res["history_values"]["FE raising brow"] == first[1]
    assert res["preset_remove"] == ["FINISHED"] and res["presets_after"] == 0


def test_key_sequence_eases_and_never_touches_user_keys(run):
    res, _, _ = run
    section_ok(res, "sequence")
    assert res["sequence"] == ["FINISHED"] and res["sequence_again"] == ["FINISHED"]
    curves = res["sequence_curves"]
    assert [(f, v) for f, v, _ in curves["FE raising brow"]] == [(1.0, 0.0), (11.0, 1.0), (21.0, 0.0)]
    assert [(f, round(v, 4)) for f, v, _ in curves["FE smiling"]] == [(21.0, 0.0), (31.0, 0.6), (41.0, 0.0)]
    assert all(i == "BEZIER" for c in curves.values() for _, _, i in c)
    assert (
        res["sequence_user_key"][0] == "CANCELLED"
        and "your keyframes lie in frames 1-41" in res["sequence_user_key"][1]
    )
    assert "FE smiling @ 15" in res["sequence_user_key"][1] and res["sequence_user_key_same"]


def test_arkit_shapes_from_facs_definitions(run, expected):
    res, arrays, _ = run
    section_ok(res, "arkit")
    assert res["arkit_names"] == 52 and res["arkit_returned"] == ["FINISHED"]
    assert res["arkit_values"] == {"eyeBlinkLeft": 0.0, "browInnerUp": 0.0, "jawOpen": 0.0, "jawForward": 0.0}
    summary = res["arkit_log"][-1]
    assert (
        summary[0] == "INFO" and "without a FACS action FaceEdit can make, equal to the basis: jawForward" in summary[1]
    )
    assert np.abs(arrays["arkit_jawForward"]).max() == 0.0
    made = ["browInnerUp", "jawOpen"]
    if "cannot make on this head" in summary[1]:  # a mirror-symmetric head cannot close one eye: said, basis kept
        assert "equal to the basis: eyeBlinkLeft" in summary[1] and np.abs(arrays["arkit_eyeBlinkLeft"]).max() == 0
        assert any(e[0] == "WARNING" and "eyeBlinkLeft not possible on this head" in e[1] for e in res["arkit_log"])
    else:
        made.append("eyeBlinkLeft")
    for name in made:  # each shape is the server's edit for its FACS definition's prompt
        assert np.abs(arrays[f"arkit_{name}"]).max() > 2e-4, name
        np.testing.assert_allclose(arrays[f"arkit_{name}"], expected[f"arkit_{name}"], atol=2e-6, err_msg=name)


def test_train_button_reports_progress_and_cancels_on_the_server(run):
    res, _, _ = run
    section_ok(res, "train")
    assert res["train_returned"] == ["FINISHED"] and res["train_log"][0] == "INFO" and "ready" in res["train_log"][1]
    tc = res["train_cancel"]
    assert any("train head mapper" in m for m in tc["seen"])
    assert any(c[0] == "progress" for c in res["train_bar"])  # in the status bar, the sidebar closed
    assert tc["log"] == ["WARNING", "Train 'chin raiser': cancelled"] and tc["state"] == "cancelled"


def test_gltf_export_holds_the_edits_as_named_morph_targets(run):
    res, arrays, _ = run
    section_ok(res, "gltf")
    assert res["gltf_returned"] == ["FINISHED"]
    names = res["gltf_names"][1:]
    assert set(names) == {"FE_raising_brow", "eyeBlinkLeft", "browInnerUp", "jawOpen", "jawForward"}
    assert not any(" " in n for n in names)
    assert res["gltf_copy_gone"] is True  # the export's temporary copy left nothing behind
    from scipy.spatial import cKDTree

    src, got = arrays["src_basis"], arrays["gltf_basis"]
    dist, idx = cKDTree(src).query(got)
    assert dist.max() < 1e-5  # every exported vertex is one of the head's
    for name in names:
        want = arrays[f"src_{name}"][idx] - src[idx]
        np.testing.assert_allclose(arrays[f"gltf_{name}"] - got, want, atol=1e-5, err_msg=name)


def test_backend_started_from_blender_is_waited_for_killed_reported_once_and_stopped_at_quit(run):
    res, _, log = run
    section_ok(res, "backend")
    assert res["backend_start"] == ["FINISHED"] and res["backend_address"].startswith("tcp://127.0.0.1:")
    assert res["backend_refusal_start"]["refused"] and "already running" in res["backend_refusal_start"]["raised"]
    # killed while it loaded its models for Add Demo Head: one report, the scene as it was
    assert res["backend_busy_at_kill"] is True
    killed = res["backend_killed_log"]
    assert len(killed) == 1 and killed[0][0] == "ERROR" and "no answer from the FaceEdit server" in killed[0][1]
    assert killed[0][1].startswith("Add demo head: ")
    assert log.count(f"FaceEdit: {killed[0][1]}\n") == 1  # reported once
    assert res["backend_killed_same"] and res["backend_state_killed"] == "exited with code -9 (see its log)"
    # restarted: the first hello outlives the 1 s timeout while the backend loads its models
    assert res["backend_restart"] == ["FINISHED"]
    hello = res["backend_hello"]
    assert hello["error"] == "" and any("loading its models" in m for m in hello["seen"]), hello
    assert res["backend_state"].startswith("running (pid")
    assert any("server listening on" in line for line in res["backend_log_tail"])
    pid = res["backend_pid"]
    for _ in range(300):  # quitting Blender (the driver process has exited) stops the backend it started
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if _zombie(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        pytest.fail(f"the backend (pid {pid}) outlived the Blender that started it")


def _zombie(pid: int) -> bool:
    """An exited process nobody has reaped yet (containers whose init does not reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False
