"""Start and stop: SIGTERM cancels the running job, answers every request in flight, leaves no
temporary file and exits 0; the IPv6 loopback works."""

import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from backend_server.server import Server
from faceedit_wire import protocol as P
from faceedit_wire.client import Client
from tests.helpers.paths import REPO_ROOT
from tests.helpers.server import free_port

# a server whose `train` writes a weights file (atomically) every step until it is cancelled
SLOW_SERVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    from backend_server import handlers
    from backend_server.__main__ import run
    from backend_server.server import Server
    from faceedit_core.errors import Cancelled
    from faceedit_core.storage.atomic import atomic_write_bytes

    def train(editor, args, ctx):
        for step in range(100000):
            atomic_write_bytes(Path(sys.argv[2]) / "weights.bin", bytes(4 << 20))
            ctx["progress"]({"stage": "train", "step": step, "total": 100000})
            if ctx["cancelled"]():
                raise Cancelled(f"training cancelled at step {step}")
            time.sleep(0.01)

    handlers.HANDLERS["train"] = train
    sys.exit(run(Server(dict, sys.argv[1])))
    """
)


def test_sigterm_cancels_the_job_answers_every_request_and_exits_cleanly(tmp_path, peer_factory):
    address = f"tcp://127.0.0.1:{free_port()}"
    script = tmp_path / "slow_server.py"
    script.write_text(SLOW_SERVER)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), address, str(out)], cwd=REPO_ROOT, stderr=subprocess.PIPE)
    try:
        peer = peer_factory(address)
        assert peer.ask(P.request("p-1", "ping"), timeout_s=120)["ok"]
        peer.send(P.encode(P.request("running", "train", {"prompt": "smile"})))
        peer.send(P.encode(P.request("queued", "train", {"prompt": "smile"})))
        assert peer.sock.poll(60_000) and P.decode(peer.sock.recv())["event"] == "progress"
        proc.send_signal(signal.SIGTERM)
        replies = {r["id"]: r for r in (peer.reply(60), peer.reply(60))}
        assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
    finally:
        proc.kill()
    assert {r["error"]["code"] for r in replies.values()} == {P.CANCELLED}, replies
    assert "shutting down" in replies["queued"]["error"]["message"]
    assert sorted(p.name for p in out.iterdir()) == ["weights.bin"]  # no temporary file left


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_the_ipv6_loopback_serves(serve):
    server = serve(Server(dict, "tcp://[::1]:*"))
    assert server.bound_address.startswith("tcp://[::1]:")
    client = Client(server.bound_address, timeout_s=10, retries=0)
    try:
        assert "time" in client.call("ping")
    finally:
        client.close()


def test_an_address_that_cannot_be_bound_is_a_clear_error(stub_server):
    with pytest.raises(ValueError, match=f"cannot bind {stub_server.bound_address}: Address already in use"):
        Server(dict, stub_server.bound_address).open()
