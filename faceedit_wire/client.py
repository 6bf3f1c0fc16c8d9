"""The FaceEdit client: a DEALER socket with request ids, liveness probes, retries and a non-blocking poll.

Torch-free (the Blender add-on ships this file with protocol.py). Two ways to use it:
- `call(op, args, progress=None)`: blocking, for scripts and `blender -b` batch jobs.
- `start(op, args)` -> a `Pending`, then `step(pending)` from a UI timer: returns the progress
  events and the final reply that have arrived, never blocks.

Liveness, not fixed timeouts: a request is alive while the server talks. Progress events count;
while the job is quiet the client asks the server about it (`status`, which the server's socket
thread answers at once, even while its worker loads models or trains) every
`heartbeat_interval(timeout_s)`, and each answer counts too. Only when the server itself has been
silent for `timeout_s` does the client reconnect and resend the same request id (Lazy Pirate; the
server answers a repeated id from its cache or re-attaches it to the running job, so nothing runs
twice), and after `retries` such silent rounds it gives up: it sends `cancel` for the job
(delivered if the server comes back) and raises `ServerUnavailable`. A server that answers `status`
with "no such job" (it was restarted) gets the request again at once.

Sends never block (a DEALER socket with no live connection would wait forever): a message that
cannot be queued counts as unanswered, so the silence rules above end the request within its
timeout. With CURVE keys, a server that refuses this client's key during the handshake is
reported at once (`ServerUnavailable` naming the key file), not waited for.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from . import protocol as P
from .net import is_ipv6


class ServerError(Exception):
    """The server answered with an error: `code` and a human message."""

    def __init__(self, code: str, message: str, suggestions: list | None = None):
        super().__init__(message)
        self.code, self.suggestions = code, list(suggestions or [])


class ServerUnavailable(ServerError):
    def __init__(self, message: str):
        super().__init__("unavailable", message)


@dataclass
class CurveKeys:
    """client_secret: this client's key pair file; server_public: the server's public key file."""

    client_secret: Path
    server_public: Path


FINAL_STATES = ("done", "failed", "cancelled")


@dataclass
class Pending:
    """One request in flight and what the client knows of its liveness (monotonic seconds)."""

    req_id: str
    op: str
    timeout_s: float
    retries: int
    heard: float  # the last time the server said anything
    probed: float = 0.0  # the last liveness probe sent
    tries: int = 1  # sends of the request in the current silence (1 + resends)
    state: str = "sent"  # the server's word on the job: queued, running, done, ... or "sent"
    probes: set = field(default_factory=set)  # ids of status probes not yet answered

    def silence(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.heard


def heartbeat_interval(timeout_s: float) -> float:
    """How often a quiet request is probed: several probes fit in one timeout."""
    return min(1.0, max(0.02, timeout_s / 4))


class Client:
    def __init__(
        self,
        address: str = "tcp://127.0.0.1:5555",
        timeout_s: float = 10.0,
        retries: int = 3,
        curve: CurveKeys | None = None,
        context: zmq.Context | None = None,
    ):
        self.address, self.timeout_s, self.retries, self.curve = address, timeout_s, retries, curve
        self.ctx = context or zmq.Context.instance()
        self.sock: zmq.Socket | None = None
        self.pending: dict[str, dict] = {}  # request id -> last request message (for resends)
        # who this client is to the server (its jobs and cached replies are keyed by it): random,
        # kept across reconnects so a resent request finds its job; never starts with a zero byte
        self.identity = b"fe-" + uuid.uuid4().hex.encode()
        self.monitor: zmq.Socket | None = None  # CURVE handshake failures, when curve is given
        self._connect()

    def _connect(self) -> None:
        self.close()
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, self.identity)
        sock.setsockopt(zmq.IPV6, int(is_ipv6(self.address)))
        if self.curve is not None:
            from zmq import auth as zmq_auth

            public, secret = zmq_auth.load_certificate(str(self.curve.client_secret))
            server_public, _ = zmq_auth.load_certificate(str(self.curve.server_public))
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public
            self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        sock.connect(self.address)
        self.sock = sock

    def close(self) -> None:
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(0)
            self.monitor = None
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def _send(self, payload: bytes) -> None:
        """Queue payload without blocking. With no connection to queue it on it is dropped: unanswered,
        the request is resent after the silence limit (and fails after `retries` of them)."""
        try:
            self.sock.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            pass

    def _refusal(self) -> str | None:
        """Why the server refused this client's CURVE handshake, if it did since the last look; else None."""
        while self.monitor is not None and self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                return (
                    f"the FaceEdit server at {self.address} refused this client's CURVE key "
                    f"(status {event['value']}): the public key of {self.curve.client_secret} must be in the "
                    f"server's --curve-clients folder"
                )
        return None

    # ------------------------------------------------------------------ non-blocking
    def submit(self, op: str, args: dict | None = None, req_id: str | None = None) -> str:
        req_id = req_id or uuid.uuid4().hex
        msg = P.request(req_id, op, args)
        payload = P.encode(msg)
        if len(payload) > P.MAX_MESSAGE_BYTES:
            raise ServerError(
                P.TOO_LARGE, f"request of {len(payload)} bytes exceeds the limit of {P.MAX_MESSAGE_BYTES}"
            )
        self.pending[req_id] = msg
        self._send(payload)
        return req_id

    def resend(self, req_id: str) -> None:
        """Reconnect and send a pending request again under the same id (after a timeout)."""
        self._connect()
        self._send(P.encode(self.pending[req_id]))

    def poll(self, timeout_ms: int = 0) -> list[dict]:
        """Messages that have arrived (progress events and final replies); final ones leave `pending`."""
        out = []
        while self.sock.poll(timeout_ms, zmq.POLLIN):
            try:
                msg = P.decode(self.sock.recv())
            except P.ProtocolError:
                continue
            if "event" not in msg:
                self.pending.pop(msg.get("id"), None)
            out.append(msg)
            timeout_ms = 0
        return out

    # ------------------------------------------------------------------ liveness
    def start(self, op: str, args: dict | None = None, req_id: str | None = None) -> Pending:
        """Send a request -> its Pending, for step()."""
        req_id = self.submit(op, args, req_id)
        return Pending(req_id, op, self.timeout_s, self.retries, heard=time.monotonic())

    def step(self, pending: Pending, timeout_ms: int = 0) -> tuple[list[dict], dict | None]:
        """Route what has arrived -> (progress events of `pending`, its final reply or None).

        Probes the server while the job is quiet, resends after `timeout_s` of silence and raises
        ServerUnavailable (after cancelling the job on the server) once `retries` silent rounds
        have passed. Messages for other requests are dropped.
        """
        events, final = [], None
        refused = self._refusal()
        if refused is not None:
            self.abandon(pending)
            raise ServerUnavailable(refused)
        msgs = self.poll(timeout_ms)
        now = time.monotonic()
        if msgs:  # anything from the server shows it is alive: a new silence starts
            pending.heard, pending.tries = now, 1
        for msg in msgs:
            mid = msg.get("id")
            if mid == pending.req_id:
                if "event" in msg:
                    pending.state = "running"
                    events.append(msg)
                else:
                    final = msg
            elif mid in pending.probes:
                pending.probes.discard(mid)
                self._probe_answered(pending, msg)
        if final is not None:
            return events, final
        beat = heartbeat_interval(pending.timeout_s)
        if now - pending.heard >= beat and now - pending.probed >= beat:
            probe = self.submit("status", {"job": pending.req_id})
            self.pending.pop(probe, None)  # probes are never resent
            pending.probes.add(probe)
            pending.probed = now
        if now - pending.heard > pending.timeout_s:
            if pending.tries > pending.retries:
                self.abandon(pending)
                raise ServerUnavailable(
                    f"no answer from the FaceEdit server at {self.address}: silent for "
                    f"{pending.tries * pending.timeout_s:g} s ({pending.tries} tries of {pending.timeout_s:g} s). "
                    f"Is `faceedit-server` running?{self._curve_hint()}"
                )
            pending.tries += 1
            pending.heard = now
            pending.probes.clear()
            self.resend(pending.req_id)
        return events, final

    def _curve_hint(self) -> str:
        if self.curve is None:
            return ""
        return f" With CURVE keys: is {self.curve.server_public} this server's public key?"

    def _probe_answered(self, pending: Pending, msg: dict) -> None:
        """A status reply about the job: keep waiting, or send the request again when the server lost it."""
        if msg.get("ok"):
            pending.state = str((msg.get("result") or {}).get("state", pending.state))
            if pending.state in FINAL_STATES and pending.req_id in self.pending:
                self._send(P.encode(self.pending[pending.req_id]))  # its reply missed us: from the cache
        elif (msg.get("error") or {}).get("code") == P.NOT_FOUND and pending.req_id in self.pending:
            pending.state = "lost"  # a restarted server, or the request never arrived: send it again
            self._send(P.encode(self.pending[pending.req_id]))

    def abandon(self, pending: Pending) -> None:
        """Give up on a request: forget it here and ask the server to cancel the job (best effort)."""
        self.pending.pop(pending.req_id, None)
        if self.sock is None:
            return
        try:
            cancel = self.submit("cancel", {"job": pending.req_id})
            self.pending.pop(cancel, None)
        except (zmq.ZMQError, ServerError):
            pass

    # ------------------------------------------------------------------ blocking
    def call(
        self,
        op: str,
        args: dict | None = None,
        progress: Callable[[dict], None] | None = None,
        timeout_s: float | None = None,
    ) -> dict:
        """Send a request and wait for its reply; raises ServerError on an error reply and
        ServerUnavailable when the server stays silent (see the module docstring).

        timeout_s: the silence limit (default: the client's); a long job that the server still
        reports as queued or running never times out. KeyboardInterrupt cancels the job on the server.
        """
        pending = self.start(op, args)
        if timeout_s is not None:
            pending.timeout_s = timeout_s
        try:
            while True:
                events, final = self.step(pending, timeout_ms=50)
                for msg in events:
                    if progress is not None:
                        progress(msg.get("data") or {})
                if final is None:
                    continue
                if final.get("ok"):
                    return final["result"]
                err = final.get("error", {})
                raise ServerError(err.get("code", "unknown"), err.get("message", "error"), final.get("suggestions"))
        except KeyboardInterrupt:
            self.abandon(pending)
            raise
