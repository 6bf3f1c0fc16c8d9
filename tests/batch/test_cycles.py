"""Cycles turntables through a headless Blender worker (the bpy module in .venv-blender)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceedit_core.batch.backends import LocalBackend
from faceedit_core.batch.runner import run_batch
from faceedit_core.batch.spec import load_spec
from tests.batch.conftest import write_spec

ROOT = Path(__file__).resolve().parents[2]
BLENDER_PY = ROOT / ".venv-blender" / "bin" / "python"
pytestmark = [
    pytest.mark.blender,
    pytest.mark.slow,
    pytest.mark.skipif(
        not BLENDER_PY.exists(),
        reason=".venv-blender is absent: `make blender-venv` creates it (bpy==5.0.1, Python 3.11)",
    ),
]


def test_cycles_renders_the_glb_edit_and_refuses_another_bpy_version(tmp_path):
    cycles = (
        "[[turntables]]\nviews = 2\nsize = 32\nyaw_range = [-30.0, 30.0]\nrenderer = 'cycles'\nsamples = 2\n"
        f"blender_python = '{BLENDER_PY}'\n"
    )
    pinned_elsewhere = cycles.replace("samples = 2", "samples = 2\nblender_version = '4.2.0'")
    spec = write_spec(tmp_path, "[[heads]]\nseeds = [0]\n", cycles + pinned_elsewhere)
    # write_spec's own preview turntable comes first: three items
    result = run_batch(load_spec(spec), tmp_path / "out", LocalBackend(1), progress=False)
    preview, rendered, refused = result.lines
    assert preview["status"] == "done" and rendered["status"] == "done"
    sheet = np.asarray(Image.open(result.out / rendered["outputs"]["contact_sheet"]["path"]))
    assert sheet.shape == (64, 64, 4)
    frame = np.asarray(Image.open(result.out / rendered["outputs"]["frames"][0]["path"]))
    assert 0 < (frame[..., 3] > 0).mean() < 1  # the head, on a transparent background
    before, after = sheet[:32], sheet[32:]
    assert np.abs(before.astype(int) - after.astype(int)).max() > 0  # the shape key moved the face
    assert refused["status"] == "failed" and refused["attempts"] == 1
    assert "bpy 5.0.1" in refused["error"] and "the spec pins 4.2.0" in refused["error"]
