"""What the Blender tests share: the bpy environments to run in, the built zip, the servers.

Every Blender test module runs its driver script once per bpy version (`blender` is
parametrized): bpy 5.0.1 (Python 3.11, `.venv-blender`: Blender 4.2 LTS to 5.0 embed 3.11) and
bpy 5.2.3 (Python 3.13, `.venv-blender-313`: Blender 5.1 and 5.2 LTS). A version whose
environment is absent skips with the reason; `make test` creates both.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from faceedit_core.errors import Cancelled
from faceedit_core.factory import build_editor
from faceedit_core.preview.editor import PreviewEditor
from faceedit_core.preview.train import PreviewTrainConfig
from tests.helpers.server import RunningServer, fast_editor

ROOT = Path(__file__).resolve().parents[2]
IN_BLENDER = Path(__file__).resolve().parent / "in_blender"


@dataclass(frozen=True)
class Blender:
    version: str
    python: Path
    make: str

    @property
    def id(self) -> str:
        return f"bpy-{self.version}"


BLENDERS = (
    Blender("5.0.1", ROOT / ".venv-blender" / "bin" / "python", "make blender-venv (bpy==5.0.1, Python 3.11)"),
    Blender("5.2.3", ROOT / ".venv-blender-313" / "bin" / "python", "make blender-venv-313 (bpy==5.2.3, Python 3.13)"),
)

BLENDER_TRAIN = PreviewTrainConfig(steps=40, batch=16, seed=8)  # its own mapper ids: always trains, with progress
SLOW_S = 2.0  # the slow server's model load and each of its edits, silent (no progress events)
TRAIN_STEPS = 40  # the slow server's trainings


@pytest.fixture(scope="module", params=BLENDERS, ids=lambda b: b.id)
def blender(request) -> Blender:
    b: Blender = request.param
    if not b.python.exists():
        pytest.skip(f"{b.python.parent.parent.name} is absent: `{b.make}` creates it; `make test` does so")
    return b


def blender_editor() -> PreviewEditor:
    return build_editor(train_config=BLENDER_TRAIN, text_to_au=fast_editor().text_to_au)


_shared: dict = {}


def shared_blender_editor() -> PreviewEditor:
    if "editor" not in _shared:
        _shared["editor"] = blender_editor()
    return _shared["editor"]


class SlowEditor:
    """The Blender tests' editor behind a server that is silent for SLOW_S: loading (the factory) and
    before each edit (no progress events; cancellable, checked every 50 ms); its trainings send
    progress and can be cancelled."""

    def __init__(self):
        time.sleep(SLOW_S)
        self.inner = shared_blender_editor()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train(self, prompt, progress=None, cancel=None):
        """A training the test controls: TRAIN_STEPS progress events 50 ms apart, cancellable."""
        self.inner.text_to_au.parse(prompt)
        for step in range(1, TRAIN_STEPS + 1):
            if cancel is not None and cancel():
                raise Cancelled("training cancelled")
            if progress is not None:
                progress({"stage": "train head mapper", "step": step, "total": TRAIN_STEPS})
            time.sleep(0.05)
        return "ph-slowtest"

    def edit(self, *args, cancel=None, **kwargs):
        end = time.monotonic() + SLOW_S
        while time.monotonic() < end:
            if cancel is not None and cancel():
                raise Cancelled("edit cancelled")
            time.sleep(0.05)
        return self.inner.edit(*args, cancel=cancel, **kwargs)


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory) -> Path:
    """The extension zip for this platform, built once per session (cp311 and cp313 wheels)."""
    import build_addon

    if not any(b.python.exists() for b in BLENDERS):
        pytest.skip("no bpy environment: `make blender-venv blender-venv-313` creates them")
    tmp = tmp_path_factory.mktemp("addon")
    zips = build_addon.build(
        tmp / "dist", [build_addon.current_platform()], build_addon.find_blender_ext(None), work=tmp / "stage"
    )
    return zips[0]


@pytest.fixture(scope="session")
def server():
    s = RunningServer(factory=shared_blender_editor)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def slow_server(blender):
    """A fresh one per driver run: its first hello must find it loading its models."""
    s = RunningServer(factory=SlowEditor)
    yield s
    s.stop()


def run_driver(
    blender: Blender, script: str, tmp: Path, args: list[str], timeout_s: int = 900
) -> tuple[dict, dict, str]:
    """Run in_blender/<script> in the bpy environment with its user folders under tmp ->
    (results.json, arrays.npz, stdout + stderr). Fails with the end of the output when it fails."""
    out = tmp / "out"
    out.mkdir(parents=True, exist_ok=True)
    (tmp / "tmp").mkdir(exist_ok=True)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp / "user"), TMPDIR=str(tmp / "tmp"))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(blender.python), str(IN_BLENDER / script), *args, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    res = json.loads((out / "results.json").read_text())
    res["wall_s"] = time.perf_counter() - t0
    arrays = dict(np.load(out / "arrays.npz")) if (out / "arrays.npz").exists() else {}
    print(f"{blender.id} {script}: {res['wall_s']:.1f} s; timings (s):", json.dumps(res.get("timings_s", {})))
    return res, arrays, log


def save_rig_npz(model, path: Path) -> Path:
    """A FlameModel's arrays for in_blender/drive_rig_tools.official_rig (what the official add-on's
    rig is made from: template, blendshapes, pose correctives, joint regressor, skinning weights)."""
    fields = ("n_shape", "v_template", "shapedirs", "posedirs", "J_regressor", "weights", "parents", "f")
    np.savez(path, **{k: getattr(model, k) for k in fields})
    return path


def correctives(posedirs: np.ndarray, neck, jaw) -> np.ndarray:
    """FLAME's pose corrective offsets [V,3] for the neck and jaw axis-angles (the eyes' features are
    zero on the heads tested): posedirs [V,3,36] x (R - I) of the neck, then the jaw, row by row."""
    feat = np.concatenate([(rotation(r) - np.eye(3)).ravel() for r in (neck, jaw)])
    return posedirs[:, :, :18].astype(np.float64) @ feat


def rotation(rotvec) -> np.ndarray:
    """Rodrigues: axis-angle [3] -> rotation matrix [3,3]."""
    k = np.asarray(rotvec, np.float64)
    theta = np.linalg.norm(k)
    if theta < 1e-12:
        return np.eye(3)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]]) / theta
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def section_ok(res: dict, name: str) -> None:
    """The driver ran section `name` to its end (its traceback otherwise)."""
    assert name in res.get("sections", {}), f"section {name} did not run; ran: {list(res.get('sections', {}))}"
    assert res["sections"][name] == "ok", f"section {name} failed in Blender:\n{res['sections'][name]}"


def background(fn):
    """Run fn in a thread -> a function that joins it and returns its result."""
    out = {}
    t = threading.Thread(target=lambda: out.update(value=fn()), daemon=True)
    t.start()

    def join(timeout=120):
        t.join(timeout)
        return out.get("value")

    return join
