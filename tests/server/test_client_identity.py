"""Replies, jobs and cached edits belong to the client that asked: keyed by its identity (socket
routing id, CURVE key) and the request id, never by the request id alone."""

import threading

import zmq

from faceedit_wire import protocol as P
from faceedit_wire.client import Client


def test_a_client_reusing_another_clients_request_id_gets_its_own_answer(stub_server, handler, peer_factory):
    handler("train", lambda editor, args, ctx: {"mapper_id": "trained-for-a"})
    a = peer_factory(stub_server.bound_address, identity=b"client-a")
    b = peer_factory(stub_server.bound_address, identity=b"client-b")
    assert a.ask(P.request("shared-id", "train", {"prompt": "smile"}))["result"] == {"mapper_id": "trained-for-a"}
    reply = b.ask(P.request("shared-id", "ping"))
    assert reply["ok"] and "time" in reply["result"], reply
    retry = a.ask(P.request("shared-id", "train", {"prompt": "smile"}))
    assert retry["result"] == {"mapper_id": "trained-for-a"}  # a's retry: still a's cached reply


def test_status_and_cancel_see_only_the_clients_own_jobs(stub_server, handler, peer_factory):
    started, release = threading.Event(), threading.Event()

    def slow(editor, args, ctx):
        started.set()
        release.wait(30)
        return {"mapper_id": "x", "cancelled": ctx["cancelled"]()}

    handler("train", slow)
    a = peer_factory(stub_server.bound_address, identity=b"client-a")
    b = peer_factory(stub_server.bound_address, identity=b"client-b")
    a.send(P.encode(P.request("job-a", "train", {"prompt": "smile"})))
    assert started.wait(30)
    for op in ("status", "cancel"):
        reply = b.ask(P.request(f"{op}-b", op, {"job": "job-a"}))
        assert reply["error"]["code"] == P.NOT_FOUND, reply
    assert a.ask(P.request("status-a", "status", {"job": "job-a"}))["result"]["state"] == "running"
    release.set()
    assert a.reply()["result"]["cancelled"] is False


def test_identical_edits_are_shared_within_a_client_only(stub_server, handler, peer_factory):
    calls = []
    handler("edit", lambda editor, args, ctx: calls.append(1) or {"n": len(calls)})
    a = peer_factory(stub_server.bound_address, identity=b"client-a")
    b = peer_factory(stub_server.bound_address, identity=b"client-b")
    args = {"prompt": "smile", "intensity": 0.5}
    assert a.ask(P.request("a-1", "edit", args))["result"] == {"n": 1}
    assert a.ask(P.request("a-2", "edit", args))["result"] == {"n": 1}  # from a's edit cache
    assert b.ask(P.request("b-1", "edit", args))["result"] == {"n": 2}  # b's own edit
    assert len(calls) == 2


def test_the_client_keeps_its_identity_across_reconnects_so_a_resent_request_finds_its_job(stub_server, handler):
    started, release, calls = threading.Event(), threading.Event(), []

    def slow(editor, args, ctx):
        calls.append(1)
        started.set()
        release.wait(30)
        return {"mapper_id": "once"}

    handler("train", slow)
    client = Client(stub_server.bound_address, timeout_s=30, retries=0)
    try:
        identity = client.sock.getsockopt(zmq.ROUTING_ID)
        rid = client.submit("train", {"prompt": "smile"})
        assert started.wait(30)
        client.resend(rid)  # a new socket, as after a silence
        assert client.sock.getsockopt(zmq.ROUTING_ID) == identity
        release.set()
        replies = [m for m in client.poll(30_000) if m.get("id") == rid and "event" not in m]
        assert replies and replies[0]["result"] == {"mapper_id": "once"} and len(calls) == 1
    finally:
        client.close()
