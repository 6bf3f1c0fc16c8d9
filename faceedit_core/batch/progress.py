"""A progress bar on stderr: done/total, failures, items per second and ETA.

On a terminal one line is redrawn in place (at most 5 times a second); elsewhere (a log, CI) a
line is printed at most every 10 seconds and at the end. Rates count only items run in this
session (skipped ones finish instantly and would make the ETA lie).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}"


class ProgressBar:
    def __init__(self, total: int, label: str = "items", stream: TextIO | None = None, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = self.failed = self.skipped = 0
        self.start = time.monotonic()
        self._last = 0.0
        self._printed = ""

    def line(self) -> str:
        finished = self.done + self.failed + self.skipped
        ran = self.done + self.failed
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = ran / elapsed
        left = self.total - finished
        eta = _clock(left / rate) if rate > 0 and left else ("0:00:00" if not left else "--:--:--")
        width = 24
        filled = int(width * finished / self.total) if self.total else width
        extras = [f"{n} {w}" for n, w in ((self.failed, "failed"), (self.skipped, "skipped")) if n]
        more = f" ({', '.join(extras)})" if extras else ""
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {finished}/{self.total} {self.label}{more}  "
            f"{rate:.2f} {self.label}/s  ETA {eta}  elapsed {_clock(elapsed)}"
        )

    def update(self, done: int = 0, failed: int = 0, skipped: int = 0, force: bool = False) -> None:
        self.done += done
        self.failed += failed
        self.skipped += skipped
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else 10.0):
            return
        self._last = now
        line = self.line()
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        elif line.split("  ")[0] != self._printed.split("  ")[0]:  # the counts changed since the last line
            self.stream.write(line + "\n")
        self._printed = line
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(force=True)
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
