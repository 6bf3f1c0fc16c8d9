"""Ctrl-C stops `faceedit batch` cleanly (exit 130, the manifest lists what finished, no worker or
temporary file left behind) and the same command resumes, skipping the finished items."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faceedit_core.batch.backends import LocalBackend
from faceedit_core.batch.runner import read_manifest, run_batch
from faceedit_core.batch.spec import load_spec
from tests.batch.conftest import write_spec

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def wait_for(predicate, limit_s: float, what: str):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {limit_s} s")


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path):
    spec = write_spec(tmp_path, "[[heads]]\nseeds = [0, 1, 2, 3]\n")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-c", "from faceedit_core.cli import main; main()", "batch", str(spec), "--out", str(out)]
    proc = subprocess.Popen(
        cmd + ["--workers", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: list(out.glob("items/*/record.json")), 600, "the first item")
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends (here to the driver only: it stops its workers)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted:" in stderr and "run the same command again to resume" in stderr
    lines = read_manifest(out / "manifest.jsonl")
    statuses = [line["status"] for line in lines]
    assert len(lines) == 4 and "failed" not in statuses
    assert statuses.count("done") >= 1 and statuses.count("not_run") >= 1, statuses
    assert not list(out.rglob("*.tmp"))
    for line in lines:  # the pool's worker processes are gone
        if line["status"] == "done":
            pid = line["worker"]["pid"]
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30, f"worker {pid} exiting")

    again = run_batch(load_spec(spec), out, LocalBackend(1), progress=False)
    after = [line["status"] for line in again.lines]
    assert after == ["skipped" if s == "done" else "done" for s in statuses]
