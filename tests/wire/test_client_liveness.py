"""The client's liveness: a quiet job is alive while the server answers the client's status probes;
only a silent server fails a request, and then the job is cancelled on the server; a server that
lost the job (restarted) gets the request again. Against a scripted ROUTER socket (no editor)."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from faceedit_wire import protocol as P
from faceedit_wire.client import Client, ServerUnavailable


class Stub:
    """A ROUTER socket in a thread that answers as `script(stub, peer, msg)` says; records what it got."""

    def __init__(self, script):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # as the server: a reconnecting client keeps its identity
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.script, self.got, self.stop = script, [], threading.Event()
        self.state: dict = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            if self.sock.poll(20):
                peer, payload = self.sock.recv_multipart()
                msg = P.decode(payload)
                self.got.append(msg)
                for out in self.script(self, msg) or ():
                    self.sock.send_multipart([peer, P.encode(out)])
        self.sock.close(0)

    def ops(self, op: str) -> list[dict]:
        return [m for m in self.got if m.get("op") == op]

    def close(self):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def stubs():
    made = []
    yield lambda script: made.append(Stub(script)) or made[-1]
    for s in made:
        s.close()


def test_a_job_quiet_for_four_timeouts_is_waited_for_while_the_server_answers_status(stubs):
    def script(stub, msg):
        if msg["op"] == "status":
            stub.state["probes"] = stub.state.get("probes", 0) + 1
            if stub.state["probes"] >= 12 and "job" in stub.state:  # about 4 timeouts of 0.3 s
                yield P.reply(stub.state.pop("job"), {"done": True})
            yield P.reply(msg["id"], {"job": msg["args"]["job"], "state": "running"})
        elif msg["op"] == "edit":
            stub.state["job"] = msg["id"]

    stub = stubs(script)
    client = Client(stub.address, timeout_s=0.3, retries=0)
    t0 = time.monotonic()
    assert client.call("edit", {}) == {"done": True}
    assert time.monotonic() - t0 > 3 * 0.3 and len(stub.ops("edit")) == 1  # never resent: it was alive
    client.close()


def test_a_silent_server_fails_the_request_once_and_the_job_is_cancelled_there(stubs):
    stub = stubs(lambda stub, msg: ())  # receives everything, answers nothing
    client = Client(stub.address, timeout_s=0.2, retries=1)
    with pytest.raises(ServerUnavailable, match=r"silent for 0.4 s \(2 tries of 0.2 s\)"):
        client.call("edit", {})
    req_id = stub.ops("edit")[0]["id"]
    for _ in range(100):
        if stub.ops("cancel"):
            break
        time.sleep(0.02)
    assert [m["args"] for m in stub.ops("cancel")] == [{"job": req_id}]
    assert len(stub.ops("edit")) == 2 and {m["id"] for m in stub.ops("edit")} == {req_id}  # one resend, same id
    client.close()


def test_a_server_that_lost_the_job_gets_the_request_again(stubs):
    def script(stub, msg):
        if msg["op"] == "status":
            if not stub.state.get("lost_reported"):
                stub.state["lost_reported"] = True
                yield P.error(msg["id"], P.NOT_FOUND, "no such job")  # a restarted server
            else:
                yield P.reply(msg["id"], {"job": msg["args"]["job"], "state": "running"})
        elif msg["op"] == "edit":
            stub.state["edits"] = stub.state.get("edits", 0) + 1
            if stub.state["edits"] == 2:
                yield P.reply(msg["id"], {"again": True})

    stub = stubs(script)
    client = Client(stub.address, timeout_s=0.4, retries=0)
    assert client.call("edit", {}) == {"again": True}
    assert len({m["id"] for m in stub.ops("edit")}) == 1 and len(stub.ops("edit")) == 2
    client.close()
