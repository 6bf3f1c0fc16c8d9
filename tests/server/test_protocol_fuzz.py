"""A bounded hypothesis fuzz of a real in-process server (the preview tier): arrays, maps, lists and
wrong types in every envelope field and every argument. Each message gets one well-formed reply
and the server keeps answering valid requests, on its socket thread (ping) and its worker (hello)."""

import uuid

import msgpack
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from faceedit_wire import protocol as P

CODES = {
    P.BAD_REQUEST,
    P.VERSION,
    P.UNKNOWN_OP,
    P.INVALID_FIELD,
    P.TOO_LARGE,
    P.PROMPT_NOT_UNDERSTOOD,
    P.NOT_FOUND,
    P.CANCELLED,
    P.INTERNAL,
    P.BUSY,
}
VALID_PARAMS = {"shape": np.zeros((1, 100), np.float32), "expression": np.zeros((1, 50), np.float32)}
ARG_NAMES = [
    "params",
    "prompt",
    "mapper_ids",
    "intensity",
    "size",
    "turntable",
    "cameras",
    "job",
    "head_mesh",
    "identity",
    "expression_basis",
]

dtypes = st.sampled_from(list(P.DTYPES) + ["float16", "object", "<f4", ""])
array_maps = st.one_of(
    st.builds(  # array maps that lie about themselves
        lambda dtype, shape, n: {"__nd__": True, "dtype": dtype, "shape": shape, "data": bytes(n)},
        dtypes,
        st.one_of(st.lists(st.integers(-2, 2**64 - 1), max_size=7), st.text(max_size=3), st.none()),
        st.integers(0, 48),
    ),
    st.builds(  # honest arrays of any dtype and shape
        lambda dtype, shape: P.pack_array(np.zeros(shape, dtype)),
        st.sampled_from(P.DTYPES),
        st.lists(st.integers(0, 3), max_size=4),
    ),
    st.just(P.pack_array(np.full((1, 100), np.nan, np.float32))),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=12),
)
hostile = st.recursive(
    st.one_of(scalars, array_maps),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
near_valid = st.sampled_from(
    [
        VALID_PARAMS,
        "raise brows",
        "the quarterly tax report",
        "",
        ["pv-0000000000000000"],
        ["../../etc/passwd"],
        0.5,
        32,
        {"views": 2},
        True,
        [0, 1],
    ]
)
args = st.dictionaries(st.sampled_from(ARG_NAMES), st.one_of(hostile, near_valid), max_size=5)


def small_renders(msg: dict) -> dict:
    """A render the fuzz makes valid must stay small: its size and views come from the fuzz's values."""
    if msg.get("op") == "render" and isinstance(msg.get("args"), dict):
        msg["args"].setdefault("size", 32)
        msg["args"].setdefault("turntable", {"views": 2})
    return msg


requests = st.builds(  # a valid envelope: the arguments are what is fuzzed
    lambda rid, op, a: small_renders({"v": P.PROTOCOL_VERSION, "id": rid, "op": op, "args": a}),
    st.uuids().map(str),
    st.sampled_from(P.OPS),
    args,
)
bad_envelopes = st.builds(  # one envelope field hostile, or an extra field
    lambda msg, field, value: {**msg, field: value}, requests, st.sampled_from(["v", "id", "op", "args", "x"]), hostile
)
KINDS = {
    "bytes": st.binary(max_size=64),
    "msgpack": st.builds(lambda obj: msgpack.packb(obj, use_bin_type=True), hostile),
    "envelope": bad_envelopes.map(P.encode),
    "args": requests.map(P.encode),
}
payloads = st.sampled_from(["bytes", "msgpack", "envelope", "envelope", "args", "args", "args", "args"]).flatmap(
    KINDS.__getitem__
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=payloads)
def test_fuzzed_messages_get_one_well_formed_reply_and_the_server_keeps_serving(preview_server, peer_factory, payload):
    peer = peer_factory(preview_server.bound_address)
    reply = peer.ask(payload, timeout_s=300)
    assert reply.get("v") == P.PROTOCOL_VERSION and isinstance(reply.get("ok"), bool), reply
    if not reply["ok"]:
        assert reply["error"]["code"] in CODES and isinstance(reply["error"]["message"], str), reply
    event("ok" if reply["ok"] else reply["error"]["code"])  # --hypothesis-show-statistics: how deep it got
    assert "time" in peer.ask(P.request(uuid.uuid4().hex, "ping"))["result"]
    assert peer.ask(P.request(uuid.uuid4().hex, "hello"))["result"]["tier"] == "preview"
