"""Edit round trip over loopback (p50, p99) against the same edit called in-process.

Run: .venv/bin/python benchmarks/bench_server.py [--threads N]
The mapper is trained (or loaded from the cache) first; each request uses a new intensity so
neither side answers from a result cache. Both sides run in this process on the same Editor.
Besides wall-clock percentiles it prints the process CPU time per edit (all threads), which
other users' load on a shared machine does not inflate as much.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend_server.server import Server  # noqa: E402
from faceedit_core.factory import build_editor  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402
from faceedit_wire.client import Client  # noqa: E402

N = 200


def percentiles(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"p50_ms": statistics.median(ms), "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))], "n": len(ms)}


def main(threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    editor = build_editor()
    params = FlameParams.zeros(1, 100, 50)
    mapper_id = editor.edit(params, prompt="A person who is smiling").mapper_ids[0]
    intensities = np.linspace(0.5, 1.0, N)
    local = []
    cpu0 = time.process_time()
    for x in intensities:
        t = time.perf_counter()
        editor.edit(params, mapper_ids=[mapper_id], intensity=float(x))
        local.append((time.perf_counter() - t) * 1000)
    cpu_local = (time.process_time() - cpu0) * 1000 / N
    server = Server(lambda: editor, "tcp://127.0.0.1:*")
    ready = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(ready,), daemon=True)
    thread.start()
    ready.wait(10)
    client = Client(server.bound_address, timeout_s=30)
    wire = {k: v for k, v in params.to_numpy().items()}
    client.call("ping")
    remote = []
    cpu0 = time.process_time()
    for x in intensities + 1e-4:
        t = time.perf_counter()
        client.call("edit", {"params": wire, "mapper_ids": [mapper_id], "intensity": float(x)})
        remote.append((time.perf_counter() - t) * 1000)
    cpu_remote = (time.process_time() - cpu0) * 1000 / N
    client.close()
    server.stop()
    thread.join(5)
    a, b = percentiles(local), percentiles(remote)
    print(f"edit in-process:      p50 {a['p50_ms']:7.2f} ms  p99 {a['p99_ms']:7.2f} ms  (n={a['n']})")
    print(f"edit over loopback:   p50 {b['p50_ms']:7.2f} ms  p99 {b['p99_ms']:7.2f} ms  (n={b['n']})")
    print(f"protocol overhead:    p50 {b['p50_ms'] - a['p50_ms']:7.2f} ms")
    print(
        f"CPU time per edit (all threads): in-process {cpu_local:.2f} ms, loopback {cpu_remote:.2f} ms "
        f"(overhead {cpu_remote - cpu_local:.2f} ms); load average {os.getloadavg()[0]:.1f}"
    )
    a["cpu_ms"], b["cpu_ms"] = cpu_local, cpu_remote
    return {"edit_in_process": a, "edit_loopback": b}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads of the in-process side (the server's worker keeps torch's default)",
    )
    main(ap.parse_args().threads)
