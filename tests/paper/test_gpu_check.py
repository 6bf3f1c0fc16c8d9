"""benchmarks/gpu_check.sh: valid bash, its arguments, and its CPU fallback on the tiny configuration."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.helpers.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.sh"


def _run(*args, timeout=600):
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_the_script_is_valid_bash_and_checks_its_arguments():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    assert os.access(SCRIPT, os.X_OK)
    bad = _run("--fast")
    assert bad.returncode == 2 and "unknown argument" in bad.stderr
    if not torch.cuda.is_available():
        no_gpu = _run()
        assert no_gpu.returncode == 3 and "--tiny" in no_gpu.stderr


@pytest.mark.slow
def test_the_cpu_fallback_prints_the_table_on_the_tiny_configuration():
    done = _run("--tiny", "--no-tests")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    for row in (
        "Next3D one view (64x64)",
        "8-view turntable",
        "edit (mapper + FLAME) + render",
        "training step, batch 2",
    ):
        assert row in out, out
    assert "peak RSS +" in out and "edit + render / render =" in out and "gpu_check.sh: done" in out
