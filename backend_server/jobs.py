"""The server's job table: requests that need the worker, by (client, request id).

Active jobs (queued or running) are bounded in count and in the bytes of their requests; a
request beyond either bound is refused with `busy`. A finished job keeps only what `status`
reports (op, state, last progress): its arguments are dropped at once, and finished jobs are
forgotten after `finished_ttl_s` or when more than `max_finished` are kept, oldest first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from faceedit_wire import protocol as P

ClientId = tuple[str, bytes]  # (CURVE public key or "", ZeroMQ routing id of the client's socket)
ACTIVE = ("queued", "running")


@dataclass(eq=False)
class Job:
    client: ClientId
    req_id: str
    op: str
    args: dict | None
    size: int  # bytes of the request message (what its args hold)
    cache_key: str | None = None
    state: str = "queued"
    progress: dict = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    finished_at: float = 0.0

    @property
    def key(self) -> tuple[ClientId, str]:
        return self.client, self.req_id

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


class JobTable:
    """Jobs of every client. Used by the socket thread only (the worker holds Job objects)."""

    def __init__(
        self,
        max_active: int = 32,
        max_active_bytes: int = 256 << 20,
        max_finished: int = 1024,
        finished_ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_active, self.max_active_bytes = max_active, max_active_bytes
        self.max_finished, self.finished_ttl_s, self.clock = max_finished, finished_ttl_s, clock
        self._active: dict[tuple[ClientId, str], Job] = {}
        self._finished: OrderedDict[tuple[ClientId, str], Job] = OrderedDict()

    def __len__(self) -> int:
        return len(self._active) + len(self._finished)

    def get(self, key: tuple[ClientId, str]) -> Job | None:
        self._prune()
        return self._active.get(key) or self._finished.get(key)

    def active(self) -> list[Job]:
        return list(self._active.values())

    def admit(self, job: Job) -> None:
        """Register a new queued job; ProtocolError(BUSY) naming the limit when the table is full."""
        used = sum(j.size for j in self._active.values())
        if len(self._active) >= self.max_active:
            raise P.ProtocolError(
                P.BUSY, f"the server has {len(self._active)} jobs queued or running, the limit is {self.max_active}"
            )
        if used + job.size > self.max_active_bytes:
            raise P.ProtocolError(
                P.BUSY,
                f"jobs queued or running hold {used} bytes of requests; this one ({job.size} bytes) would pass "
                f"the limit of {self.max_active_bytes}",
            )
        self._finished.pop(job.key, None)
        self._active[job.key] = job

    def finish(self, job: Job, state: str) -> None:
        """The job's final reply is out: keep its state for `status`, drop its arguments."""
        job.state, job.args, job.finished_at = state, None, self.clock()
        if self._active.get(job.key) is job:
            del self._active[job.key]
        self._finished[job.key] = job
        self._finished.move_to_end(job.key)
        self._prune()

    def _prune(self) -> None:
        horizon = self.clock() - self.finished_ttl_s
        while self._finished:
            oldest = next(iter(self._finished.values()))
            if len(self._finished) <= self.max_finished and oldest.finished_at >= horizon:
                return
            self._finished.popitem(last=False)
