"""Servers for the server tests: real sockets on loopback, in a thread, with any Server options."""

from __future__ import annotations

import threading
from contextlib import ExitStack, contextmanager

import pytest
import zmq

from backend_server import handlers
from backend_server.server import Server
from faceedit_wire import protocol as P
from faceedit_wire.client import Client


class NoEditor:
    """An editor for servers whose handlers a test replaces (see `handler`): it is never called."""

    tier = "preview"

    def known_expressions(self) -> list[str]:
        return ["smile"]


@contextmanager
def serving(server: Server):
    """Run server.serve_forever in a thread for the block; stop it and wait for it afterwards."""
    ready = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(ready,), daemon=True)
    thread.start()
    assert ready.wait(10), "the server did not start"
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture
def serve():
    """serve(server) -> server, running until the end of the test."""
    with ExitStack() as stack:
        yield lambda server: stack.enter_context(serving(server))


@pytest.fixture
def stub_server_with(serve):
    """stub_server_with(**Server options) -> a running server on a free loopback port whose editor is NoEditor."""
    return lambda **options: serve(Server(NoEditor, "tcp://127.0.0.1:*", **options))


@pytest.fixture
def stub_server(stub_server_with):
    return stub_server_with()


@pytest.fixture(scope="module")
def preview_server():
    """A server of the preview tier (the test session's fast-training editor), for a whole module."""
    from tests.helpers.server import fast_editor

    with serving(Server(fast_editor, "tcp://127.0.0.1:*")) as server:
        yield server


@pytest.fixture
def handler(monkeypatch):
    """handler(op, fn): the server runs fn(editor, args, ctx) for op for the rest of the test."""
    return lambda op, fn: monkeypatch.setitem(handlers.HANDLERS, op, fn)


class RawPeer:
    """A DEALER socket that sends any bytes and reads the next final reply (progress events skipped)."""

    def __init__(self, address: str, identity: bytes | None = None):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.sock.setsockopt(zmq.ROUTING_ID, identity)
        self.sock.connect(address)

    def send(self, payload: bytes) -> None:
        self.sock.send(payload)

    def reply(self, timeout_s: float = 30) -> dict:
        while self.sock.poll(int(timeout_s * 1000)):
            msg = P.decode(self.sock.recv())
            if "event" not in msg:
                return msg
        raise AssertionError(f"no reply within {timeout_s} s")

    def ask(self, message: dict | bytes, timeout_s: float = 30) -> dict:
        self.send(message if isinstance(message, bytes) else P.encode(message))
        return self.reply(timeout_s)

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def client_factory():
    """client_factory(address, **Client options) -> a faceedit_wire Client, closed after the test."""
    clients = []

    def make(address: str, **options) -> Client:
        clients.append(Client(address, **options))
        return clients[-1]

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def peer_factory():
    """peer_factory(address, identity=None) -> RawPeer, closed after the test."""
    peers = []

    def make(address: str, identity: bytes | None = None) -> RawPeer:
        peers.append(RawPeer(address, identity))
        return peers[-1]

    yield make
    for p in peers:
        p.close()
