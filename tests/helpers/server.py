"""A real server on a free loopback port, in a thread, with a fast-training preview Editor."""

from __future__ import annotations

import threading
import time

import zmq

from backend_server.server import Server
from faceedit_core.factory import build_editor
from faceedit_core.preview.editor import PreviewEditor
from faceedit_core.preview.text_to_au import TextToAU
from faceedit_core.preview.train import PreviewTrainConfig

# the head's conditioned mapper, once per session: enough for "raise brows" on the default head (about 8 s)
FAST = PreviewTrainConfig(steps=400, batch=32)
_shared: dict = {}


def fast_editor() -> PreviewEditor:
    """One Editor per test session (the text model loads once)."""
    if "editor" not in _shared:
        _shared["editor"] = build_editor(train_config=FAST, text_to_au=TextToAU())
    return _shared["editor"]


def free_port() -> int:
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.ROUTER)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    s.close(0)
    return port


def _serve(server: Server, ready: threading.Event) -> None:
    try:
        server.serve_forever(ready)
    except zmq.ZMQError:  # the port is still held by the previous server: the caller retries
        pass


class RunningServer:
    """Binds a port the OS picks at bind time (no race with other sockets), or `port` when given
    (a restart on the same address: retried while the old socket's port is being released)."""

    def __init__(self, port: int | None = None, factory=fast_editor, attempts: int = 50):
        for _ in range(attempts):
            self.server = Server(factory, f"tcp://127.0.0.1:{port or '*'}")
            ready = threading.Event()
            self.thread = threading.Thread(target=_serve, args=(self.server, ready), daemon=True)
            self.thread.start()
            if ready.wait(10):
                break
            self.thread.join(timeout=1)  # the bind failed; try again shortly
            time.sleep(0.1)
        else:
            raise AssertionError("server did not start")
        self.address = self.server.bound_address
        self.port = int(self.address.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=10)
