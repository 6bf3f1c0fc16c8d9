"""Fuzz a running `faceedit-server`: malformed messages with valid requests interleaved.

Run: .venv/bin/python benchmarks/fuzz_server.py [--messages 10000] [--every 20] [--seed 0]
Starts `python -m backend_server` on a free loopback port (or fuzzes --address, without crash
counts or RSS), warms it up (the first edit trains its mapper, or loads it from FACEEDIT_HOME),
then sends the malformed messages one at a time, waiting for each one's reply. They are
mutations of valid requests (a field of the envelope, the arguments or the FLAME arrays replaced
by a hostile value or deleted; the encoded bytes truncated, flipped or extended) and random
bytes. Every `--every` messages a valid request (ping, hello, edit, render, from a new client
identity so no cache answers it) is compared with the answer it got before the fuzz.
Prints: crashes (the server process ended), hangs (no reply within --timeout), error codes,
valid answers correct, RSS before/after.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgpack
import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from faceedit_wire import protocol as P  # noqa: E402
from faceedit_wire.client import Client  # noqa: E402

PARAMS = {"shape": np.zeros((1, 100), np.float32), "expression": np.zeros((1, 50), np.float32)}
PROMPT = "raise brows"
VALID = [
    ("ping", {}),
    ("hello", {"head_mesh": False}),
    ("edit", {"params": PARAMS, "prompt": PROMPT, "intensity": 0.5}),
    ("render", {"params": PARAMS, "size": 32, "turntable": {"views": 2}}),
]
TEMPLATES = VALID + [
    ("hello", {"head_mesh": True}),
    ("edit", {"params": PARAMS, "mapper_ids": ["pv-0000000000000000"], "intensity": 1.0}),
    ("render", {"params": PARAMS, "size": 32, "cameras": np.zeros((2, 25), np.float32)}),
    ("train", {"prompt": PROMPT}),
    ("status", {"job": "nothing"}),
    ("cancel", {"job": "nothing"}),
]


def hostile_values(rng: random.Random) -> list:
    """Values of every wrong type and edge: scalars, strings, bytes, containers, array maps honest and lying."""
    arrays = [np.zeros(0, np.float32), np.ones(1, np.int64), np.full((1, 100), np.nan, np.float32)]
    arrays += [np.zeros((rng.randint(0, 20), rng.randint(0, 120)), rng.choice(P.DTYPES)) for _ in range(2)]
    lying = {"__nd__": True, "dtype": "float32", "shape": [2**30, 2**30], "data": b"\x00" * 8}
    deep = 1
    for _ in range(100):
        deep = [deep]
    return [
        None,
        True,
        False,
        0,
        -1,
        2**63 - 1,
        2**64 - 1,
        -(2**63),
        1e308,
        float("nan"),
        float("inf"),
        "",
        "\x00",
        "x" * rng.choice([129, 5000]),
        "../../../../etc/passwd",
        "/etc/passwd",
        b"",
        b"\xff" * 16,
        [],
        [1, 2, 3],
        ["a"] * 9,
        {},
        {"__nd__": True},
        lying,
        {**lying, "shape": [-1]},
        {**lying, "dtype": "object"},
        {**lying, "shape": "2x2"},
        {"views": 10**9},
        {"views": 0, "pitch": float("nan")},
        P.pack_array(rng.choice(arrays)),
        deep,
        {str(i): i for i in range(200)},
        msgpack.ExtType(5, b"ext"),
    ]


def mutate(rng: random.Random) -> bytes:
    """One malformed message: a valid request with one thing broken, or random bytes."""
    op, args = rng.choice(TEMPLATES)
    msg = {"v": 1, "id": uuid.uuid4().hex, "op": op, "args": dict(args)}
    kind = rng.random()
    value = rng.choice(hostile_values(rng))
    if kind < 0.2:  # an envelope field
        field = rng.choice(["v", "id", "op", "args", "extra"])
        msg[field] = value
    elif kind < 0.55:  # an argument
        msg["args"][rng.choice([*args, "params", "prompt", "mapper_ids", "intensity", "size", "job"])] = value
    elif kind < 0.7:  # a FLAME array
        params = dict(msg["args"].get("params", PARAMS))
        params[rng.choice(["shape", "expression", "jaw_pose", "eye_pose", "transl"])] = value
        msg["args"]["params"] = params
    elif kind < 0.8:  # a field deleted
        del msg[rng.choice(["v", "id", "op", "args"])]
    else:
        return mangle(rng, P.encode(msg))
    return P.encode(msg)


def mangle(rng: random.Random, payload: bytes) -> bytes:
    """The encoded bytes truncated, flipped, extended, or replaced by random ones."""
    data = bytearray(payload)
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(data[: rng.randrange(len(data))])
    if kind == 1:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 2:
        return bytes(data) + rng.randbytes(rng.randint(1, 64))
    return rng.randbytes(rng.randint(0, 256))


def rss_mb(pid: int | None, field: str = "VmRSS") -> float | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def same_answer(op: str, got: dict, want: dict) -> bool:
    if op == "ping":
        return "time" in got
    if op == "edit":
        return got["mapper_ids"] == want["mapper_ids"] and np.array_equal(got["vertices"], want["vertices"])
    if op == "render":
        return got["images"] == want["images"]
    return got == want


class Target:
    """The server under test: a process started here (crashes are seen and it is restarted) or an address."""

    def __init__(self, address: str | None, startup_s: float):
        self.proc, self.startup_s = None, startup_s
        self.address = address or self._start()

    def _start(self) -> str:
        ctx = zmq.Context.instance()
        probe = ctx.socket(zmq.ROUTER)
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.close(0)
        address = f"tcp://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "backend_server", "--bind", address], cwd=ROOT)
        client = Client(address, timeout_s=self.startup_s, retries=0)
        client.call("ping")
        client.close()
        return address

    def crashed(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def restart(self) -> None:
        self.address = self._start()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.terminate()
        return self.proc.wait(60)


def main(messages: int, every: int, seed: int, address: str | None, timeout_s: float) -> dict:
    rng = random.Random(seed)
    target = Target(address, startup_s=120)
    t0 = time.perf_counter()
    client = Client(target.address, timeout_s=3600, retries=0)  # the first edit may train its mapper
    reference = {op: client.call(op, args) for op, args in VALID}
    client.close()
    print(f"warm-up (references of {', '.join(op for op, _ in VALID)}): {time.perf_counter() - t0:.1f} s")
    pid = target.proc and target.proc.pid
    rss_before = rss_mb(pid)

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(target.address)
    codes, crashes, hangs, valid_ok, valid_bad = collections.Counter(), 0, 0, 0, []
    t0 = time.perf_counter()
    for i in range(messages):
        sock.send(mutate(rng))
        reply = None
        while sock.poll(int(timeout_s * 1000)):
            msg = P.decode(sock.recv())
            if "event" not in msg:
                reply = msg
                break
        if reply is None:
            hangs += 1
        else:
            codes["ok" if reply.get("ok") else reply["error"]["code"]] += 1
        if target.crashed():
            crashes += 1
            print(f"server ended (exit {target.proc.returncode}) after message {i}: restarting")
            target.restart()
            pid = target.proc.pid
            sock.close(0)
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(target.address)
        if (i + 1) % every == 0:
            op, args = VALID[(i // every) % len(VALID)]
            fresh = Client(target.address, timeout_s=timeout_s, retries=0)  # a new identity: no cache answers
            try:
                ok = same_answer(op, fresh.call(op, args), reference[op])
            except Exception as exc:  # reported below, the fuzz goes on
                ok, op = False, f"{op}: {exc.__class__.__name__}: {exc}"
            fresh.close()
            valid_ok += ok
            if not ok:
                valid_bad.append(op)
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1} messages, {time.perf_counter() - t0:.0f} s, RSS {rss_mb(pid)} MB")
    sock.close(0)
    elapsed = time.perf_counter() - t0
    rss_after, rss_peak = rss_mb(pid), rss_mb(pid, "VmHWM")
    exit_code = target.stop()
    valid = valid_ok + len(valid_bad)
    print(f"malformed messages: {messages} in {elapsed:.0f} s (seed {seed}); valid requests interleaved: {valid}")
    print(f"crashes: {crashes}   hangs: {hangs}   exit on SIGTERM: {exit_code}")
    print("error codes: " + ", ".join(f"{code} {n}" for code, n in codes.most_common()))
    print(f"valid answers correct: {valid_ok}/{valid}" + (f"  wrong: {valid_bad[:5]}" if valid_bad else ""))
    if rss_before is not None:
        print(f"server RSS: before {rss_before:.0f} MB, after {rss_after:.0f} MB (peak {rss_peak:.0f} MB)")
    return {"crashes": crashes, "hangs": hangs, "codes": dict(codes), "valid_ok": valid_ok, "valid": valid}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=20, help="a valid request after every N malformed messages")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--address", default=None, help="fuzz this running server instead of starting one")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds without a reply that count as a hang")
    ns = ap.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main(ns.messages, ns.every, ns.seed, ns.address, ns.timeout)
