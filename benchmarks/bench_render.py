"""Preview rendering on CPU: one 512x512 view, and 8 views batched, of the procedural head (~19k faces)
(the default ICT head: benchmarks/bench_ict_head.py).

Run: .venv/bin/python benchmarks/bench_render.py [--threads N]
Figures: the rasteriser alone (face ids + barycentrics) and the full preview render (normals,
texture, lighting, 2x supersampling), for one view and for an 8-view turntable in one call; for
context, the same 8 views rasterised one call each, and how many pixels the views cover (the
work of a rasteriser grows with covered pixels: the 8 turntable views cover about 9x the
front view's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, timeit  # noqa: E402

from faceedit_core.flame.default_head import load_procedural_flame  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402
from faceedit_core.render.albedo import demo_albedo  # noqa: E402
from faceedit_core.render.cameras import Cameras, flame_to_world, turntable  # noqa: E402
from faceedit_core.render.preview import PreviewRenderer  # noqa: E402
from faceedit_core.render.rasterize import rasterize  # noqa: E402


def main(threads: int = 2, rounds: int = 15) -> dict:
    torch.set_num_threads(threads)
    layer = load_procedural_flame()
    verts = layer(FlameParams.zeros(1, 300, 100)).vertices.detach()
    world = flame_to_world(verts[0])
    one, eight = turntable(1, (0, 0)), turntable(8)
    faces = layer.faces
    print(f"mesh: {layer.n_verts} vertices, {len(faces)} faces")
    res = {}
    ratios = []
    for _ in range(rounds):  # interleaved, so each pair sees the same machine load
        r1 = timeit(lambda: rasterize(one.project(world), faces, (512, 512), cull_backfaces=True))
        r8 = timeit(lambda: rasterize(eight.project(world), faces, (512, 512), cull_backfaces=True), repeats=5)
        ratios.append(r8["median_ms"] / r1["median_ms"])
        print(f"rasterise 512x512, 1 view:        {fmt(r1)}")
        print(f"rasterise 512x512, 8 views:       {fmt(r8)}  ratio {ratios[-1]:.2f}x one view")
    res["raster_512_1view"], res["raster_512_8views"] = r1, r8
    print(
        f"ratio 8 views / 1 view over {rounds} rounds: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
    )
    clips = [Cameras(eight.cam2world[i : i + 1], eight.intrinsics[i : i + 1]).project(world) for i in range(len(eight))]
    res["raster_512_8calls"] = rs = timeit(
        lambda: [rasterize(c, faces, (512, 512), cull_backfaces=True) for c in clips], repeats=3
    )
    print(f"rasterise 512x512, 8 single calls: {fmt(rs)}  batched/separate {r8['median_ms'] / rs['median_ms']:.2f}")
    cover = rasterize(eight.project(world), faces, (512, 512), cull_backfaces=True).mask.sum().item()
    cover1 = rasterize(one.project(world), faces, (512, 512), cull_backfaces=True).mask.sum().item()
    print(f"covered pixels: front view {cover1}, 8 views {cover} ({cover / cover1:.2f}x)")
    renderer = PreviewRenderer(layer.faces, layer.uvs, layer.uv_faces, demo_albedo())
    res["render_512_1view"] = p1 = timeit(lambda: renderer.render(verts, one, 512), repeats=5)
    print(f"preview render 512, 1 view:       {fmt(p1)}")
    res["render_512_8views"] = p8 = timeit(lambda: renderer.render(verts, eight, 512), repeats=3)
    print(f"preview render 512, 8 views:      {fmt(p8)}  ratio {p8['median_ms'] / p1['median_ms']:.2f}x one view")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds of 1 view and 8 views")
    args = ap.parse_args()
    main(args.threads, args.rounds)
