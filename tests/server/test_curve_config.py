"""CURVE: encrypted clients whose keys are listed get in, others do not; every misconfiguration
refuses to start with a clear message (exit 2, no traceback); any-key needs --allow-any-client."""

import logging
import subprocess
import sys
import threading

import pytest
import zmq
import zmq.auth

from backend_server.server import CurveConfig, Server
from faceedit_wire import protocol as P
from faceedit_wire.client import Client, CurveKeys, ServerUnavailable
from tests.helpers.paths import REPO_ROOT


@pytest.fixture
def keys(tmp_path):
    """tmp_path with server/ and client/ key pairs, and stranger/ (a key pair nobody listed)."""
    for name in ("server", "client", "stranger"):
        (tmp_path / name).mkdir()
        zmq.auth.create_certificates(str(tmp_path / name), name)
    (tmp_path / "empty").mkdir()
    return tmp_path


def answered(server, keys, name: str | None) -> bool:
    """Whether a ping from a client with key pair `name` (None: no CURVE) gets any answer within 2 s.
    A raw socket that never blocks: a refused client may have no connection to send on."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if name is not None:
        public, secret = zmq.auth.load_certificate(str(keys / name / f"{name}.key_secret"))
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey = zmq.auth.load_certificate(str(keys / "server" / "server.key"))[0]
    sock.connect(server.bound_address)
    try:
        sock.send(P.encode(P.request("knock", "ping")), zmq.NOBLOCK)
    except zmq.Again:
        pass
    try:
        return bool(sock.poll(2000))
    finally:
        sock.close(0)


def test_listed_clients_get_in_and_others_do_not(serve, keys):
    config = CurveConfig(keys / "server/server.key_secret", keys / "client")
    server = serve(Server(dict, "tcp://127.0.0.1:*", curve=config))
    assert answered(server, keys, "client")
    assert not answered(server, keys, "stranger") and not answered(server, keys, None)


def finished(call, limit_s: float = 60):
    """call() in a thread -> what it raised; fails the test when it has not returned within limit_s."""
    raised = []

    def run():
        try:
            call()
        except Exception as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"the client was still blocked after {limit_s} s"
    return raised[0] if raised else None


def test_a_refused_or_mismatched_client_key_is_a_clear_error_not_a_hang(serve, client_factory, keys):
    server = serve(
        Server(dict, "tcp://127.0.0.1:*", curve=CurveConfig(keys / "server/server.key_secret", keys / "client"))
    )
    cases = {  # client key pair, server public key -> what the error says
        ("stranger", "server"): "refused this client's CURVE key",
        ("client", "stranger"): "stranger.key this server's public key?",
    }
    for (name, server_key), message in cases.items():
        curve = CurveKeys(keys / name / f"{name}.key_secret", keys / server_key / f"{server_key}.key")
        client = client_factory(server.bound_address, timeout_s=1, retries=1, curve=curve)
        error = finished(lambda: client.call("ping"))
        assert isinstance(error, ServerUnavailable) and message in str(error), error


def test_any_client_needs_allow_any_client_and_is_logged_loudly(serve, keys, caplog):
    with pytest.raises(ValueError, match="--allow-any-client"):
        CurveConfig(keys / "server/server.key_secret", "*").check()
    with caplog.at_level(logging.WARNING, logger="faceedit.server"):
        config = CurveConfig(keys / "server/server.key_secret", "*", allow_any_client=True)
        server = serve(Server(dict, "tcp://127.0.0.1:*", curve=config))
    assert any("ANY client key may connect" in r.getMessage() for r in caplog.records)
    curve = CurveKeys(keys / "stranger/stranger.key_secret", keys / "server/server.key")
    stranger = Client(server.bound_address, timeout_s=10, retries=0, curve=curve)
    assert "time" in stranger.call("ping")  # the full client, encrypted, with a key nobody listed
    stranger.close()


def faceedit_server(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backend_server", "--bind", "tcp://0.0.0.0:*", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--curve-secret", "{keys}/server/server.key_secret"], "--curve-secret and --curve-clients go together"),
        (["--curve-clients", "{keys}/client"], "--curve-secret and --curve-clients go together"),
        (["--curve-secret", "{keys}/server/server.key_secret", "--curve-clients", "*"], "--allow-any-client"),
        (["--curve-secret", "{keys}/server/server.key_secret", "--curve-clients", "{keys}/nowhere"], "does not exist"),
        (["--curve-secret", "{keys}/server/server.key_secret", "--curve-clients", "{keys}/empty"], "no client public"),
        (["--curve-secret", "{keys}/server/server.key", "--curve-clients", "{keys}/client"], "holds no secret key"),
        (["--curve-secret", "{keys}/missing.key_secret", "--curve-clients", "{keys}/client"], "does not exist"),
    ],
)
def test_curve_misconfigurations_refuse_to_start_with_a_clear_message(keys, argv, message):
    done = faceedit_server(*(a.format(keys=keys) for a in argv))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
