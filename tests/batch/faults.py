"""Fault injection for the batch tests: hooks that run in the worker before each attempt (they must pickle)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from faceedit_core.storage.atomic import atomic_write_text


class HoldFirstAttempt:
    """The first attempt of the task whose id contains `match` writes its PID to folder/pid and waits
    to be killed; later attempts (the retry) run normally. If nobody kills it within `limit_s`,
    it raises, so a test waiting for the kill fails instead of hanging."""

    def __init__(self, folder: str | Path, match: str, limit_s: float = 300.0):
        self.folder, self.match, self.limit_s = str(folder), match, limit_s

    def __call__(self, task_id: str, attempt: int) -> None:
        folder = Path(self.folder)
        if self.match not in task_id or (folder / "held").exists():
            return
        atomic_write_text(folder / "held", task_id)
        atomic_write_text(folder / "pid", str(os.getpid()))
        deadline = time.monotonic() + self.limit_s
        while time.monotonic() < deadline:
            time.sleep(0.05)
        raise RuntimeError(f"HoldFirstAttempt: pid {os.getpid()} was not killed within {self.limit_s} s")


def kill_when_held(folder: str | Path, signal_number: int, limit_s: float = 600.0) -> dict:
    """Wait for HoldFirstAttempt's pid file and kill that process; -> {'pid': ...} or {'error': ...}."""
    pid_file = Path(folder) / "pid"
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if pid_file.is_file():
            pid = int(pid_file.read_text())
            os.kill(pid, signal_number)
            return {"pid": pid}
        time.sleep(0.05)
    return {"error": f"no task was held within {limit_s} s"}
