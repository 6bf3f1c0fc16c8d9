"""The Blender extension in real bpy (5.0.1 / Python 3.11 and 5.2.3 / Python 3.13) against real servers.

The extension is built with build_addon.py (cp311 + cp313 wheels), installed with Blender's
extension installer and driven by in_blender/drive_addon.py in one subprocess per bpy version;
the servers run here, in the main venv, with the fast-training preview Editor (one of them
silent for seconds while it loads and before each edit). The checks compare what Blender holds
with what the server returns for the same requests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceedit_wire.client import Client
from tests.blender_addon.conftest import SLOW_S, run_driver, section_ok
from tests.helpers.server import free_port

PROMPT = "A person who is raising brow"
SECOND = "A person who is smiling"
SLIDER_VALUES = (0.5, -1.3, 2.0)
pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def run(blender, addon_zip, server, slow_server, tmp_path_factory):
    """Install and drive the add-on once per bpy version -> (results, arrays, tmp, output)."""
    tmp = tmp_path_factory.mktemp(f"drive-{blender.id}")
    down = f"tcp://127.0.0.1:{free_port()}"
    res, arrays, log = run_driver(
        blender, "drive_addon.py", tmp, [str(addon_zip), server.address, slow_server.address, down]
    )
    return res, arrays, tmp, log


@pytest.fixture(scope="module")
def expected(server):
    """What the server returns for the add-on's requests, asked here directly."""
    c = Client(server.address, timeout_s=120, retries=0)
    head = c.call("hello", {"head_mesh": True})["head"]
    params = {
        "shape": np.zeros((1, head["n_shape"]), np.float32),
        "expression": np.zeros((1, head["n_exp"]), np.float32),
    }
    out = {"head": head}
    for prompt, intensities in ((PROMPT, (1.0, 0.5)), (SECOND, (1.0, *SLIDER_VALUES))):
        for i in intensities:
            reply = c.call("edit", {"params": params, "prompt": prompt, "intensity": i})
            out[f"{prompt}@{i}"] = reply["vertices"][0]
            if i == 1.0:
                out[f"{prompt}@params"] = reply["params"]
    c.close()
    return out


def test_the_zip_installs_as_a_user_installs_it_and_imports_no_torch(run, blender):
    res, _, _, _ = run
    section_ok(res, "install")
    assert res["module"] == "bl_ext.user_default.faceedit"
    assert res["bpy"].startswith(blender.version)
    assert res["python"] == ([3, 11] if blender.version.startswith("5.0") else [3, 13])
    assert f"python{res['python'][0]}.{res['python'][1]}" in res["zmq_from"]  # the wheel for this Python
    assert res["has_torch"] is False and res["has_torch_end"] is False
    assert res["esc_keymap"] == [["Window", "faceedit.cancel", "ESC"]]
    assert res["handlers"] == {"load_pre": ["on_load_pre"], "load_post": ["on_load_post"]}
    assert res["ops_without_poll"] == []  # every operator says in poll() when and why it is unavailable


def test_gui_paths_as_far_as_headless_bpy_reaches_them(run):
    """Esc, undo, the progress cursor and the Info reporter (issue 17). What needs Blender's event loop
    (the modal reporter's timer event reaching the Info area and the status bar, an Esc key press
    dispatched through the keymap, the cursor drawn) cannot run in the bpy module; these check every
    part up to it."""
    res, _, _, log = run
    section_ok(res, "install")
    # Esc: a plain press (no modifiers) in the add-on keyconfig's global Window keymap
    assert res["esc_keymap_item"] == [["EMPTY", "WINDOW", "PRESS", True, False, False, False, False, False]]
    # undo: the request operators push no step of their own (the reply comes later); each reply that
    # changed the scene pushes exactly one, with its label; a connect or a failed request pushes none
    assert res["undo_ops"] == ["faceedit.key_sequence", "faceedit.keyframe", "faceedit.turntable"]
    assert res["undo_connect"] == [] and res["undo_edit1"] == ["Edit 'raising brow'"]
    for op in ("edit_expression", "render_views", "add_demo_head"):
        assert res["errors"][op]["undo"] == [], op
    section_ok(res, "undo")  # ... and undo takes the whole reply back in one step, redo restores it
    undo = res["undo"]
    assert undo["status"]["error"] == "" and undo["pushes"] == ["Edit 'frowning'"] and undo["changed"]
    assert undo["undone"] and undo["history_undone"] == 0 and undo["redone"]
    # window_manager.progress_*: begun at the first poll step of the request, on while it ran, ended with it
    assert res["progress_cursor"] == {"busy": [False, True], "after": False}
    # the Info reporter without a window (background mode) falls back to the console, once
    assert res["background"] is True and res["report_no_window"] == ["FINISHED"] and log.count("Warning: probe\n") == 1


def test_every_operator_refuses_in_poll_with_the_reason(run):
    res, _, _, _ = run
    section_ok(res, "refusals_idle")
    reasons = {
        "edit_no_target": "Choose a head first",
        "render_no_target": "Choose a head first",
        "keyframe_no_target": "Choose a head first",
        "turntable_no_target": "Choose a head first",
        "cancel_idle": "No FaceEdit request is running",
        "backend_start_unset": "Set 'Backend environment' or 'Backend command'",
        "backend_stop_none": "No backend started by Blender is running",
        "history_no_target": "Choose a head first",
    }
    for name, text in reasons.items():
        got = res["refusals_idle"][name]
        assert got["refused"] and text in got["raised"], (name, got)
    assert res["refusal_busy"]["refused"] and "busy with 'Edit 'raising brow''" in res["refusal_busy"]["raised"]
    assert "press Esc to cancel" in res["refusal_busy"]["raised"] and res["cancel_poll_busy"] is True
    assert (
        res["refusal_edit_mode"]["refused"] and "Edit Mode: switch to Object Mode" in res["refusal_edit_mode"]["raised"]
    )


def test_demo_head_is_placed_clear_of_the_cube_selected_and_framed(run, expected):
    res, arrays, tmp, _ = run
    section_ok(res, "head")
    head = res["head"]
    assert res["connect"]["error"] == "" and res["server"]["tier"] == "preview" and res["n_expressions"] >= 6
    assert (
        head["kind"] == "demo" and head["verts"] == len(expected["head"]["vertices"]) and head["uv_layers"] == ["UVMap"]
    )
    np.testing.assert_allclose(arrays["basis"], expected["head"]["vertices"], atol=1e-6)
    (lo, hi), (clo, chi) = np.array(head["box"]), np.array(head["cube_box"])
    assert res["had_cube"] and not (np.all(lo < chi) and np.all(clo < hi))  # the boxes do not overlap
    assert head["selected"] == [head["name"]] and head["active"] == head["name"]
    assert head["camera"] == "FE camera"
    view = np.array(head["in_view"])
    assert np.all((view[:, :2] > 0.02) & (view[:, :2] < 0.98)) and np.all(view[:, 2] > 0)  # in front, in frame
    assert view[:, 1].max() - view[:, 1].min() > 0.6  # ... and filling it
    assert "scene camera 'Camera' -> 'FE camera'" in res["add_head"]["message"]
    from PIL import Image

    img = np.asarray(Image.open(res["head_render"]).convert("RGB")).astype(float)
    h, w = img.shape[:2]
    centre, corner = img[h // 2 - 2 : h // 2 + 2, w // 2 - 2 : w // 2 + 2].mean((0, 1)), img[:4, -4:].mean((0, 1))
    assert centre[0] > centre[2] + 5 and np.abs(centre - corner).max() > 10  # skin (warm), not the background


def test_demo_head_carries_the_part_colours_and_hides_the_faces_previews_leave_out(run, expected):
    """Issue 15: the ICT head's per-vertex part colours (skin, lips, sclera, iris, teeth, gums, lashes) as a
    colour attribute the material reads; the helper meshes and lash cards the preview does not draw get a
    transparent material."""
    res, arrays, _, _ = run
    section_ok(res, "head")
    look, head = res["head_look"], expected["head"]
    want = head["vertex_colours"]
    assert want.shape == head["vertices"].shape and np.ptp(want, axis=0).min() > 0.5  # dark pupils to white sclera
    assert look["attributes"] == [["FaceEdit colour", "POINT", "FLOAT_COLOR"]]
    assert look["active_color"] == look["default_color"] == "FaceEdit colour"
    got = arrays["colours"]
    np.testing.assert_allclose(got[:, :3], want, atol=5e-4)  # Blender's sRGB <-> linear tables
    assert np.all(got[:, 3] == 1.0)
    parts, hidden = look["materials"]
    assert parts["surface"] == "BSDF_PRINCIPLED" and parts["base_from"] == ["VERTEX_COLOR", "FaceEdit colour"]
    assert hidden["surface"] == "BSDF_TRANSPARENT" and hidden["viewport_alpha"] == 0.0
    drawn = head["drawn_faces"].astype(bool)
    assert 0 < (~drawn).sum() < len(drawn) // 4
    np.testing.assert_array_equal(arrays["material_index"], (~drawn).astype(np.int32))


def test_edit_writes_one_live_slider_key_at_intensity_one(run, expected):
    res, arrays, _, _ = run
    section_ok(res, "edit")
    assert res["edit_returned"] == ["FINISHED"] and res["edit_busy_after_call"] is True  # never blocked
    assert res["edit1"]["error"] == "" and res["edit2"]["error"] == ""
    head = expected["head"]["vertices"]
    want = expected[f"{PROMPT}@1.0"] - head
    assert np.abs(want).max() > 1e-3  # the edit moves the face
    for tag in ("edit1", "edit2"):  # the key holds intensity 1 both times: only its value changed
        np.testing.assert_allclose(arrays[tag] - arrays["basis"], want, atol=1e-6)
    assert res["edit1_value"] == 1.0 and res["key_value"] == 0.5 and res["key_slider"] == [-2.0, 2.0]
    assert res["key_names"] == ["Basis", "FE raising brow"]  # ... and never added another
    assert "shape unchanged" in res["edit2"]["message"]


def test_live_slider_value_v_gives_the_vertices_of_intensity_v(run, expected):
    """Exactly for the expression (linear in the intensity); the edit's jaw and gaze rotations are
    blended linearly by the key, within the second-order bound of a rotation's chord."""
    from faceedit_core.flame.default_head import demo_head

    res, arrays, _, _ = run
    section_ok(res, "slider")
    m = demo_head().model
    posed = m.weights[:, 2:].sum(1) > 0  # vertices the jaw or the eyes move
    params = expected[f"{SECOND}@params"]
    theta = max(np.linalg.norm(params["jaw_pose"][0]), *np.linalg.norm(params["eye_pose"][0].reshape(2, 3), axis=1))
    joints = m.J_regressor @ m.v_template
    reach = max(np.linalg.norm(m.v_template[m.weights[:, j] > 0] - joints[j], axis=1).max() for j in (2, 3, 4))
    moved = np.abs(expected[f"{SECOND}@1.0"] - m.v_template)[posed].max()
    corrective = np.abs(m.posedirs).sum(-1).max()
    for v in SLIDER_VALUES:
        got, want = arrays[f"slider@{v}"], expected[f"{SECOND}@{v}"]
        np.testing.assert_allclose(got[~posed], want[~posed], atol=2e-6, err_msg=str(v))
        # |f''| of a vertex rotated about a joint while the expression (and the joint) move linearly
        bound = 0.5 * abs(v * (v - 1)) * (theta**2 * (reach + max(1, abs(v)) * moved + corrective) + 4 * theta * moved)
        assert np.abs(got[posed] - want[posed]).max() <= bound + 2e-6, (v, bound)


def test_progress_and_outcomes_reach_the_status_bar_and_the_info_area(run):
    res, _, _, log = run
    bars = res["status_bar_busy"]
    assert bars and all(any(c[0] == "progress" for c in bar) for bar in bars)  # a bar with the sidebar closed
    assert any(c == ["operator", ""] for c in bars[0])  # ... and its Cancel button
    assert res["status_bar_after"] == [["label", f"FaceEdit: {res['edit1']['message']}"]]
    assert "Edit 'raising brow': the server is working (1 s)" in res["slow_edit"]["seen"]  # what the server does
    # each request ended in exactly one report (in the bpy module, which runs in background mode,
    # reports go to the console only: the Info area's modal reporter needs Blender's event loop)
    assert res["edit1"]["log"] == [["INFO", res["edit1"]["message"]]]
    assert log.count(f"FaceEdit: {res['edit1']['message']}\n") == 1
    err = res["errors"]["edit_expression"]["status"]["error"]
    assert log.count(f"FaceEdit: {err}\n") == 1


def test_keyframes_through_the_channelbag_and_re_edits_keep_them(run):
    res, arrays, _, _ = run
    assert res["slotted"] is True  # Blender 5: slotted actions, curves in the channelbag
    fc = res["fcurve"]
    assert fc["data_path"] == 'key_blocks["FE raising brow"].value'
    assert [tuple(p) for p in fc["points"]] == [(5.0, 1.0), (12.0, 0.25)]
    assert res["keyframe_op"] == ["FINISHED"]
    section_ok(res, "keyed")
    refused = res["keyed_refused"]
    assert "has keyframes (frames 5, 12)" in refused["status"]["error"] and refused["same"]
    assert "Replace keyed shapes" in refused["status"]["error"]
    assert res["keyed_replaced"]["error"] == "" and res["keyed_points_kept"] is True
    np.testing.assert_allclose(arrays["edit_replaced"], arrays["edit1"], atol=1e-6)


def test_the_chosen_identity_travels_in_edit_and_render_and_a_preview_server_refuses_it(run):
    res, _, _, _ = run
    section_ok(res, "identity")
    ident = res["identity"]
    for case, field in (
        ("7-edit_expression", {"seed": 7}),
        ("7-render_views", {"seed": 7}),
        ("my face-edit_expression", {"latent": "my face"}),
    ):
        got = ident[case]
        op = "render" if "render" in case else "edit"
        assert [s[0] for s in got["sent"]] == [op], case  # one request...
        assert got["sent"][0][1]["identity"] == field, case  # ... that carries the identity
        status = got["status"]
        assert "[invalid_field]: field 'identity' needs the paper tier" in status["error"], case
        assert len(status["log"]) == 1 and status["log"][0][0] == "ERROR", case  # reported once
        assert got["same"], case  # nothing in the scene changed
    assert ident["seed_too_big"]["refused"] and "a seed must lie within 0..2^63-1" in ident["seed_too_big"]["raised"]
    default = ident["default"]
    assert default["status"]["error"] == "" and [s[0] for s in default["sent"]] == ["edit"]
    assert "identity" not in default["sent"][0][1]  # sent only when named


def test_mix_replace_sets_earlier_keys_to_zero_and_add_keeps_them(run):
    res, _, _, _ = run
    section_ok(res, "mix")
    assert res["mix_replace"]["values"] == {"FE raising brow": 0.0, "FE smiling": 1.0}
    assert "1 earlier FE key(s) set to 0" in res["mix_replace"]["log"][0][1]
    assert res["mix_add"]["values"] == {"FE raising brow": 0.5, "FE smiling": 1.0}


def test_history_records_each_edit_and_survives_save(run):
    res, _, _, _ = run
    assert res["history"][:2] == [
        ["A person who is raising brow", 1.0, "FE raising brow", "demo"],
        ["A person who is raising brow", 0.5, "FE raising brow", "demo"],
    ]
    section_ok(res, "save_reload")
    assert res["history_after_reload"] >= 6


def test_render_views_become_packed_planes_hidden_from_renders(run):
    res, _, _, _ = run
    section_ok(res, "views")
    assert res["views"]["error"] == "" and len(res["planes"]) == 3
    for plane in res["planes"]:
        assert plane["packed"] and plane["packed_bytes"] > 100 and plane["size"] == [64, 64]
        assert plane["filepath"] == "" and plane["hide_render"] is True  # nothing on disk, not in renders
    yaws = [p["yaw"] for p in res["planes"]]
    assert yaws == sorted(yaws) and yaws[-1] - yaws[0] > 60
    assert res["views_again_returned"] == ["FINISHED"] and res["views_again"]["busy"] is False
    assert res["views_again"]["message"] == "FE views raising brow: 3 image planes, hidden from final renders"
    assert res["n_view_collections"] == 1 and res["n_plane_images"] == 3  # re-render replaced, not duplicated
    assert res["planes_shown"] == [False] * 3 and res["planes_hidden"] == [True] * 3  # the toggle
    assert {p["image"] for p in res["planes"]} <= set(res["reloaded_packed"])  # still packed after save + reload
    assert res["temps_new"] == []


def test_turntable_has_its_own_camera_and_keeps_the_frame_range(run):
    res, _, _, _ = run
    section_ok(res, "turntable")
    tt = res["turntable"]
    assert tt["camera_parent"] == "FE turntable" and tt["track"] == [["TRACK_TO", "FE turntable"]]
    assert tt["interp"] == ["LINEAR", "LINEAR"] and tt["scene_camera"] == "FE turntable camera"
    (f0, z0), (f1, z1) = tt["points"]
    assert f1 - f0 == 8 and z0 == 0 and abs(z1 - 2 * np.pi) < 1e-5
    assert tt["frames"] == res["range_before"]  # the user's range is kept...
    assert res["turntable_range"] == [res["range_before"][0], res["range_before"][0] + 7]  # ...unless asked
    view = np.array(tt["in_view"])
    assert np.all((view[:, :2] > 0) & (view[:, :2] < 1)) and np.all(view[:, 2] > 0)  # it sees the head


def test_background_batch_renders_frames_and_a_contact_sheet(run):
    res, _, _, _ = run
    assert res["turntable_actions"] == ["FE turntableAction"]  # the batch rebuilt the turn in place
    assert sorted(res["batch"]) == ["FE raising brow", "neutral"]
    frames = [Path(p) for paths in res["batch"].values() for p in paths]
    assert len(frames) == 4 and all(p.read_bytes()[:4] == b"\x89PNG" for p in frames)
    assert len(res["batch_progress"]) == 4 and res["batch_progress"][-1].startswith("[4/4]")
    from PIL import Image

    sheet = np.asarray(Image.open(res["sheet"]))
    assert sheet.shape[:2] == (96, 96)
    neutral, edited = (
        np.asarray(Image.open(p)) for p in (res["batch"]["neutral"][0], res["batch"]["FE raising brow"][0])
    )
    assert np.array_equal(sheet[:48, :48], neutral) and not np.array_equal(neutral, edited)


def test_a_70_character_non_ascii_prompt_gets_one_key_within_63_bytes(run):
    res, _, _, _ = run
    section_ok(res, "long_prompt")
    lp = res["long_prompt"]
    assert lp["chars"] == 70 and lp["first"]["error"] == "" and lp["second"]["error"] == ""
    assert lp["name_bytes"] <= 63 and lp["name"].startswith("FE Smiling — a warm")
    assert lp["name"].encode("utf-8").decode("utf-8") == lp["name"]  # never cut inside a character
    assert lp["keys"].count(lp["name"]) == 1 and not any(k.endswith(".001") for k in lp["keys"])
    assert lp["keyframe_poll"] is True and lp["keyframe"] == ["FINISHED"]  # Keyframe finds it


def test_a_server_silent_for_four_timeouts_while_alive_is_waited_for(run):
    res, _, _, _ = run
    section_ok(res, "liveness")
    assert res["slow_hello"]["error"] == "" and res["slow_edit"]["error"] == ""
    assert res["slow_hello_s"] > 3 * 0.5 and res["slow_edit_s"] > 3 * 0.5  # longer than three timeouts
    assert any("loading its models" in m for m in res["slow_hello"]["seen"])
    assert SLOW_S > 3 * 0.5


def test_file_new_during_a_request_cancels_it_everywhere(run):
    res, _, _, _ = run
    section_ok(res, "file_new")
    fn = res["file_new"]
    assert fn["busy"] is False and fn["timer"] is True and fn["load_post_ran"] is True
    assert fn["log_last"] == [
        "WARNING",
        "Edit 'smiling': cancelled because another file was loaded (nothing was written)",
    ]
    assert fn["server_state"] == "cancelled"  # the server stopped the job too
    assert "FaceEdit demo head" not in fn["objects"] and fn["head_again"]["error"] == ""


def test_errors_leave_the_scene_unchanged(run, expected):
    res, _, _, _ = run
    n = len(expected["head"]["vertices"])
    section_ok(res, "errors")
    err = res["errors"]
    assert "prompt_not_understood" in err["prompt"]["status"]["error"] and err["prompt"]["same"]
    for op in ("edit_expression", "render_views", "add_demo_head"):
        status = err[op]["status"]
        assert "no answer from the FaceEdit server" in status["error"], err[op]
        assert len(status["log"]) == 1 and status["log"][0][0] == "ERROR"  # reported once
        assert err[op]["same"], op
    rig = err["flame_on_preview"]
    refusal = f"has 5023 vertices but the server's head has {n}" if n != 5023 else "does not match the server's FLAME"
    assert rig["returned"][0] == "CANCELLED" and refusal in rig["error"]
    assert rig["same"] and res["rig_kind"] == "flame"


def test_panel_menu_preferences_and_status_bar_draw_with_this_blender_api(run, expected):
    res, _, _, _ = run
    n = len(expected["head"]["vertices"])
    draws = {state: [tuple(c) for c in calls] for state, calls in res["draws"].items()}
    assert ("label", "Not connected") in draws["offline"] and ("label", "no head chosen") in draws["offline"]
    assert ("label", "Connected: preview tier") in draws["connected"]
    assert ("label", f"demo head, {n} vertices") in draws["connected"]
    assert any(c[0] == "progress" for c in draws["busy"]) and not any(c[0] == "progress" for c in draws["connected"])
    assert any(c == ("operator", "A person who is smiling") for c in draws["connected"])  # presets from the server
    assert any(c[0] == "label" and c[1] and c[1].startswith("'FLAME-generic'") for c in draws["error"])
