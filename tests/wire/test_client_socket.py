"""The client's socket: one random identity per client, kept across reconnects; IPv6 when the
address needs it."""

import zmq

from faceedit_wire.client import Client


def test_each_client_has_its_own_identity_and_keeps_it_across_reconnects():
    a, b = Client("tcp://127.0.0.1:9", timeout_s=1), Client("tcp://127.0.0.1:9", timeout_s=1)
    try:
        first = a.sock.getsockopt(zmq.ROUTING_ID)
        assert first and first[0] != 0 and first != b.sock.getsockopt(zmq.ROUTING_ID)
        a._connect()  # what a resend after a silence does
        assert a.sock.getsockopt(zmq.ROUTING_ID) == first
    finally:
        a.close()
        b.close()


def test_an_ipv6_address_turns_the_sockets_ipv6_option_on():
    v6, v4 = Client("tcp://[::1]:9", timeout_s=1), Client("tcp://127.0.0.1:9", timeout_s=1)
    try:
        assert v6.sock.getsockopt(zmq.IPV6) == 1 and v4.sock.getsockopt(zmq.IPV6) == 0
    finally:
        v6.close()
        v4.close()
