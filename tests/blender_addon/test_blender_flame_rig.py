"""An official FLAME rig edited against a `--flame` server, in both bpy versions (issue 16's Blender test).

The server runs the preview tier on the FLAME-format stand-in written as a user's generic_model.pkl
(tests/helpers/flame.py), read through the loader users' files take (`build_editor(flame=...)`, what
`faceedit-server --flame PATH` calls). in_blender/drive_flame_rig.py builds rigs from that file's
model as the official FLAME add-on builds them (5023 vertices, Basis + Shape/Exp/Pose keys, padded
`Exp000` and unpadded `Exp1` names, the armature) and edits each through the add-on. The evaluated
mesh must be the server's vertices for the same edit, and the Exp values and the jaw bone keyed.
"""

from __future__ import annotations

import numpy as np
import pytest

from faceedit_core.factory import build_editor
from faceedit_core.flame.io import load_flame_model
from faceedit_core.flame.standin import N_VERTS
from faceedit_core.preview.train import PreviewTrainConfig
from faceedit_wire.client import Client
from tests.blender_addon.conftest import correctives, rotation, run_driver, save_rig_npz, section_ok
from tests.helpers.flame import write_flame_standin
from tests.helpers.server import RunningServer, fast_editor

PROMPT = "open the mouth"  # moves the jaw bone (and its pose correctives) as well as the Exp keys
# the stand-in's head mapper, once per module (about 15 s here): the test compares the rig with the
# server's own edit, so any deterministic mapper does; this one still opens the jaw
TRAIN = PreviewTrainConfig(steps=20, batch=8, seed=8)
RIGS = {"female": "Exp000", "male": "Exp1"}  # padded and unpadded key names
pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def flame_file(tmp_path_factory):
    return write_flame_standin(tmp_path_factory.mktemp("flame"), "generic_model.pkl")


@pytest.fixture(scope="module")
def flame_server(flame_file):
    editor = build_editor(flame=flame_file, train_config=TRAIN, text_to_au=fast_editor().text_to_au)
    editor.train_head()
    s = RunningServer(factory=lambda: editor)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def model(flame_file):
    return load_flame_model(flame_file)


@pytest.fixture(scope="module")
def run(blender, addon_zip, flame_server, model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"flame-rig-{blender.id}")
    rig_npz = save_rig_npz(model, tmp / "flame_model.npz")
    res, arrays, _ = run_driver(
        blender, "drive_flame_rig.py", tmp, [str(addon_zip), flame_server.address, PROMPT, str(rig_npz)]
    )
    return res, arrays


def server_edit(address: str, arrays: dict, tag: str) -> dict:
    """The server's edit of the parameters the add-on sent for rig `tag`, asked here directly."""
    c = Client(address, timeout_s=120, retries=0)
    sent = {k.removeprefix(f"{tag}_sent_"): v for k, v in arrays.items() if k.startswith(f"{tag}_sent_")}
    edit = c.call("edit", {"params": sent, "prompt": PROMPT, "intensity": 1.0})
    c.close()
    return edit


@pytest.mark.parametrize("tag", RIGS)
def test_official_rig_edit_gives_the_servers_vertices_and_keys_the_exp_values_and_jaw(run, flame_server, model, tag):
    res, arrays = run
    section_ok(res, tag)
    n_shape, n_exp = model.n_shape, model.shapedirs.shape[2] - model.n_shape
    assert res[f"{tag}_verts"] == N_VERTS and res[f"{tag}_keys"]["Exp"] == [n_exp, RIGS[tag]]
    assert res[f"{tag}_keys"]["Shape"][0] == 300 == n_shape and res[f"{tag}_keys"]["Pose"][0] == 36
    assert res[f"{tag}_describe"] == f"FLAME rig, 300 Shape + 100 Exp keys, jaw bone in 'FLAME-{tag}-armature'"
    assert res[f"{tag}_edit"]["error"] == "", res[f"{tag}_edit"]
    assert res[f"{tag}_frame"] == "as is"  # mesh data in FLAME's frame: mesh space is the server's
    edit = server_edit(flame_server.address, arrays, tag)
    psi, jaw = edit["params"]["expression"][0], edit["params"]["jaw_pose"][0]
    assert np.abs(psi).max() > 0.05 and np.linalg.norm(jaw) > 0.05  # the edit moves the keys and the jaw
    np.testing.assert_array_equal(arrays[f"{tag}_exp"][: len(psi)], psi)  # intensity 1: psi itself
    np.testing.assert_allclose(arrays[f"{tag}_pose"][9:18], (rotation(jaw) - np.eye(3)).ravel(), atol=1e-6)
    server = edit["vertices"][0].astype(np.float64)
    assert np.abs(server - model.v_template).max() > 2e-3  # the server's head moved visibly
    np.testing.assert_allclose(arrays[f"{tag}_evaluated"], server, rtol=0, atol=1e-5)
    # without the correctives the rig would be off by more than the tolerance: the check can fail
    assert np.abs(correctives(model.posedirs, np.zeros(3), jaw)).max() > 1e-5
    keyed = {f"Exp{k:03d}" if tag == "female" else f"Exp{k + 1}" for k in np.flatnonzero(arrays[f"{tag}_exp"])}
    assert keyed and set(res[f"{tag}_keyed"]) == keyed
    assert res[f"{tag}_bones_keyed"]["jaw"] == [5.0]
    assert res[f"{tag}_pose_keyed"] == [[5.0]] * 36  # the correctives keyed with the bones they follow
