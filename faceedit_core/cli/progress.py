"""Long commands: progress bars on stderr (stdout stays for results) and Ctrl-C that stops at a step.

Imported when a command runs; nothing heavy at module level (no torch).
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import click


def loss_line(event: dict) -> str | None:
    """'loss 0.1234 (clip 0.100, l2 0.020)' for a training event with losses (None: nothing to show)."""
    if not event or "loss" not in event:
        return None
    parts = [f"{k[5:]} {v:.3f}" for k, v in event.items() if k.startswith("loss_")]
    return f"loss {event['loss']:.4f} ({', '.join(parts)})"


@contextmanager
def progress_bar(label: str = "{stage}", describe: Callable[[dict], str | None] | None = None) -> Iterator[Callable]:
    """Yields a callback for the core's progress events ({"stage", "step", "total", ...}) that draws a
    click progress bar on stderr. A bar appears with the first event of a stage (none when nothing
    reports progress: e.g. a mapper already cached), follows the event's `step` (a resumed run starts
    where it resumed) and ends when the stage changes or the block ends.

    label: a format string over the first event of the stage; describe(event): the text shown after
    the bar (on a terminal)."""
    open_bars: list = []  # [(stage, bar)]: the bar being drawn

    def close() -> None:
        if open_bars:
            open_bars.pop()[1].render_finish()

    def update(event: dict) -> None:
        stage = event.get("stage")
        if open_bars and open_bars[0][0] != stage:
            close()
        if not open_bars:
            bar = click.progressbar(
                length=max(1, int(event["total"])),
                label=label.format(**event),
                file=sys.stderr,
                show_eta=True,
                item_show_func=describe,
            )
            open_bars.append((stage, bar.__enter__()))
        bar = open_bars[0][1]
        bar.update(int(event["step"]) - bar.pos, event)

    try:
        yield update
    finally:
        close()


@contextmanager
def stop_on_interrupt(what: str) -> Iterator[Callable[[], bool]]:
    """Yields a `cancel` callable for the core: after a Ctrl-C (SIGINT) in the block it returns True,
    so the work stops at its next step boundary (paper training saves a checkpoint there) and raises
    Cancelled. A second Ctrl-C interrupts at once. Off the main thread (no signals there) it never
    asks to stop."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked.is_set
        return
    previous = signal.getsignal(signal.SIGINT)

    def ask(signum, frame) -> None:
        asked.set()
        signal.signal(signal.SIGINT, previous)
        click.echo(f"\nCtrl-C: stopping {what} after this step (Ctrl-C again to stop at once)", err=True)

    signal.signal(signal.SIGINT, ask)
    try:
        yield asked.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
