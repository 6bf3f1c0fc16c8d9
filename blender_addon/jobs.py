"""One request at a time to the FaceEdit server, without blocking Blender.

`submit()` sends and returns at once; `poll_step()` (called from a timer in Blender, directly by
tests and scripts, since timers never fire in the bpy module) routes progress events and the
reply, and calls the job's `on_done(result)` on the main thread. Liveness comes from the wire
client: a job is alive while the server talks (progress, or its answers to the client's status
probes); only a server silent for the timeout (after the retries) fails the job, and a job given
up on is cancelled on the server. Nothing here touches Blender data: `on_done` does, and only
after the whole reply has arrived.

Every request ends in exactly one report (`report(level, text)`: 'INFO', 'WARNING' or 'ERROR'),
which the add-on sends to Blender's Info area and status bar; `log` keeps them for the panel and
for tests.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from .wire import client as wire


@dataclass
class Settings:
    """address 'tcp://host:port'; timeout_s: how long the server may stay silent; retries: resends after that."""

    address: str = "tcp://127.0.0.1:5555"
    timeout_s: float = 10.0
    retries: int = 2
    curve: "wire.CurveKeys | None" = None


@dataclass
class Job:
    req_id: str
    op: str
    label: str
    on_done: Callable[[dict], str | None]
    settings: Settings
    pending: "wire.Pending"
    touches_scene: bool = True  # a file load cancels it (its targets belong to the old file)
    on_error: Callable[[dict], str | None] | None = None  # an error it can live with -> a warning, the queue goes on
    started: float = field(default_factory=time.monotonic)
    progress: dict = field(default_factory=dict)


@dataclass
class Status:
    """What the panel and the status bar show: the running job's label and progress, the last outcome."""

    running: str = ""
    factor: float = 0.0
    stage: str = ""
    message: str = ""
    error: str = ""
    ended: float = 0.0  # monotonic time of the last outcome


class Jobs:
    def __init__(self, settings: Callable[[], Settings], report: Callable[[str, str], None] | None = None):
        self._settings = settings
        self._client: wire.Client | None = None
        self._client_key = None
        self.job: Job | None = None
        self.status = Status()
        self.report = report or (lambda level, text: None)
        self.log: list[tuple[str, str]] = []  # every outcome reported, oldest first
        self.queue: list[Callable[[], None]] = []  # requests to send after this one succeeds (one per head)
        self.succeeded = 0  # requests that ended well (the timer makes each one undo step)

    # ------------------------------------------------------------------ client
    def client(self) -> "wire.Client":
        if self._client is not None and self.job is not None:
            return self._client  # a running job keeps its client (the server knows the job by it)
        s = self._settings()
        key = (s.address, s.curve, s.timeout_s, s.retries)
        if self._client is None or self._client_key != key:
            self.close()
            self._client, self._client_key = wire.Client(s.address, s.timeout_s, s.retries, s.curve), key
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def blocking_call(self, op: str, args: dict | None = None, progress: Callable[[dict], None] | None = None) -> dict:
        """For background mode and scripts: wait for the reply (liveness included); raises wire.ServerError."""
        if self.busy:
            raise wire.ServerError("busy", f"FaceEdit is busy with '{self.job.label}'")
        return self.client().call(op, args, progress)

    # ------------------------------------------------------------------ non-blocking
    @property
    def busy(self) -> bool:
        return self.job is not None

    def submit(
        self,
        op: str,
        args: dict,
        label: str,
        on_done: Callable[[dict], str | None],
        touches_scene: bool = True,
        on_error: Callable[[dict], str | None] | None = None,
    ) -> str:
        """Send a request; raises wire.ServerError when a job is already running.

        on_error(error map) may turn an error reply into a warning (its message) after which the
        queue goes on; returning None keeps it an error."""
        if self.busy:
            raise wire.ServerError("busy", f"FaceEdit is busy with '{self.job.label}': wait or cancel it (Esc)")
        settings = self._settings()
        pending = self.client().start(op, args, req_id=uuid.uuid4().hex)
        self.job = Job(pending.req_id, op, label, on_done, settings, pending, touches_scene, on_error)
        self.status = Status(running=label, message=f"{label}: sent")
        return pending.req_id

    def cancel(self, reason: str = "cancelled") -> bool:
        """Cancel the running job on the server and forget it here -> whether one was running."""
        job = self.job
        if job is None:
            return False
        self.job = None
        if self._client is not None:
            self._client.abandon(job.pending)
        self._end("WARNING", f"{job.label}: {reason}", error="")
        return True

    def poll_step(self) -> bool:
        """Handle what has arrived; True while a job is still waiting for its reply."""
        job = self.job
        if job is None:
            return False
        try:
            events, final = self.client().step(job.pending)
        except wire.ServerUnavailable as exc:
            self.job = None
            self._fail(job, f"{job.label}: {exc} (server address in the add-on preferences)")
            return False
        for msg in events:
            self._progress(job, msg.get("data") or {})
        if final is None:
            self._waiting(job)
            return True
        self.job = None
        if final.get("ok"):
            self._done(job, final.get("result") or {})
        else:
            err = final.get("error") or {}
            text = f"{job.label} failed [{err.get('code', '?')}]: {err.get('message', 'unknown error')}"
            handled = job.on_error(err) if job.on_error is not None and err.get("code") != "cancelled" else None
            if err.get("code") == "cancelled":
                self._end("WARNING", f"{job.label}: cancelled by the server", error="")
            elif handled:
                self._end("WARNING", handled, error="", go_on=True)
            else:
                self._fail(job, text)
        return False

    def _waiting(self, job: Job) -> None:
        """The panel's line while no progress arrives: the server's word on the job."""
        if job.progress:
            return
        state = job.pending.state
        waited = time.monotonic() - job.started
        if state == "queued":
            self.status.message = f"{job.label}: queued on the server ({waited:.0f} s)"
        elif state == "running":
            what = "the server is loading its models" if job.op == "hello" else "the server is working"
            self.status.message = f"{job.label}: {what} ({waited:.0f} s)"
        elif job.pending.tries > 1:
            self.status.message = f"{job.label}: no answer yet, retry {job.pending.tries - 1} of {job.settings.retries}"

    def _progress(self, job: Job, data: dict) -> None:
        job.progress = data
        step, total = data.get("step", 0), data.get("total", 0)
        self.status.factor = step / total if total else 0.0
        self.status.stage = str(data.get("stage", ""))
        self.status.message = f"{job.label}: {self.status.stage} {step}/{total}"

    def _done(self, job: Job, result: dict) -> None:
        try:
            message = job.on_done(result)
        except wire.ServerError as exc:  # the reply does not fit the scene: nothing was written
            self._drop_chained()
            self._fail(job, f"{job.label}: {exc}")
            return
        except Exception as exc:  # a bug must not kill the timer; report it
            self._drop_chained()
            self._fail(job, f"{job.label}: add-on error {exc.__class__.__name__}: {exc}")
            return
        if self.job is None:  # on_done may have chained the next request, which reports for both
            self._end("INFO", message or f"{job.label}: done", error="")

    def _drop_chained(self) -> None:
        """on_done failed after chaining a request: cancel that one too."""
        chained, self.job = self.job, None
        if chained is not None and self._client is not None:
            self._client.abandon(chained.pending)

    def _fail(self, job: Job, text: str) -> None:
        self._end("ERROR", text, error=text)

    def _end(self, level: str, text: str, error: str, go_on: bool = False) -> None:
        if level == "INFO":
            self.succeeded += 1
        elif self.queue and not go_on:
            text += f" ({len(self.queue)} more request(s) not sent)"
            self.queue.clear()
        self.status = Status(message="" if error else text, error=error, ended=time.monotonic())
        self.log.append((level, text))
        print(f"FaceEdit: {text}")
        self.report(level, text)
        if (level == "INFO" or go_on) and self.queue and self.job is None:
            nxt = self.queue.pop(0)
            try:
                nxt()
            except wire.ServerError as exc:
                self._end("ERROR", str(exc), error=str(exc))

    def local_error(self, text: str) -> None:
        """An error an operator reports itself (refused before anything was sent): panel and log only."""
        self.queue.clear()
        self.status = Status(error=text, ended=time.monotonic())
        self.log.append(("ERROR", text))
        print(f"FaceEdit: {text}")
