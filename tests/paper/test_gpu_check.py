"""benchmarks/gpu_check.sh: valid bash, its arguments, and its CPU fallback on the tiny configuration."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.helpers.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.sh"


def _run(*args, timeout=600, python=sys.executable):
    env = {**os.environ, "PYTHON": str(python)}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


def _fake_cuda_python(tmp_path, pytest_status: int):
    """An interpreter stand-in that reports a CUDA device, logs the calls it gets and answers
    pytest with `pytest_status` (the script's control flow on a GPU machine, without one)."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{log}"\n'
        'case "$1" in\n'
        "  -c) echo 1 ;;\n"
        f"  -m) exit {pytest_status} ;;\n"
        "  *) echo '| what | median |' ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    return fake, log


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


@pytest.mark.parametrize("pytest_status", [0, 1])
def test_on_a_cuda_machine_the_tests_run_first_and_their_failure_sets_the_exit_status(tmp_path, pytest_status):
    fake, log = _fake_cuda_python(tmp_path, pytest_status)
    done = _run(python=fake, timeout=60)
    calls = log.read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["-c", "-m", "benchmarks/bench_paper_train.py"], calls
    assert "-k cuda or nvdiffrast" in calls[1] and calls[2] == "benchmarks/bench_paper_train.py --gpu-check"
    assert "| what | median |" in done.stdout and "gpu_check.sh: done" in done.stdout  # the table either way
    assert done.returncode == (1 if pytest_status else 0), done.stderr
    assert ("CUDA tests FAILED (status 1)" in done.stderr) == bool(pytest_status)
    skipped = _run("--no-tests", "--tiny", python=fake, timeout=60)
    assert skipped.returncode == 0 and "--gpu-check --tiny" in log.read_text().splitlines()[-1]
