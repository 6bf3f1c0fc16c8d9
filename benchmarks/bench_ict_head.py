"""The default (ICT) head beside the procedural one, side by side in one run: load, FLAME forward, preview render.

Run: .venv/bin/python benchmarks/bench_ict_head.py [--threads 2] [--rounds 7]
Each round measures every case once for both heads, in turn, so both see the same machine load;
the figures are medians over the rounds of the wall time and of this process's CPU time (on a
shared host the CPU time is the steadier one: wall time also counts the neighbours' turns).
Cases (targets from issue 15 in brackets):
  load            load_ict_head("semantic") from the committed asset [<= 1 s]; the procedural head
                  from its cache (procedural_head())
  forward b1      FlameLayer forward, one head, the identity kept from the last call [<= 15 ms]
  forward b1 new  the same with a new identity every call (the shape blend is paid)
  forward b64     64 heads, random expressions and jaw, one identity per head [<= 2 ms per head]
  render 1        PreviewRenderer, one 512x512 view (2x supersampling) [<= 150 ms]
  render 8        an 8-view 512x512 turntable [<= 250 ms]
  ... pytorch     the same render on the rasteriser's PyTorch path, without its C kernels
                  (render/native.py: what runs where no C compiler is found; the same images)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceedit_core.flame.default_head import procedural_head  # noqa: E402
from faceedit_core.flame.ict import load_ict_head  # noqa: E402
from faceedit_core.flame.layer import FlameLayer  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402
from faceedit_core.render import native  # noqa: E402
from faceedit_core.render.albedo import demo_albedo  # noqa: E402
from faceedit_core.render.cameras import turntable  # noqa: E402
from faceedit_core.render.ict_materials import preview_renderer  # noqa: E402
from faceedit_core.render.preview import PreviewRenderer  # noqa: E402

CASES = (
    "load",
    "forward b1",
    "forward b1 new",
    "forward b64",
    "render 1",
    "render 8",
    "render 1 pytorch",
    "render 8 pytorch",
)


def timed(fn) -> tuple[float, float]:
    """(wall ms, CPU ms of this process) of one call."""
    c, w = time.process_time(), time.perf_counter()
    fn()
    return (time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000


class Head:
    """One head's layer, renderer and inputs for every case."""

    def __init__(self, name: str):
        self.name = name
        if name == "ict":
            self.load = lambda: load_ict_head("semantic")
            head = self.load()
            self.layer = FlameLayer(head.model, head.landmarks)
            self.renderer = preview_renderer(head)
        else:
            self.load = procedural_head
            head = self.load()
            self.layer = FlameLayer(head.model, head.landmarks)
            self.renderer = PreviewRenderer(self.layer.faces, self.layer.uvs, self.layer.uv_faces, demo_albedo())
        g = torch.Generator().manual_seed(0)
        n_s, n_e = self.layer.n_shape, self.layer.n_exp
        self.one = FlameParams.zeros(1, n_s, n_e)
        self.new = [FlameParams.zeros(1, n_s, n_e) for _ in range(8)]
        for q in self.new:
            q.shape[:, :40].normal_(generator=g)
        self.batch = FlameParams.zeros(64, n_s, n_e)
        self.batch.shape[:, :40].normal_(generator=g)
        self.batch.expression.uniform_(0, 0.5, generator=g)
        self.batch.jaw_pose[:, 0] = 0.15
        with torch.no_grad():
            self.verts = self.layer(self.one).vertices
        self.turn = iter(range(1 << 30))

    def run(self, case: str):
        with torch.no_grad():
            if case == "load":
                return self.load()
            if case == "forward b1":
                return self.layer(self.one)
            if case == "forward b1 new":
                return self.layer(self.new[next(self.turn) % 8])
            if case == "forward b64":
                return self.layer(self.batch)
            views = turntable(1, (0, 0)) if case.startswith("render 1") else turntable(8)
            if not case.endswith("pytorch"):
                return self.renderer.render(self.verts, views, 512)
            kernels, native.library = native.library, lambda: None
            try:
                return self.renderer.render(self.verts, views, 512)
            finally:
                native.library = kernels


def main(threads: int = 2, rounds: int = 7, cases: tuple[str, ...] = CASES) -> dict:
    """cases: the cases to time, interleaved round by round (one case alone: back to back)."""
    torch.set_num_threads(threads)
    kernels = native.library()
    print(f"C kernels: {'built' if kernels is not None else 'unavailable, the PyTorch path runs'} (render/native.py)")
    heads = [Head("ict"), Head("procedural")]
    for h in heads:  # warm up every path once (TorchScript compile, pools, caches)
        for case in cases:
            h.run(case)
    samples = {(h.name, c): [] for h in heads for c in cases}
    for _ in range(rounds):
        for case in cases:
            for h in heads:
                samples[(h.name, case)].append(timed(lambda: h.run(case)))
    results = {}
    print(f"{threads} torch threads, {rounds} rounds; median wall ms (CPU ms) [min wall - max wall]")
    print(f"{'case':16s} " + "  ".join(f"{h.name:>34s}" for h in heads))
    for case in cases:
        cells = []
        for h in heads:
            wall = [s[0] for s in samples[(h.name, case)]]
            cpu = [s[1] for s in samples[(h.name, case)]]
            r = {
                "wall_ms": statistics.median(wall),
                "cpu_ms": statistics.median(cpu),
                "min_ms": min(wall),
                "max_ms": max(wall),
            }
            results[f"{h.name} {case}"] = r
            cells.append(f"{r['wall_ms']:9.1f} ({r['cpu_ms']:7.1f}) [{r['min_ms']:.0f}-{r['max_ms']:.0f}]")
        print(f"{case:16s} " + "  ".join(f"{c:>34s}" for c in cells))
    for h in heads:
        if (per := results.get(f"{h.name} forward b64")) is not None:
            print(f"{h.name}: forward b64 per head {per['wall_ms'] / 64:.2f} ms wall ({per['cpu_ms'] / 64:.2f} CPU)")
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of: {', '.join(CASES)}")
    args = ap.parse_args()
    cases = tuple(c.strip() for c in args.cases.split(","))
    if unknown := set(cases) - set(CASES):
        ap.error(f"--cases: unknown {', '.join(sorted(unknown))} (known: {', '.join(CASES)})")
    main(args.threads, args.rounds, cases)
