"""The wire's request checks: types before values, arrays unpacked only where expected, errors that
name the field and the limit and never echo a big value; the loopback and IPv6 rules."""

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faceedit_wire import protocol as P
from faceedit_wire.net import is_ipv6, is_loopback

ARRAY_MAP = P.pack_array(np.zeros(3, np.float32))
values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(),
        st.text(max_size=200),
        st.binary(max_size=8),
        st.just(ARRAY_MAP),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)


@given(msg=st.dictionaries(st.sampled_from(["v", "id", "op", "args", "x"]), values, max_size=5))
def test_check_request_only_ever_raises_protocol_errors_with_short_messages(msg):
    decoded = P.decode(P.encode(msg), arrays=False)
    try:
        req_id, op, args = P.check_request(decoded)
    except P.ProtocolError as exc:
        assert exc.code in (P.BAD_REQUEST, P.VERSION, P.UNKNOWN_OP) and len(str(exc)) < 200
    else:
        assert isinstance(req_id, str) and op in P.OPS and isinstance(args, dict)


def test_requests_decode_without_arrays_and_replies_with_them():
    payload = P.encode({"v": 1, "id": "a", "op": "ping", "args": {"x": np.ones(2, np.float32)}})
    assert P.decode(payload, arrays=False)["args"]["x"] == P.pack_array(np.ones(2, np.float32))
    np.testing.assert_array_equal(P.decode(payload)["args"]["x"], np.ones(2, np.float32))


@pytest.mark.parametrize(
    "msg,code,text",
    [
        ({"v": ARRAY_MAP, "id": "a", "op": "ping"}, P.VERSION, "field 'v' (protocol version) must be 1, got an array"),
        ({"v": True, "id": "a", "op": "ping"}, P.VERSION, "got True"),
        ({"v": 1, "id": ["a"], "op": "ping"}, P.BAD_REQUEST, "field 'id' must be a string of 1..128 characters"),
        ({"v": 1, "id": "a" * 129, "op": "ping"}, P.BAD_REQUEST, "1..128 characters, got 'aaaa"),
        ({"v": 1, "id": "a", "op": {"x": 1}}, P.UNKNOWN_OP, "field 'op' must be one of hello, ping"),
        ({"v": 1, "id": "a", "op": "x" * 10000}, P.UNKNOWN_OP, "got 'xxxx"),
        ({"v": 1, "id": "a", "op": "ping", "args": ARRAY_MAP}, P.BAD_REQUEST, "'args' must be a map, got an array"),
    ],
)
def test_envelope_errors_name_the_field_and_show_at_most_a_little_of_the_value(msg, code, text):
    with pytest.raises(P.ProtocolError) as info:
        P.check_request(P.decode(P.encode(msg), arrays=False))
    assert info.value.code == code and text in str(info.value) and len(str(info.value)) < 200


@pytest.mark.parametrize(
    "value,text",
    [
        ({**ARRAY_MAP, "shape": [2**30, 2**30]}, "needs"),  # a claim the data does not back: nothing allocated
        ({**ARRAY_MAP, "shape": [-1, 3]}, "must be a list of at most 6 integers"),
        ({**ARRAY_MAP, "shape": [True, 3]}, "must be a list of at most 6 integers"),
        ({**ARRAY_MAP, "shape": [2**64 - 1]}, "must be a list of at most 6 integers"),
        ({**ARRAY_MAP, "shape": [1] * 7}, "must be a list of at most 6 integers"),
        ({**ARRAY_MAP, "dtype": ["float32"]}, "dtype must be one of"),
        ({**ARRAY_MAP, "data": "text"}, "must be bytes"),
        (P.pack_array(np.zeros((1, 3), np.int32)), "must be float32 or float64"),
        ([1.0, 2.0, 3.0], "must be an array"),
    ],
)
def test_get_array_unpacks_array_maps_and_names_the_field(value, text):
    with pytest.raises(P.ProtocolError, match=text) as info:
        P.get_array({"cameras": value}, "cameras", 2, last=3)
    assert "field 'cameras'" in str(info.value)


def test_get_array_returns_the_array_it_was_sent():
    sent = np.arange(6, dtype=np.float64).reshape(2, 3)
    np.testing.assert_array_equal(P.get_array({"a": P.pack_array(sent)}, "a", 2, last=3), sent)


def test_flags_and_maps_refuse_other_types_naming_the_field():
    assert P.get_flag({}, "head_mesh") is False and P.get_flag({"head_mesh": True}, "head_mesh") is True
    for bad in (1, "yes", ARRAY_MAP):
        with pytest.raises(P.ProtocolError, match="field 'head_mesh' must be true or false"):
            P.get_flag({"head_mesh": bad}, "head_mesh")
    assert P.get_map({}, "turntable") == {}
    for bad in (ARRAY_MAP, [1], "views"):
        with pytest.raises(P.ProtocolError, match="field 'turntable' must be a map"):
            P.get_map({"turntable": bad}, "turntable")


def test_a_message_that_is_not_a_map_is_a_bad_request():
    for payload in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({1: 2})):
        with pytest.raises(P.ProtocolError) as info:
            P.decode(payload, arrays=False)
        assert info.value.code == P.BAD_REQUEST


@pytest.mark.parametrize(
    "address,loopback,ipv6",
    [
        ("tcp://127.0.0.1:5555", True, False),
        ("tcp://localhost:5555", True, False),
        ("tcp://[::1]:5555", True, True),
        ("tcp://[::ffff:127.0.0.1]:5555", True, True),
        ("tcp://[::]:5555", False, True),
        ("tcp://0.0.0.0:5555", False, False),
        ("tcp://192.168.1.5:5555", False, False),
    ],
)
def test_loopback_and_ipv6_addresses(address, loopback, ipv6):
    assert is_loopback(address) is loopback and is_ipv6(address) is ipv6
