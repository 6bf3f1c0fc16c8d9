"""The FaceEdit backend: a ZeroMQ ROUTER socket, a job worker, reply and edit caches.

Only the socket thread touches the socket. Cheap operations (ping, status, cancel, and replies
already cached) are answered there at once; everything that needs the models goes to a job
worker thread, whose progress events and replies come back through a queue the socket loop
drains. A repeated request id is answered from the reply cache (clients retry after a server
restart or a timeout) or, while its job still runs, re-attached to the new connection.

Clients are told apart by their identity: the routing id of their socket (our client picks a
random one and keeps it across reconnects; the socket hands a reconnecting id over to the new
connection) and, with CURVE, their public key. Jobs, cached replies and cached edits are keyed by
identity and request id, so no client sees another's replies or jobs.

Nothing a client sends ends the server: every path (socket thread, job worker, progress events)
turns an exception into an error reply (`replies.error_reply`, server paths scrubbed), and the
job table and both caches are bounded in count and bytes. `stop()` (SIGTERM, SIGINT) cancels
every job, answers every request in flight, gives the worker `shutdown_grace_s` to finish its
step (files it is writing are completed, never left half-written) and closes.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import zmq

from backend_server import replies
from backend_server.caches import BoundedLRU
from backend_server.curve import CurveConfig
from backend_server.handlers import HANDLERS
from backend_server.jobs import ClientId, Job, JobTable
from faceedit_wire import protocol as P
from faceedit_wire.net import is_ipv6, is_loopback

log = logging.getLogger("faceedit.server")
QUICK_OPS = ("ping", "status", "cancel")
REPLY_CACHE = (1024, 256 << 20)  # entries, bytes
EDIT_CACHE = (256, 128 << 20)
SHUTDOWN_GRACE_S = 30.0
CLOSE_LINGER_MS = 1000  # how long the last replies may take to leave at shutdown


@dataclass
class Mail:
    """A message from the worker for a job's client: a progress event, or the final reply
    (with the job's final state and, for a successful edit, its result for the edit cache)."""

    job: Job
    encoded: bytes
    state: str | None = None
    result: dict | None = None


def edit_cache_key(op: str, args: dict) -> str | None:
    """Identical edits (same params, prompt, mapper ids, intensity) share one result."""
    if op != "edit":
        return None
    return hashlib.sha256(P.encode(args)).hexdigest()


def final_state(message: dict) -> str:
    if message.get("ok"):
        return "done"
    return "cancelled" if message["error"]["code"] == P.CANCELLED else "failed"


class Server:
    def __init__(
        self,
        editor_factory: Callable[[], object],
        address: str = "tcp://127.0.0.1:5555",
        curve: CurveConfig | None = None,
        models: dict | None = None,
        context: zmq.Context | None = None,
        jobs: JobTable | None = None,
        shutdown_grace_s: float = SHUTDOWN_GRACE_S,
    ):
        if not is_loopback(address) and curve is None:
            raise ValueError(
                f"refusing to bind {address} without CURVE keys: only loopback addresses may be "
                f"used unencrypted (generate keys with `faceedit-server keys`)"
            )
        if curve is not None:
            curve.check()
        self.editor_factory, self.address, self.curve, self.models = editor_factory, address, curve, models or {}
        self.ctx = context or zmq.Context.instance()
        self.replies = BoundedLRU(*REPLY_CACHE)  # (client, request id) -> encoded final reply
        self.edit_results = BoundedLRU(*EDIT_CACHE)  # (client, edit args hash) -> result map
        self.jobs = jobs if jobs is not None else JobTable()
        self.shutdown_grace_s = shutdown_grace_s
        self.work: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()
        self.stop_event = threading.Event()
        self._editor = None
        self._wake_lock = threading.Lock()
        self._auth = None
        self._sock: zmq.Socket | None = None
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
            for job in iter(self.work.get, None):  # None: the server is shutting down
                try:
                    self._run(job)
                except Exception as exc:  # a bug in the reply path itself: still an answer
                    self._post(Mail(job, P.encode(replies.error_reply(job.req_id, exc)), state="failed"))
        finally:
            with self._wake_lock:
                wake.close(0)

    def _post(self, mail: Mail) -> None:
        """Queue mail for the socket thread and wake it (from the worker, or any thread an editor
        reports progress from: the wake socket is used under a lock)."""
        self.outbox.put(mail)
        with self._wake_lock:
            try:
                self._wake.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:  # the socket loop has stopped: nobody to wake, the job just ends
                pass

    def _run(self, job: Job) -> None:
        result = None
        if job.cancel.is_set():
            why = "the server is shutting down" if self.stop_event.is_set() else "cancelled by the client"
            message = replies.error(job.req_id, P.CANCELLED, f"{job.op} cancelled before it started: {why}")
        else:
            job.state = "running"
            ctx = {"progress": self._progress_sender(job), "cancelled": job.cancel.is_set, "models": self.models}
            try:
                result = HANDLERS[job.op](self.editor(), job.args, ctx)
                message = P.reply(job.req_id, result)
            except Exception as exc:  # a bad request never takes the server down
                message = replies.error_reply(job.req_id, exc)
        try:
            encoded = P.encode(message)
        except Exception as exc:  # a result that cannot be sent
            result, message = None, replies.error_reply(job.req_id, exc)
            encoded = P.encode(message)
        self._post(Mail(job, encoded, state=final_state(message), result=result if job.cache_key else None))

    def _progress_sender(self, job: Job) -> Callable[[dict], None]:
        def progress(data: dict) -> None:
            try:
                event = dict(data)
                encoded = P.encode(P.progress(job.req_id, event))
            except Exception:  # an event that cannot be sent is dropped; the job goes on
                log.exception("dropped a progress event of %s that cannot be encoded", job.req_id)
                return
            job.progress = event
            self._post(Mail(job, encoded))

        return progress

    # ------------------------------------------------------------------ socket side
    def open(self) -> None:
        """Create and bind the ROUTER socket (and the CURVE authenticator); ValueError naming the address."""
        if self._sock is not None:
            return
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, P.MAX_MESSAGE_BYTES)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a client reconnecting under its routing id takes it over
        sock.setsockopt(zmq.IPV6, int(is_ipv6(self.address)))
        try:
            if self.curve is not None:
                self._auth = self.curve.start(self.ctx, sock)
            sock.bind(self.address)
        except zmq.ZMQError as exc:
            sock.close(0)
            self._stop_auth()
            raise ValueError(f"cannot bind {self.address}: {exc.strerror}") from None
        self.bound_address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock

    def _identity(self, frames: list[zmq.Frame]) -> ClientId:
        user = ""
        if self.curve is not None:
            try:
                user = frames[-1].get("User-Id") or ""
            except (zmq.ZMQError, KeyError):
                pass
        return user, frames[0].bytes

    def _handle(self, sock: zmq.Socket, frames: list[zmq.Frame]) -> None:
        client = self._identity(frames)
        try:
            reply = self._dispatch(client, frames[1].bytes)
        except Exception as exc:  # never let one message end the socket thread
            reply = P.encode(replies.error_reply(None, exc))
        if reply is not None:
            self._send(sock, client, reply)

    def _dispatch(self, client: ClientId, payload: bytes) -> bytes | None:
        """One request -> the encoded reply to send now, or None when a job will answer."""
        msg = None
        try:
            msg = P.decode(payload, arrays=False)
            req_id, op, args = P.check_request(msg)
        except P.ProtocolError as exc:
            return P.encode(replies.error(P.request_id(msg) if msg else None, exc.code, str(exc)))
        cached = self.replies.get((client, req_id))
        if cached is not None:  # a retry: answer from the cache, never recompute
            return cached
        running = self.jobs.get((client, req_id))
        if running is not None and running.active:  # a retry of a running job: its reply goes to the new socket
            return None
        if op in QUICK_OPS:
            return P.encode(self._quick(client, req_id, op, args))
        key = edit_cache_key(op, args)
        result = self.edit_results.get((client, key)) if key is not None else None
        if result is not None:
            encoded = P.encode(P.reply(req_id, result))
            self.replies.put((client, req_id), encoded, len(encoded))
            return encoded
        job = Job(client, req_id, op, args, len(payload), cache_key=key)
        try:
            self.jobs.admit(job)
        except P.ProtocolError as exc:
            return P.encode(replies.error(req_id, exc.code, str(exc)))
        self.work.put(job)
        return None

    def _quick(self, client: ClientId, req_id: str, op: str, args: dict) -> dict:
        if op == "ping":
            return P.reply(req_id, {"time": time.time(), "queued": self.work.qsize()})
        target = args.get("job")
        job = self.jobs.get((client, target)) if isinstance(target, str) else None
        if job is None:
            return replies.error(req_id, P.NOT_FOUND, f"field 'job' names no job of this client: {P.shown(target)}")
        if op == "cancel":
            job.cancel.set()
        return P.reply(req_id, {"job": target, "op": job.op, "state": job.state, "progress": job.progress})

    def _send(self, sock: zmq.Socket, client: ClientId, encoded: bytes) -> None:
        try:
            sock.send_multipart([client[1], encoded])
        except zmq.ZMQError as exc:  # the client is gone: its reply stays in the cache for a retry
            log.warning("could not send a reply: %s", exc)

    def _drain(self, sock: zmq.Socket) -> None:
        while True:
            try:
                mail = self.outbox.get_nowait()
            except queue.Empty:
                return
            if mail.state is not None:
                self.jobs.finish(mail.job, mail.state)
                self.replies.put(mail.job.key, mail.encoded, len(mail.encoded))
                if mail.result is not None and mail.state == "done":
                    self.edit_results.put((mail.job.client, mail.job.cache_key), mail.result, len(mail.encoded))
            self._send(sock, mail.job.client, mail.encoded)

    def serve_forever(self, ready: threading.Event | None = None) -> None:
        self.open()
        sock = self._sock
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
                    self._wake_up(wake, sock)
                for _ in itertools.repeat(None, 64):
                    if not sock.poll(0):
                        break
                    frames = sock.recv_multipart(copy=False)
                    if len(frames) == 2:  # else not a DEALER/REQ-shaped message: ignore it
                        self._handle(sock, frames)
        finally:
            self._shutdown(sock, wake, worker)

    def _wake_up(self, wake: zmq.Socket, sock: zmq.Socket) -> None:
        while wake.poll(0):
            wake.recv()
        self._drain(sock)

    def _shutdown(self, sock: zmq.Socket, wake: zmq.Socket, worker: threading.Thread) -> None:
        """Cancel every job, let the worker answer them (shutdown_grace_s at most), answer the rest, close."""
        self.stop_event.set()
        for job in self.jobs.active():
            job.cancel.set()
        self.work.put(None)
        deadline = time.monotonic() + self.shutdown_grace_s
        while worker.is_alive() and time.monotonic() < deadline:
            if wake.poll(100):
                self._wake_up(wake, sock)
        self._drain(sock)
        for job in self.jobs.active():  # the worker did not finish them in time
            log.warning("shutting down with %s %s unfinished after %.0f s", job.op, job.req_id, self.shutdown_grace_s)
            message = replies.error(job.req_id, P.CANCELLED, f"the server shut down before {job.op} finished")
            self.jobs.finish(job, "cancelled")
            self._send(sock, job.client, P.encode(message))
        wake.close(0)
        sock.close(linger=CLOSE_LINGER_MS)
        self._sock = None
        self._stop_auth()
        log.info("FaceEdit server stopped")

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def stop(self) -> None:
        """Ask serve_forever to shut down (safe from a signal handler and from other threads)."""
        self.stop_event.set()
