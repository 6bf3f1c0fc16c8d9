"""One request at a time to the FaceEdit server, without blocking Blender.

`submit()` sends and returns at once; `poll_step()` (called from a timer in Blender, directly by
tests and scripts, since timers never fire in the bpy module) routes progress events and the
reply, and calls the job's `on_done(result)` on the main thread. A silent server is retried
(same request id, answered from the server's cache) and then reported as unavailable. Nothing
here touches Blender data: `on_done` does, and only after the whole reply has arrived.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from .wire import client as wire


@dataclass
class Settings:
    """address 'tcp://host:port'; timeout_s: silence limit per try; retries after the first try."""

    address: str = "tcp://127.0.0.1:5555"
    timeout_s: float = 10.0
    retries: int = 2
    curve: "wire.CurveKeys | None" = None


@dataclass
class Job:
    req_id: str
    op: str
    label: str
    on_done: Callable[[dict], None]
    settings: Settings
    deadline: float
    tries: int = 1
    progress: dict = field(default_factory=dict)


@dataclass
class Status:
    """What the panel shows: the running job's label and progress, the last message or error."""

    running: str = ""
    factor: float = 0.0
    stage: str = ""
    message: str = ""
    error: str = ""


class Jobs:
    def __init__(self, settings: Callable[[], Settings]):
        self._settings = settings
        self._client: wire.Client | None = None
        self._client_key = None
        self.job: Job | None = None
        self.status = Status()

    # ------------------------------------------------------------------ client
    def client(self) -> "wire.Client":
        s = self._settings()
        key = (s.address, s.curve)
        if self._client is None or self._client_key != key:
            self.close()
            self._client, self._client_key = wire.Client(s.address, s.timeout_s, s.retries, s.curve), key
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def blocking_call(self, op: str, args: dict | None = None, progress: Callable[[dict], None] | None = None) -> dict:
        """For background mode and scripts: wait for the reply (retries included); raises wire.ServerError."""
        if self.busy:
            raise wire.ServerError("busy", f"FaceEdit is busy with '{self.job.label}'")
        return self.client().call(op, args, progress)

    # ------------------------------------------------------------------ non-blocking
    @property
    def busy(self) -> bool:
        return self.job is not None

    def submit(self, op: str, args: dict, label: str, on_done: Callable[[dict], None]) -> str:
        """Send a request; raises wire.ServerError when a job is already running."""
        if self.busy:
            raise wire.ServerError("busy", f"FaceEdit is busy with '{self.job.label}': wait or cancel it")
        req_id = uuid.uuid4().hex
        settings = self._settings()
        self.client().submit(op, args, req_id=req_id)
        self.job = Job(req_id, op, label, on_done, settings, time.monotonic() + settings.timeout_s)
        self.status = Status(running=label, message=f"{label}: sent")
        return req_id

    def cancel(self) -> None:
        """Ask the server to cancel the running job and forget it here."""
        if self.job is None:
            return
        try:
            self.client().submit("cancel", {"job": self.job.req_id})
        except wire.ServerError:
            pass
        label, self.job = self.job.label, None
        self.status = Status(message=f"{label}: cancelled")

    def poll_step(self) -> bool:
        """Handle what has arrived; True while a job is still waiting for its reply."""
        job = self.job
        if job is None:
            return False
        now = time.monotonic()
        for msg in self.client().poll(0):
            if msg.get("id") != job.req_id:
                continue  # a cancel's reply or a stale retry
            job.deadline = now + job.settings.timeout_s
            if "event" in msg:
                self._progress(job, msg.get("data") or {})
                continue
            self.job = None
            if msg.get("ok"):
                self._done(job, msg.get("result") or {})
            else:
                err = msg.get("error") or {}
                self._fail(job, f"{job.label} failed [{err.get('code', '?')}]: {err.get('message', 'unknown error')}")
            return False
        if now > job.deadline:
            s = job.settings
            if job.tries > s.retries:
                self.job = None
                self._fail(
                    job,
                    f"{job.label}: no answer from the FaceEdit server at {s.address} after {job.tries} "
                    f"tries of {s.timeout_s:g} s. Is `faceedit-server` running? (address in the "
                    f"add-on preferences)",
                )
                return False
            job.tries += 1
            job.deadline = now + s.timeout_s
            self.client().resend(job.req_id)
            self.status.message = f"{job.label}: no answer yet, retry {job.tries - 1} of {s.retries}"
        return True

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
            self._fail(job, f"{job.label}: {exc}")
            return
        except Exception as exc:  # a bug must not kill the timer; report it
            self._fail(job, f"{job.label}: add-on error {exc.__class__.__name__}: {exc}")
            return
        if self.job is None:  # on_done may have chained the next request
            self.status = Status(message=message or f"{job.label}: done")

    def _fail(self, job: Job, text: str) -> None:
        self.status = Status(error=text)
        print(f"FaceEdit: {text}")
