"""One message must never end the server: a wrong type in any envelope field, an exception on the
socket thread, in a handler, in a progress event or in encoding a result is an error reply."""

import numpy as np
import pytest

from backend_server.server import Server
from faceedit_wire import protocol as P

ARRAY = np.zeros(3, np.float32)
HOSTILE = {
    "an array": ARRAY,
    "an empty array": np.zeros(0, np.float32),
    "a one-element array": np.ones(1, np.int64),
    "a map": {"a": 1},
    "a list": [1, 2],
    "bytes": b"\x00\x01",
    "a bool": True,
    "a float": 1.0,
    "None": None,
}
VALID = {"v": 1, "id": "req-1", "op": "ping", "args": {}}


def test_the_fifty_byte_message_that_killed_the_server_is_an_error_reply(stub_server, peer_factory):
    peer = peer_factory(stub_server.bound_address)
    payload = P.encode({"v": np.zeros(2, np.uint8), "id": "x", "op": "ping"})
    assert len(payload) <= 56
    reply = peer.ask(payload)
    assert reply["ok"] is False and reply["error"]["code"] == P.VERSION and reply["id"] == "x"
    assert "field 'v'" in reply["error"]["message"] and "an array" in reply["error"]["message"]
    assert peer.ask({**VALID, "id": "after"})["ok"] is True


@pytest.mark.parametrize(
    "field,kind", [(f, k) for f in ("v", "id", "op", "args") for k in HOSTILE if (f, k) != ("args", "a map")]
)
def test_every_envelope_field_of_every_wrong_type_is_an_error_naming_the_field(stub_server, peer_factory, field, kind):
    peer = peer_factory(stub_server.bound_address)
    reply = peer.ask({**VALID, field: HOSTILE[kind]})
    assert reply["ok"] is False, reply
    assert f"field '{field}'" in reply["error"]["message"]
    assert peer.ask({**VALID, "id": "still-here"})["ok"] is True


def test_an_exception_on_the_socket_thread_is_an_internal_error_reply(stub_server, peer_factory, monkeypatch):
    def broken(*args):
        raise RuntimeError("socket-side bug in /srv/faceedit/secret/state.json")

    monkeypatch.setattr(stub_server, "_quick", broken)
    peer = peer_factory(stub_server.bound_address)
    reply = peer.ask(VALID)
    assert reply["error"]["code"] == P.INTERNAL and "RuntimeError" in reply["error"]["message"]
    assert "/srv/faceedit" not in reply["error"]["message"] and "state.json" in reply["error"]["message"]
    monkeypatch.undo()
    assert peer.ask({**VALID, "id": "again"})["ok"] is True


def test_an_exception_in_a_handler_is_an_internal_error_without_server_paths(stub_server, peer_factory, handler):
    def failing(editor, args, ctx):
        open("/nonexistent-faceedit-folder/models/flame2023.pkl", "rb")

    handler("train", failing)
    peer = peer_factory(stub_server.bound_address)
    reply = peer.ask(P.request("t-1", "train", {"prompt": "smile"}))
    message = reply["error"]["message"]
    assert reply["error"]["code"] == P.INTERNAL and "FileNotFoundError" in message
    assert "/nonexistent-faceedit-folder" not in message and "flame2023.pkl" in message


def test_a_progress_event_that_cannot_be_sent_is_dropped_and_the_job_answers(stub_server, peer_factory, handler):
    def chatty(editor, args, ctx):
        ctx["progress"]({"stage": "train", "step": object()})  # not msgpack-able
        ctx["progress"]({"stage": "train", "step": 2, "total": 2})
        return {"mapper_id": "pv-ok"}

    handler("train", chatty)
    peer = peer_factory(stub_server.bound_address)
    assert peer.ask(P.request("t-2", "train", {"prompt": "smile"}))["result"] == {"mapper_id": "pv-ok"}
    status = peer.ask(P.request("s-2", "status", {"job": "t-2"}))["result"]
    assert status["state"] == "done" and status["progress"]["step"] == 2


def test_a_result_that_cannot_be_encoded_is_an_internal_error(stub_server, peer_factory, handler):
    handler("train", lambda editor, args, ctx: {"mapper_id": object()})
    peer = peer_factory(stub_server.bound_address)
    reply = peer.ask(P.request("t-3", "train", {"prompt": "smile"}))
    assert reply["error"]["code"] == P.INTERNAL and "TypeError" in reply["error"]["message"]


def test_an_editor_that_fails_to_load_is_an_error_reply_and_the_worker_goes_on(serve, peer_factory):
    def no_models():
        raise RuntimeError("cannot load /opt/private/next3d.pkl")

    server = serve(Server(no_models, "tcp://127.0.0.1:*"))
    peer = peer_factory(server.bound_address)
    for i in range(2):
        reply = peer.ask(P.request(f"h-{i}", "hello"))
        assert reply["error"]["code"] == P.INTERNAL and "/opt/private" not in reply["error"]["message"]


def test_array_maps_reach_handlers_only_where_arrays_are_expected(stub_server, peer_factory, handler):
    seen = {}
    handler("train", lambda editor, args, ctx: seen.update(args) or {"mapper_id": "x"})
    peer = peer_factory(stub_server.bound_address)
    peer.ask(P.request("t-4", "train", {"prompt": "smile", "extra": ARRAY}))
    assert P.is_array_map(seen["extra"])  # still the map as sent: nothing decoded it on the way
