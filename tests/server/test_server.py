"""The backend over real loopback sockets: every op, retries across a restart, cancel, load."""

import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from backend_server.server import Server
from faceedit_core.errors import Cancelled
from faceedit_wire import protocol as P
from faceedit_wire.client import Client, ServerError, ServerUnavailable
from faceedit_wire.net import is_loopback
from tests.helpers.server import RunningServer, fast_editor, free_port

PARAMS = {"shape": np.zeros((1, 100), np.float32), "expression": np.zeros((1, 50), np.float32)}


@pytest.fixture(scope="module")
def server():
    s = RunningServer()
    yield s
    s.stop()


@pytest.fixture
def client(server, client_factory):
    return client_factory(server.address, timeout_s=60, retries=1)


def test_hello_ping_edit_render_train_status(client):
    hello = client.call("hello", {"head_mesh": True})
    assert hello["protocol"] == P.PROTOCOL_VERSION and hello["tier"] == "preview"
    assert "A person who is smiling" in hello["expressions"]
    head = hello["head"]
    assert head["vertices"].shape[1] == 3 and head["faces"].shape[1] == 3
    assert client.call("ping")["queued"] >= 0
    events = []
    edit = client.call("edit", {"params": PARAMS, "prompt": "raise brows"}, progress=events.append)
    assert edit["success"] == [True] and edit["vertices"].shape == (1, head["vertices"].shape[0], 3)
    assert set(edit["target"]) == {"AU1", "AU2"}
    moved = np.abs(edit["vertices"][0] - head["vertices"]).max()
    assert 0.002 < moved < 0.03
    render = client.call(
        "render", {"params": PARAMS, "mapper_ids": edit["mapper_ids"], "size": 64, "turntable": {"views": 3}}
    )
    assert len(render["images"]) == 1 and len(render["images"][0]) == 3
    assert render["images"][0][0].startswith(b"\x89PNG") and render["cameras"].shape == (3, 25)
    train = client.call("train", {"prompt": "close eyes"})
    assert train["mapper_id"].startswith("pv-")


def test_errors_name_the_field_and_limit(client):
    cases = [
        (
            {
                "params": {"shape": np.full((1, 100), np.nan, np.float32), "expression": PARAMS["expression"]},
                "prompt": "smile",
            },
            P.INVALID_FIELD,
            "'shape' contains NaN",
        ),
        (
            {"params": {"shape": np.zeros((1, 100), np.int32), "expression": PARAMS["expression"]}, "prompt": "smile"},
            P.INVALID_FIELD,
            "'shape' must be float32",
        ),
        (
            {
                "params": {"shape": np.zeros((20, 100), np.float32), "expression": np.zeros((20, 50), np.float32)},
                "prompt": "smile",
            },
            P.TOO_LARGE,
            "limit is 16",
        ),
        ({"params": PARAMS, "prompt": "the quarterly tax report"}, P.PROMPT_NOT_UNDERSTOOD, "closest"),
        ({"params": PARAMS, "prompt": "smile", "intensity": 9}, P.TOO_LARGE, "'intensity' = 9 is outside"),
    ]
    for args, code, text in cases:
        with pytest.raises(ServerError) as info:
            client.call("edit", args)
        assert info.value.code == code and text in str(info.value), (code, str(info.value))
    with pytest.raises(ServerError, match="'views' = 100 is outside 1..64"):
        client.call("render", {"params": PARAMS, "turntable": {"views": 100}})
    with pytest.raises(ServerError, match="'size' = 4096 is outside"):
        client.call("render", {"params": PARAMS, "size": 4096})


def test_protocol_envelope_errors(server):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(server.address)
    try:
        for payload, code in [
            (b"\xc1garbage", P.BAD_REQUEST),
            (msgpack.packb([1, 2]), P.BAD_REQUEST),
            (P.encode({"v": 99, "id": "x", "op": "ping"}), P.VERSION),
            (P.encode({"v": 1, "id": "y", "op": "explode"}), P.UNKNOWN_OP),
        ]:
            sock.send(payload)
            assert sock.poll(5000), "no error reply"
            assert P.decode(sock.recv())["error"]["code"] == code
    finally:
        sock.close(0)


def test_repeated_id_is_answered_from_the_cache(server, client):
    calls = []
    editor = fast_editor()
    original = editor.edit
    editor.edit = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        rid = client.submit("edit", {"params": PARAMS, "prompt": "raise brows", "intensity": 0.7})
        first = _wait_reply(client, rid)
        client.submit("edit", {"params": PARAMS, "prompt": "raise brows", "intensity": 0.7}, req_id=rid)
        second = _wait_reply(client, rid)
    finally:
        editor.edit = original
    assert len(calls) == 1
    np.testing.assert_array_equal(first["result"]["vertices"], second["result"]["vertices"])


def _wait_reply(client, rid, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for msg in client.poll(100):
            if msg.get("id") == rid and "event" not in msg:
                return msg
    raise AssertionError("no reply")


def test_client_survives_a_server_restart_mid_request():
    slow_started = threading.Event()

    class SlowEditor:
        tier = "preview"

        def __getattr__(self, name):
            return getattr(fast_editor(), name)

        def edit(self, *args, **kwargs):
            slow_started.set()
            time.sleep(1.0)
            return fast_editor().edit(*args, **kwargs)

    first = RunningServer(factory=SlowEditor)
    port = first.port
    client = Client(first.address, timeout_s=2.0, retries=30)
    result = {}
    t = threading.Thread(target=lambda: result.update(client.call("edit", {"params": PARAMS, "prompt": "raise brows"})))
    t.start()
    assert slow_started.wait(30)
    first.stop()  # the server dies with the request in flight
    second = RunningServer(port)
    t.join(timeout=90)
    second.stop()
    client.close()
    assert result.get("success") == [True]


def test_unreachable_server_is_a_clear_error():
    client = Client(f"tcp://127.0.0.1:{free_port()}", timeout_s=0.3, retries=1)
    with pytest.raises(ServerUnavailable, match="(?i)is `faceedit-server` running"):
        client.call("ping")
    client.close()


def test_cancel_stops_a_running_job_between_its_steps(stub_server, handler):
    def train(editor, args, ctx):  # a long job that checks its cancel flag between steps
        for step in range(100_000):
            ctx["progress"]({"stage": "train", "step": step, "total": 100_000})
            if ctx["cancelled"]():
                raise Cancelled(f"training cancelled at step {step}")
            time.sleep(0.01)

    handler("train", train)
    client = Client(stub_server.bound_address, timeout_s=30, retries=0)
    try:
        rid = client.submit("train", {"prompt": "very angry"})
        deadline = time.monotonic() + 30
        while client.call("status", {"job": rid})["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.call("cancel", {"job": rid})["job"] == rid
        reply = _wait_reply(client, rid)
        assert reply["ok"] is False and reply["error"]["code"] == P.CANCELLED
        assert client.call("status", {"job": rid})["state"] == "cancelled"
    finally:
        client.close()


def test_eight_clients_fifty_requests_nothing_lost_or_crossed(server):
    errors = []

    def run(k):
        c = Client(server.address, timeout_s=30, retries=1)
        try:
            for i in range(50):
                rid = f"load-{k}-{i}"
                c.submit("ping", {}, req_id=rid)
                msg = _wait_reply(c, rid, timeout=30)
                if msg["id"] != rid or not msg["ok"]:
                    errors.append(msg)
        except Exception as exc:  # collected, asserted below
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors


def test_non_loopback_bind_without_curve_is_refused():
    assert (
        is_loopback("tcp://127.0.0.1:5555")
        and is_loopback("tcp://[::1]:5555")
        and not is_loopback("tcp://0.0.0.0:5555")
    )
    with pytest.raises(ValueError, match="without CURVE keys"):
        Server(fast_editor, "tcp://0.0.0.0:5555")
