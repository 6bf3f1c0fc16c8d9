"""The FaceEdit backend: a ZeroMQ ROUTER socket, a job worker, reply and edit caches.

Only the socket thread touches the socket. Cheap operations (ping, status, cancel, and replies
already cached) are answered there at once; everything that needs the models goes to a job
worker thread, whose progress events and replies come back through a queue the socket loop
drains. A repeated request id is answered from the reply cache (clients retry after a server
restart or a timeout) or, while its job still runs, re-attached to the new connection.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import queue
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zmq

from backend_server.handlers import HANDLERS
from faceedit_wire import protocol as P
from faceedit_wire.net import is_loopback

log = logging.getLogger("faceedit.server")
QUICK_OPS = ("ping", "status", "cancel")


@dataclass
class CurveConfig:
    """server_secret: the server's secret key file; clients_dir: public keys allowed to connect."""

    server_secret: Path
    clients_dir: Path


class LRU(OrderedDict):
    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)


@dataclass
class Job:
    req_id: str
    op: str
    args: dict
    peer: bytes
    state: str = "queued"
    progress: dict = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    cache_key: str | None = None


def edit_cache_key(op: str, args: dict) -> str | None:
    """Identical edits (same params, prompt, mapper ids, intensity) share one result."""
    if op != "edit":
        return None
    return hashlib.sha256(P.encode(args)).hexdigest()


class Server:
    def __init__(
        self,
        editor_factory: Callable[[], object],
        address: str = "tcp://127.0.0.1:5555",
        curve: CurveConfig | None = None,
        models: dict | None = None,
        context: zmq.Context | None = None,
    ):
        if not is_loopback(address) and curve is None:
            raise ValueError(
                f"refusing to bind {address} without CURVE keys: only loopback addresses may be "
                f"used unencrypted (generate keys with `faceedit-server keys`)"
            )
        self.editor_factory, self.address, self.curve, self.models = editor_factory, address, curve, models or {}
        self.ctx = context or zmq.Context.instance()
        self.replies = LRU(1024)  # request id -> encoded reply
        self.edit_results = LRU(256)  # edit args hash -> result map
        self.jobs: dict[str, Job] = {}
        self.work: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()
        self.stop_event = threading.Event()
        self._editor = None
        self._auth = None
        self.bound_address: str | None = None

    # ------------------------------------------------------------------ worker side
    def editor(self):
        if self._editor is None:
            self._editor = self.editor_factory()
        return self._editor

    def _worker(self) -> None:
        wake = self.ctx.socket(zmq.PUSH)  # tells the socket thread that the outbox has mail
        wake.setsockopt(zmq.LINGER, 0)
        wake.connect(self._wake_address)
        self._wake = wake
        try:
            self._work_loop()
        finally:
            wake.close(0)

    def _post(self, item: tuple) -> None:
        self.outbox.put(item)
        try:
            self._wake.send(b"", zmq.NOBLOCK)
        except zmq.ZMQError:  # the socket loop has stopped: nobody to wake, the job just ends
            pass

    def _work_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                job = self.work.get(timeout=0.1)
            except queue.Empty:
                continue
            if job.cancel.is_set():
                self._finish(job, P.error(job.req_id, P.CANCELLED, f"{job.op} cancelled before it started"))
                continue
            job.state = "running"

            def progress(data, job=job):
                job.progress = dict(data)
                self._post((job.req_id, P.encode(P.progress(job.req_id, job.progress)), False))

            ctx = {"progress": progress, "cancelled": job.cancel.is_set, "models": self.models}
            try:
                result = HANDLERS[job.op](self.editor(), job.args, ctx)
                if job.cache_key:
                    self.edit_results.put(job.cache_key, result)
                self._finish(job, P.reply(job.req_id, result))
            except P.ProtocolError as exc:
                self._finish(job, P.error(job.req_id, exc.code, str(exc)))
            except Exception as exc:  # a bad request never takes the server down
                self._finish(job, self._error_from_exception(job.req_id, exc))

    def _error_from_exception(self, req_id: str, exc: Exception) -> dict:
        from faceedit_core.errors import Cancelled, InputError, MissingModelError, PromptNotUnderstood

        if isinstance(exc, PromptNotUnderstood):
            return P.error(req_id, P.PROMPT_NOT_UNDERSTOOD, str(exc)) | {"suggestions": exc.suggestions}
        if isinstance(exc, Cancelled):
            return P.error(req_id, P.CANCELLED, str(exc))
        if isinstance(exc, MissingModelError):
            return P.error(req_id, P.NOT_FOUND, str(exc))
        if isinstance(exc, InputError):
            return P.error(req_id, P.INVALID_FIELD, str(exc))
        log.error("internal error in %s:\n%s", req_id, traceback.format_exc())
        return P.error(req_id, P.INTERNAL, f"internal error: {exc.__class__.__name__}: {exc}")

    def _finish(self, job: Job, message: dict) -> None:
        job.state = (
            "done" if message.get("ok") else ("cancelled" if message["error"]["code"] == P.CANCELLED else "failed")
        )
        self._post((job.req_id, P.encode(message), True))

    # ------------------------------------------------------------------ socket side
    def _socket(self) -> zmq.Socket:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, P.MAX_MESSAGE_BYTES)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        if self.curve is not None:
            from zmq import auth as zmq_auth
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self.ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(self.curve.clients_dir))
            public, secret = zmq_auth.load_certificate(str(self.curve.server_secret))
            if secret is None:
                raise ValueError(f"{self.curve.server_secret} holds no secret key")
            sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
        sock.bind(self.address)
        self.bound_address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return sock

    def _handle(self, sock: zmq.Socket, peer: bytes, payload: bytes) -> None:
        req_id = None
        try:
            msg = P.decode(payload)
            req_id = msg.get("id") if isinstance(msg.get("id"), str) else None
            req_id, op, args = P.check_request(msg)
        except P.ProtocolError as exc:
            sock.send_multipart([peer, P.encode(P.error(req_id, exc.code, str(exc)))])
            return
        if req_id in self.replies:  # a retry: answer from the cache, never recompute
            sock.send_multipart([peer, self.replies[req_id]])
            return
        if req_id in self.jobs and self.jobs[req_id].state in ("queued", "running"):
            self.jobs[req_id].peer = peer  # re-attach a retry to the running job
            return
        if op in QUICK_OPS:
            sock.send_multipart([peer, P.encode(self._quick(req_id, op, args))])
            return
        key = edit_cache_key(op, args)
        if key is not None and key in self.edit_results:
            encoded = P.encode(P.reply(req_id, self.edit_results[key]))
            self.replies.put(req_id, encoded)
            sock.send_multipart([peer, encoded])
            return
        job = Job(req_id, op, args, peer, cache_key=key)
        self.jobs[req_id] = job
        self.work.put(job)

    def _quick(self, req_id: str, op: str, args: dict) -> dict:
        if op == "ping":
            return P.reply(req_id, {"time": time.time(), "queued": self.work.qsize()})
        target = args.get("job")
        if not isinstance(target, str) or target not in self.jobs:
            return P.error(req_id, P.NOT_FOUND, f"field 'job' names no known job: {target!r}")
        job = self.jobs[target]
        if op == "cancel":
            job.cancel.set()
        return P.reply(req_id, {"job": target, "op": job.op, "state": job.state, "progress": job.progress})

    def _drain(self, sock: zmq.Socket) -> None:
        while True:
            try:
                req_id, encoded, final = self.outbox.get_nowait()
            except queue.Empty:
                return
            job = self.jobs.get(req_id)
            if final:
                self.replies.put(req_id, encoded)
            if job is not None:
                sock.send_multipart([job.peer, encoded])

    def serve_forever(self, ready: threading.Event | None = None) -> None:
        sock = self._socket()
        wake = self.ctx.socket(zmq.PULL)
        wake.setsockopt(zmq.LINGER, 0)
        self._wake_address = f"inproc://faceedit-wake-{id(self)}"
        wake.bind(self._wake_address)
        worker = threading.Thread(target=self._worker, name="faceedit-worker", daemon=True)
        worker.start()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        log.info("FaceEdit server listening on %s", self.bound_address)
        if ready is not None:
            ready.set()
        try:
            while not self.stop_event.is_set():
                ready_socks = dict(poller.poll(100))
                if wake in ready_socks:
                    while wake.poll(0):
                        wake.recv()
                    self._drain(sock)
                for _ in itertools.repeat(None, 64):
                    if not sock.poll(0):
                        break
                    frames = sock.recv_multipart()
                    if len(frames) != 2:
                        continue  # not a DEALER/REQ-shaped message: ignore it
                    self._handle(sock, frames[0], frames[1])
        finally:
            self.stop_event.set()
            worker.join(timeout=5)
            wake.close(0)
            sock.close(0)
            if self._auth is not None:
                self._auth.stop()

    def stop(self) -> None:
        self.stop_event.set()
