"""Two versions of the rasteriser side by side in one process: 1 view and 8 views, interleaved.

Run: .venv/bin/python benchmarks/compare_rasterisers.py OLD.py [NEW.py] [--rounds N]
OLD.py / NEW.py are copies of faceedit_core/render/rasterize.py (NEW defaults to this tree's), e.g.
    git show c5337aa:faceedit_core/render/rasterize.py > /tmp/old_rasterize.py
Each round times both versions one after the other (median of 7 one-view and 3 eight-view
calls), so a machine whose speed drifts treats them alike; the figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import timeit  # noqa: E402

from faceedit_core.flame.default_head import load_procedural_flame  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402
from faceedit_core.render.cameras import flame_to_world, turntable  # noqa: E402


def load(path: Path, name: str):
    """A rasterize.py from any path, imported as a sibling of the real one (its relative imports work)."""
    spec = importlib.util.spec_from_file_location(f"faceedit_core.render.{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(paths: list[Path], rounds: int) -> None:
    torch.set_num_threads(2)
    versions = [load(p, f"compared_{i}") for i, p in enumerate(paths)]
    layer = load_procedural_flame()
    world = flame_to_world(layer(FlameParams.zeros(1, 300, 100)).vertices.detach()[0])
    one, eight = turntable(1, (0, 0)).project(world), turntable(8).project(world)
    calls = [
        (lambda m=m, c=c: m.rasterize(c, layer.faces, (512, 512), cull_backfaces=True))
        for m in versions
        for c in (one, eight)
    ]
    for call in calls:  # warm-up: pools, compilation
        call(), call()
    times = [([], []) for _ in versions]
    for _ in range(rounds):
        for i in range(len(versions)):
            times[i][0].append(timeit(calls[2 * i], repeats=7, warmup=0)["median_ms"])
            times[i][1].append(timeit(calls[2 * i + 1], repeats=3, warmup=0)["median_ms"])
    for path, (t1, t8) in zip(paths, times):
        ratios = [b / a for a, b in zip(t1, t8)]
        print(
            f"{path}: 1 view {statistics.median(t1):.1f} ms, 8 views {statistics.median(t8):.1f} ms, "
            f"ratio median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path, nargs="?", default=ROOT / "faceedit_core/render/rasterize.py")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    main([args.old, args.new], args.rounds)
