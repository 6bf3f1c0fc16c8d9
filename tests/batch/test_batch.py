"""`faceedit batch` locally and on a local Ray instance: same outputs, a killed worker retried, a poisoned
item failing alone, finished items skipped on a rerun, the editor built once per worker process.

One Ray instance for the module (ray.init(num_cpus=2)); the local run is made once and compared with.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from faceedit_core.batch.backends import LocalBackend, RayBackend
from faceedit_core.batch.runner import read_manifest, run_batch
from faceedit_core.batch.spec import EditorSpec, load_spec
from faceedit_core.batch.train import train_prompts
from faceedit_core.params import FlameParams
from faceedit_core.storage.gltf import read_glb
from faceedit_core.storage.mesh_io import read_obj
from tests.batch.conftest import PROMPT
from tests.batch.faults import HoldFirstAttempt, kill_when_held
from tests.helpers.server import FAST

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'faceedit[ray]' (CI installs .[test])")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def by_head(lines: list[dict]) -> dict[str, dict]:
    return {line["inputs"]["head"]["label"]: line for line in lines}


def output_hashes(line: dict) -> dict:
    o = line["outputs"]
    return {
        "params": o["params"]["sha256"],
        "obj": o["obj"]["sha256"],
        "glb": o["glb"]["sha256"],
        "sheet": o["contact_sheet"]["sha256"],
        "frames": [f["sha256"] for f in o["frames"]],
    }


@pytest.fixture(scope="module")
def local_run(small_batch, tmp_path_factory):
    out = tmp_path_factory.mktemp("local_out")
    result = run_batch(load_spec(small_batch), out, LocalBackend(2), progress=False)
    return result


@pytest.fixture(scope="module")
def ray_cluster(_faceedit_home):
    env = {
        "FACEEDIT_HOME": str(_faceedit_home),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield
    ray.shutdown()


def test_local_run_writes_every_output(local_run):
    lines = by_head(read_manifest(local_run.manifest))
    assert {k: v["status"] for k, v in lines.items()} == {"seed0": "done", "good": "done", "bad": "failed"}
    good = lines["good"]
    root = local_run.out
    params = FlameParams.load(root / good["outputs"]["params"]["path"])
    assert params.batch_size == 1 and float(params.shape[0, 0]) == pytest.approx(0.8)
    glb = read_glb(root / good["outputs"]["glb"]["path"])
    ((name, offsets),) = glb["targets"]
    assert name == PROMPT and glb["weights"] == [1.0]
    assert np.abs(offsets).max() > 1e-4  # the edit moved the mesh
    verts, faces, uvs, _ = read_obj(root / good["outputs"]["obj"]["path"])
    np.testing.assert_allclose(glb["positions"] + offsets, verts, atol=2e-6)  # base + morph = the edited OBJ
    np.testing.assert_array_equal(glb["indices"], faces)
    from PIL import Image

    sheet = Image.open(root / good["outputs"]["contact_sheet"]["path"])
    assert sheet.size == (2 * 48, 2 * 48)  # 2 views x (input, edit)
    assert len(good["outputs"]["frames"]) == 2
    assert good["inputs"]["head"]["sha256"] and good["input_hash"] and good["result"]["mapper_ids"]
    assert json.loads((root / "run.json").read_text())["counts"] == {"done": 2, "failed": 1}


def test_a_poisoned_item_fails_alone_with_a_clear_error(local_run):
    bad = by_head(local_run.lines)["bad"]
    assert bad["status"] == "failed" and bad["attempts"] == 1  # bad input: no retry
    assert "bad.npz" in bad["error"] and "is not a plain-array .npz file" in bad["error"]
    assert bad["outputs"] == {}


def test_ray_outputs_equal_the_local_run_after_a_worker_is_killed(small_batch, local_run, ray_cluster, tmp_path):
    hold = tmp_path / "hold"
    hold.mkdir()
    killer = {}
    thread = threading.Thread(target=lambda: killer.update(kill_when_held(hold, signal.SIGKILL)), daemon=True)
    thread.start()
    result = run_batch(
        load_spec(small_batch),
        tmp_path / "ray_out",
        RayBackend(num_cpus=1),
        hook=HoldFirstAttempt(hold, "seed0-"),
        progress=False,
    )
    thread.join(timeout=5)
    assert "pid" in killer, killer
    ray_lines, local_lines = by_head(result.lines), by_head(local_run.lines)
    # the manifest is complete: every item done except the poisoned one, which failed alone
    assert {k: v["status"] for k, v in ray_lines.items()} == {"seed0": "done", "good": "done", "bad": "failed"}
    killed = ray_lines["seed0"]
    assert killed["attempts"] == 2 and killed["worker"]["pid"] != killer["pid"]
    assert killed["errors"][0].startswith("attempt 1: ") and "died" in killed["errors"][0].lower()
    # byte for byte: parameters, OBJ, GLB, every frame and the contact sheet
    for head in ("seed0", "good"):
        assert output_hashes(ray_lines[head]) == output_hashes(local_lines[head]), head
        assert ray_lines[head]["input_hash"] == local_lines[head]["input_hash"]
    assert ray_lines["bad"]["error"] == local_lines["bad"]["error"]
    # the editor is built once per worker process, not once per item
    records = [line for line in result.lines if line["status"] == "done"] + result.trains
    assert all(r["worker"]["editor_builds"] == 1 for r in records), [r["worker"] for r in records]


def test_training_prompts_on_ray_survives_a_killed_worker(ray_cluster, tmp_path):
    hold = tmp_path / "hold"
    hold.mkdir()
    thread = threading.Thread(target=kill_when_held, args=(hold, signal.SIGKILL), daemon=True)
    thread.start()
    editor = EditorSpec(train_steps=FAST.steps, train_batch=FAST.batch)
    prompts = ["A person who is frowning", PROMPT]
    lines = train_prompts(prompts, editor, RayBackend(), hook=HoldFirstAttempt(hold, "frowning"), progress=False)
    thread.join(timeout=5)
    assert [line["status"] for line in lines] == ["done", "done"]
    assert [line["attempts"] for line in lines] == [2, 1]
    assert all(line["mapper_id"].startswith("pv-") for line in lines)


def test_a_rerun_skips_finished_items_and_redoes_changed_ones(small_batch, local_run):
    out = local_run.out
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "items").rglob("*") if p.is_file()}
    again = run_batch(load_spec(small_batch), out, LocalBackend(1), progress=False)
    assert {k: v["status"] for k, v in by_head(again.lines).items()} == {
        "seed0": "skipped",
        "good": "skipped",
        "bad": "failed",
    }
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing rewritten
    # new content in good.json: that item (and only it) runs again
    good = small_batch.parent / "good.json"
    params = FlameParams.load(good)
    params.shape[0, 0] = -0.8
    params.save(good)
    third = run_batch(load_spec(small_batch), out, LocalBackend(1), progress=False)
    statuses = {k: v["status"] for k, v in by_head(third.lines).items()}
    assert statuses == {"seed0": "skipped", "good": "done", "bad": "failed"}
    old, new = by_head(again.lines)["good"], by_head(third.lines)["good"]
    assert old["input_hash"] != new["input_hash"] and output_hashes(old)["params"] != output_hashes(new)["params"]
