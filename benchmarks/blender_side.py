"""The Blender half of bench_blender.py, run by the bpy module in .venv-blender:

    .venv-blender/bin/python benchmarks/blender_side.py ZIP ADDRESS N

Prints one JSON line: the edit round trip through the add-on (operator + poll step until the
shape key is written) and through the bare wire client, side by side, with new intensities (no
server cache hits); the scene writes alone; the idle poll step.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "blender_addon" / "in_blender"))
from common import configure, drain, install  # noqa: E402  (tests/blender_addon/in_blender/common.py)


def ms(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return sorted(out)


def main() -> None:
    zip_path, address, n = sys.argv[-3], sys.argv[-2], int(sys.argv[-1])
    fe = install(zip_path)
    configure(fe, address, timeout_s=120.0, retries=0)
    scene = bpy.context.scene
    bpy.ops.faceedit.add_demo_head()
    drain(fe)
    head = scene.faceedit.target
    scene.faceedit.prompt = "A person who is smiling"
    bpy.ops.faceedit.edit_expression()
    drain(fe)  # trains or loads the mapper
    intensities = np.linspace(0.5, 1.0, 2 * n)

    def addon(i):
        scene.faceedit.intensity = float(intensities[2 * i])
        bpy.ops.faceedit.edit_expression()
        while fe.session.JOBS.poll_step():
            time.sleep(0.0005)
        if fe.session.JOBS.status.error:  # never time a failure
            raise SystemExit(fe.session.JOBS.status.error)

    client = fe.session.JOBS.client()
    params = fe.rig.read_params(head)

    def wire(i):
        client.call(
            "edit", {"params": params, "prompt": scene.faceedit.prompt, "intensity": float(intensities[2 * i + 1])}
        )

    via_addon, via_wire = [], []
    for i in range(n):  # interleaved, so both paths see the same machine load
        first, second = (addon, wire) if i % 2 else (wire, addon)  # alternate which goes first
        a, b = ms(lambda _: first(i), 1), ms(lambda _: second(i), 1)
        via_addon += a if first is addon else b
        via_wire += b if first is addon else a
    via_addon.sort()
    via_wire.sort()
    verts = fe.rig.edited_coords(head, params, client.call("edit", {"params": params, "prompt": scene.faceedit.prompt}))
    write = ms(lambda i: fe.apply.write_shape_key(head, "FE smiling", verts), n)
    idle = ms(lambda i: fe.session.JOBS.poll_step(), 200)
    render = client.call("render", {"params": params, "size": 256, "turntable": {"views": 4}})
    planes = ms(
        lambda i: fe.apply.image_planes(scene, head, "FE views bench", render["images"][0], 256, [0, 1, 2, 3]), 5
    )
    p50 = lambda v: v[len(v) // 2]  # noqa: E731
    print(
        json.dumps(
            {
                "n": n,
                "addon_p50_ms": p50(via_addon),
                "wire_p50_ms": p50(via_wire),
                "addon_p90_ms": via_addon[int(0.9 * n)],
                "wire_p90_ms": via_wire[int(0.9 * n)],
                "shape_key_write_ms": p50(write),
                "idle_poll_ms": p50(idle),
                "planes_4x256_ms": p50(planes),
            }
        )
    )


if __name__ == "__main__":
    main()
