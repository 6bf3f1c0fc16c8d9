"""The FaceEdit client: a DEALER socket with request ids, timeouts, retries and a non-blocking poll.

Torch-free (the Blender add-on ships this file with protocol.py). Two ways to use it:
- `call(op, args, progress=None)`: blocking, for scripts and `blender -b` batch jobs. On a
  timeout it closes the socket, opens a new one and resends the same request id (Lazy
  Pirate); the server answers a repeated id from its cache, so nothing runs twice.
- `submit(op, args)` then `poll()` from a UI timer: returns the events and replies that have
  arrived, never blocks.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import zmq

from . import protocol as P


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
        self._connect()

    def _connect(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            from zmq import auth as zmq_auth

            public, secret = zmq_auth.load_certificate(str(self.curve.client_secret))
            server_public, _ = zmq_auth.load_certificate(str(self.curve.server_public))
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public
        sock.connect(self.address)
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

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
        self.sock.send(payload)
        return req_id

    def resend(self, req_id: str) -> None:
        """Reconnect and send a pending request again under the same id (after a timeout)."""
        self._connect()
        self.sock.send(P.encode(self.pending[req_id]))

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

    # ------------------------------------------------------------------ blocking
    def call(
        self,
        op: str,
        args: dict | None = None,
        progress: Callable[[dict], None] | None = None,
        timeout_s: float | None = None,
    ) -> dict:
        """Send a request and wait for its reply; retries on silence; raises ServerError on an error reply.

        The timeout is a silence limit: progress events from a long job keep the request alive.
        """
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        req_id = self.submit(op, args)
        tries = 0
        deadline = time.monotonic() + timeout_s
        while True:
            for msg in self.poll(timeout_ms=50):
                if msg.get("id") != req_id:
                    continue
                if "event" in msg:
                    deadline = time.monotonic() + timeout_s
                    if progress is not None:
                        progress(msg["data"])
                    continue
                if msg.get("ok"):
                    return msg["result"]
                err = msg.get("error", {})
                raise ServerError(err.get("code", "unknown"), err.get("message", "error"), msg.get("suggestions"))
            if time.monotonic() > deadline:
                tries += 1
                if tries > self.retries:
                    self.pending.pop(req_id, None)
                    raise ServerUnavailable(
                        f"no answer from the FaceEdit server at {self.address} after "
                        f"{tries} tries of {timeout_s:.0f} s: is `faceedit-server` running?"
                    )
                self.resend(req_id)
                deadline = time.monotonic() + timeout_s
