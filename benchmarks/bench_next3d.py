"""Next3D generator at the release size (`full`, random weights): one 512^2 view against an
8-view turntable that computes the tri-planes once, measured side by side in one run.

    .venv/bin/python benchmarks/bench_next3d.py [--threads 2] [--views 8] [--repeats 2]
                                                [--sr-precision auto bf16]

The head is the demo head (FLAME layout with UVs, neutral, global pose zeroed). Prints the
view-independent part (planes), the per-view part (volume rendering at 64^2 with 48 + 48
samples, and the 8x super-resolution), one full view, the turntable and their ratio, for each
super-resolution precision in turn ("auto": float32 on CPU as released; "bf16": the CPU fast path).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, timeit  # noqa: E402

from faceedit_core.flame.default_head import load_procedural_flame  # noqa: E402
from faceedit_core.next3d.generator import Next3DGenerator, flame_inputs  # noqa: E402
from faceedit_core.next3d.precision import PRECISIONS, reduced_dtype  # noqa: E402
from faceedit_core.next3d.topology import Next3DTopology  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402
from faceedit_core.render.cameras import orbit  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--config", default="full")
    ap.add_argument("--sr-precision", nargs="+", default=["auto", "bf16"], choices=PRECISIONS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    layer = load_procedural_flame()
    t = time.perf_counter()
    g = Next3DGenerator.from_config(args.config, Next3DTopology.from_flame_layer(layer))
    build_s = time.perf_counter() - t
    verts = flame_inputs(layer, FlameParams.zeros(1, layer.n_shape, layer.n_exp))
    front = orbit([0], [0]).eg3d_c()
    cams = orbit(torch.linspace(-60, 60, args.views), 0.0).eg3d_c()
    with torch.no_grad():
        ws = g.mapping(
            torch.randn(1, 512, generator=torch.Generator().manual_seed(0)),
            front,
            truncation_psi=0.7,
            truncation_cutoff=14,
        )
        planes = g.planes(ws, verts)
    print(
        f"config {args.config}, {sum(p.numel() for p in g.parameters()) / 1e6:.1f} M parameters "
        f"(built in {build_s:.1f} s), threads {torch.get_num_threads()}, torch {torch.__version__}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    for precision in args.sr_precision:
        g.superresolution.precision = precision
        dtype = reduced_dtype(precision, ws.device)
        print(f"--- super-resolution precision {precision} ({str(dtype).replace('torch.', '')})")
        _measure(g, ws, verts, planes, front, cams, args)


def _measure(g, ws, verts, planes, front, cams, args) -> None:
    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()

        return run

    with torch.no_grad():  # first use of this precision: oneDNN builds its kernels
        g.render_view(planes, ws, front)
    r = args.repeats
    parts = {
        "planes (texture, static, raster, mouth, blending)": no_grad(lambda: g.planes(ws, verts)),
        f"volume rendering {g.neural_rendering_resolution}^2 (one view)": no_grad(
            lambda: g.renderer(planes.planes, g.decoder, *_rays(g, front), g.render_settings)
        ),
        "render_view (volume rendering + super-resolution)": no_grad(lambda: g.render_view(planes, ws, front)),
    }
    for name, fn in parts.items():
        print(f"{name:52s} {fmt(timeit(fn, repeats=r, warmup=0))}")
    one = no_grad(lambda: g.synthesis(ws, front, verts))
    turn = no_grad(lambda: g.turntable(ws, verts, cams))
    singles, turns = [], []
    for _ in range(r):  # interleaved, so both see the same machine load
        singles.append(timeit(one, repeats=1, warmup=0)["median_ms"])
        turns.append(timeit(turn, repeats=1, warmup=0)["median_ms"])
    s, v = statistics.median(singles), statistics.median(turns)
    pairs = ", ".join(f"{t / o:.2f}" for o, t in zip(singles, turns))
    print(
        f"{'one view (planes + render_view)':52s} median {s:9.1f} ms  (runs {', '.join(f'{x:.0f}' for x in singles)})"
    )
    print(
        f"{f'turntable, {args.views} views (planes once)':52s} median {v:9.1f} ms  "
        f"(runs {', '.join(f'{x:.0f}' for x in turns)})"
    )
    print(
        f"turntable / one view: {v / s:.2f}x of the medians, per run pair {pairs} "
        f"(per extra view {(v - s) / max(args.views - 1, 1):.0f} ms), "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def _rays(g, c):
    from faceedit_core.next3d.renderer import camera_from_c, sample_rays

    return sample_rays(*camera_from_c(c), g.neural_rendering_resolution)


if __name__ == "__main__":
    main()
