"""The add-on's edit round trip in Blender (bpy 5.0.1) against the bare wire client, side by side.

Run: .venv/bin/python benchmarks/bench_blender.py [N]   (needs .venv-blender and dist/ from `make addon`)
A server with the default preview Editor runs in this process (the mapper for the smile is
trained or loaded from $FACEEDIT_HOME first); benchmarks/blender_side.py runs in .venv-blender.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend_server.server import Server  # noqa: E402
from faceedit_core.factory import build_editor  # noqa: E402


def main(n: int = 50) -> dict:
    zips = sorted((ROOT / "dist").glob("faceedit-*.zip"))
    blender_py = ROOT / ".venv-blender" / "bin" / "python"
    if not zips or not blender_py.exists():
        print("bench_blender: needs `make addon` (dist/faceedit-*.zip and .venv-blender)")
        return {}
    server = Server(build_editor, "tcp://127.0.0.1:*")
    ready = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(ready,), daemon=True)
    thread.start()
    ready.wait(30)
    try:
        with tempfile.TemporaryDirectory() as user:
            proc = subprocess.run(
                [
                    str(blender_py),
                    str(ROOT / "benchmarks" / "blender_side.py"),
                    str(zips[0]),
                    server.bound_address,
                    str(n),
                ],
                capture_output=True,
                text=True,
                env=dict(os.environ, BLENDER_USER_RESOURCES=user),
                check=True,
            )
    finally:
        server.stop()
        thread.join(10)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"edit via the add-on (operator + poll step -> shape key): p50 {r['addon_p50_ms']:.1f} ms, "
        f"p90 {r['addon_p90_ms']:.1f} ms"
    )
    print(
        f"edit via the wire client in Blender:                    p50 {r['wire_p50_ms']:.1f} ms, "
        f"p90 {r['wire_p90_ms']:.1f} ms"
    )
    print(
        f"add-on overhead: {r['addon_p50_ms'] - r['wire_p50_ms']:.1f} ms (p50); shape key write (9554 verts) "
        f"{r['shape_key_write_ms']:.2f} ms; idle poll step {r['idle_poll_ms'] * 1000:.0f} us; "
        f"4 packed 256 px image planes {r['planes_4x256_ms']:.1f} ms  (n={r['n']})"
    )
    return r


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
