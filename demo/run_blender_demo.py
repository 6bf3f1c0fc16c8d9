"""`make demo`, Blender part: start the backend, run headless Blender with the add-on, stop the backend.

    .venv/bin/python demo/run_blender_demo.py --zip dist/faceedit-0.1.0.zip --out out/demo

The backend (`python -m backend_server`, the embedded default) listens on a free loopback port;
Blender is the bpy module of .venv-blender running demo/blender_scene.py, with its user folders
(where the extension is installed) in a temporary directory, so your own Blender is untouched.
The backend is stopped with SIGINT (it closes its socket and exits) whatever happens.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(address: str, server: subprocess.Popen, limit_s: float = 120.0) -> None:
    from faceedit_wire.client import Client, ServerUnavailable

    client = Client(address, timeout_s=2.0, retries=0)
    t0 = time.monotonic()
    try:
        while True:
            try:
                client.call("ping")
                return
            except ServerUnavailable:
                if server.poll() is not None or time.monotonic() - t0 > limit_s:
                    raise SystemExit(f"the backend did not start on {address} (exit code {server.poll()})")
    finally:
        client.close()


def stop(server: subprocess.Popen) -> int:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return server.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zip", required=True, help="the built extension (build_addon.py), or the folder holding it")
    ap.add_argument("--out", default="out/demo")
    ap.add_argument("--blender-python", default=str(ROOT / ".venv-blender" / "bin" / "python"))
    ns = ap.parse_args(argv)
    zip_path = Path(ns.zip)
    if zip_path.is_dir():
        found = sorted(zip_path.glob("faceedit-*.zip"))
        if len(found) != 1:
            raise SystemExit(
                f"expected one faceedit-*.zip in {zip_path}, found {[p.name for p in found]}: run build_addon.py"
            )
        zip_path = found[0]
    out = Path(ns.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    address = f"tcp://127.0.0.1:{free_loopback_port()}"
    log = open(out / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "backend_server", "--bind", address],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # even when started in the background
    print(f"backend (embedded default) on {address}, log in {out / 'server.log'}", flush=True)
    try:
        wait_ready(address, server)
        with tempfile.TemporaryDirectory(prefix="faceedit-blender-") as user:
            env = dict(os.environ, BLENDER_USER_RESOURCES=user)
            t0 = time.perf_counter()
            rc = subprocess.run(
                [
                    ns.blender_python,
                    str(ROOT / "demo" / "blender_scene.py"),
                    str(zip_path.resolve()),
                    address,
                    str(out),
                ],
                env=env,
            ).returncode
            print(f"headless Blender finished in {time.perf_counter() - t0:.0f} s (exit code {rc})")
    finally:
        code = stop(server)
        log.close()
        print(f"backend stopped (exit code {code})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
