"""Nothing a client sends piles up in the server: the job table is bounded in active jobs (count,
bytes) and finished ones (age, count, no arguments kept); the caches in entries and bytes."""

import threading

import numpy as np

from backend_server.caches import BoundedLRU
from backend_server.jobs import Job, JobTable
from faceedit_core.errors import InputError
from faceedit_wire import protocol as P

CLIENT = ("", b"client-a")
MEGABYTE = np.zeros(1 << 18, np.float32)


def test_forty_failing_big_edits_leave_only_a_bounded_table_without_their_arguments(
    stub_server_with, peer_factory, handler
):
    def failing(editor, args, ctx):
        raise InputError("field 'params' is wrong")

    handler("edit", failing)
    server = stub_server_with(jobs=JobTable(max_finished=5))
    peer = peer_factory(server.bound_address, identity=CLIENT[1])
    for i in range(40):
        reply = peer.ask(P.request(f"e-{i}", "edit", {"params": {"shape": MEGABYTE}, "prompt": f"smile {i}"}))
        assert reply["error"]["code"] == P.INVALID_FIELD
    assert len(server.jobs) == 5
    assert server.jobs.get((CLIENT, "e-0")) is None
    last = server.jobs.get((CLIENT, "e-39"))
    assert last.state == "failed" and last.args is None


def test_finished_jobs_are_forgotten_after_their_time():
    now = [0.0]
    table = JobTable(finished_ttl_s=60, clock=lambda: now[0])
    job = Job(CLIENT, "old", "train", {"prompt": "smile"}, 100)
    table.admit(job)
    table.finish(job, "done")
    assert table.get((CLIENT, "old")) is job and job.args is None
    now[0] = 61.0
    assert table.get((CLIENT, "old")) is None and len(table) == 0


def test_requests_beyond_the_active_job_limits_are_refused_as_busy(stub_server_with, peer_factory, handler):
    started, release = threading.Event(), threading.Event()

    def slow(editor, args, ctx):
        started.set()
        release.wait(30)
        return {"mapper_id": "x"}

    handler("train", slow)
    server = stub_server_with(jobs=JobTable(max_active=2, max_active_bytes=1 << 20))
    peer = peer_factory(server.bound_address)
    peer.send(P.encode(P.request("t-1", "train", {"prompt": "smile"})))
    assert started.wait(30)
    big = peer.ask(P.request("t-big", "train", {"prompt": "smile", "pad": MEGABYTE}))
    assert big["error"]["code"] == P.BUSY and "limit of 1048576" in big["error"]["message"]
    peer.send(P.encode(P.request("t-2", "train", {"prompt": "smile"})))
    third = peer.ask(P.request("t-3", "train", {"prompt": "smile"}))
    assert third["error"]["code"] == P.BUSY and "the limit is 2" in third["error"]["message"]
    release.set()
    assert {peer.reply()["id"], peer.reply()["id"]} == {"t-1", "t-2"}
    assert peer.ask(P.request("t-3", "train", {"prompt": "smile"}))["ok"]  # a busy reply is not cached


def test_the_reply_cache_is_bounded_in_bytes(stub_server, peer_factory, handler):
    calls = []
    handler("train", lambda editor, args, ctx: calls.append(1) or {"blob": MEGABYTE})
    server = stub_server
    server.replies = BoundedLRU(1024, 3 << 20)  # replaced before any request uses it
    peer = peer_factory(server.bound_address)
    for i in range(8):
        peer.ask(P.request(f"t-{i}", "train", {"prompt": "smile"}))
    assert server.replies.nbytes <= 3 << 20 and len(server.replies) == 2
    peer.ask(P.request("t-7", "train", {"prompt": "smile"}))  # still cached
    peer.ask(P.request("t-0", "train", {"prompt": "smile"}))  # dropped: runs again
    assert len(calls) == 9


def test_bounded_lru_keeps_recent_entries_within_both_bounds():
    cache = BoundedLRU(max_entries=3, max_bytes=100)
    for key, size in [("a", 40), ("b", 40), ("c", 10)]:
        assert cache.put(key, key.upper(), size)
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("d", "D", 40)  # 130 bytes: b, the least recent, goes
    assert "b" not in cache and cache.nbytes == 90 and len(cache) == 3
    cache.put("e", "E", 5)  # four entries: c goes
    assert "c" not in cache and len(cache) == 3
    assert not cache.put("huge", "H", 101) and "huge" not in cache and cache.nbytes == 85
