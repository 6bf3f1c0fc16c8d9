"""Paper-tier training and inference cost on CPU with the tiny networks (random weights).

Run: .venv/bin/python benchmarks/bench_paper_train.py [--steps 20] [--release-sizes]
1. A generator step as training takes it, side by side per batch size: two tiny Next3D renders
   (the original head without gradients, the edited head with them) and the backward pass.
   With --release-sizes the same tiny channels at the release's sizes (256^2 planes, 64^2 mouth,
   512^2 output; the tiny config before its sizes became data) are timed too, once.
2. The tests' training loop (tests/paper/test_paper_train.py's TINY with one latent: the demo head,
   tiny Next3D, tiny CLIP and ArcFace, batch 2): seconds per step and the loss (mean of the first
   and last quarter, capped at 10 steps each).
3. Inference, measured side by side in one run: the mapper forward pass (default config, all 14
   texture levels) against the Next3D render of one view (planes + one camera) it precedes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, timeit  # noqa: E402

from faceedit_core.mappers import DualMappers, MapperConfig  # noqa: E402
from faceedit_core.next3d.generator import Next3DGenerator, flame_inputs  # noqa: E402
from faceedit_core.next3d.topology import Next3DTopology  # noqa: E402
from faceedit_core.paper.mapper_sets import edit_latent  # noqa: E402
from faceedit_core.paper.train import train_mappers  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402
from faceedit_core.render.cameras import orbit  # noqa: E402
from tests.helpers.paper import tiny_models  # noqa: E402


def run(models, cfg, label: str) -> None:
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        r = train_mappers(models, cfg, out)
        wall = time.perf_counter() - t
        history = json.loads(r.checkpoint_path.read_text())["history"]
    s = r.summary
    for term in history[0]:
        print(f"  {term:8s} per step: " + " ".join(f"{h[term]:.4f}" for h in history))
    print(
        f"{label}: {s['steps']} steps, batch {cfg.batch}: {s['seconds_per_step']:.2f} s/step "
        f"(wall {wall:.1f} s incl. setup); loss {s['loss_first']:.4f} -> {s['loss_last']:.4f} "
        f"({100 * (1 - s['loss_last'] / s['loss_first']):.1f}% lower)"
    )


def generator_step(G, layer, batch: int, repeats: int = 5, warmup: int = 1) -> dict:
    """Timing of two renders (no-grad original, edited with gradients to ws and the vertices) + backward."""
    c = orbit([0.0] * batch, [0.0] * batch).eg3d_c()
    ws = G.mapping(torch.randn(batch, 512), c, truncation_psi=0.7).detach()
    verts = flame_inputs(layer, FlameParams.zeros(batch, layer.n_shape, layer.n_exp))

    def step():
        dws = torch.zeros_like(ws, requires_grad=True)
        v = verts.clone().requires_grad_(True)
        with torch.no_grad():
            before = G.synthesis(ws, c, verts)["image"]
        after = G.synthesis(ws + dws, c, v)["image"]
        ((after - before) ** 2).mean().backward()

    return timeit(step, repeats=repeats, warmup=warmup)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--release-sizes", action="store_true", help="also time one step at the release's sizes")
    args = ap.parse_args()
    os.environ.setdefault("FACEEDIT_HOME", tempfile.mkdtemp())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    models = tiny_models(Path(tempfile.mkdtemp()))
    G, layer = models.generator, models.flame
    cfg = G.config
    print(
        f"tiny Next3D: {cfg.plane_resolution}^2 planes, {cfg.mouth_resolution}^2 mouth, "
        f"{cfg.neural_rendering_resolution}^2 rendering, {cfg.output_resolution}^2 output, "
        f"{cfg.render.depth_resolution}+{cfg.render.depth_resolution_importance} samples"
    )
    for batch in (1, 2):
        print(f"generator step, batch {batch}: {fmt(generator_step(G, layer, batch))}")
    if args.release_sizes:
        big = Next3DGenerator.from_config(
            cfg.with_(plane_resolution=256, mouth_resolution=64, output_resolution=512),
            Next3DTopology.from_flame_layer(layer),
        )
        print(f"generator step at the release's sizes, batch 1: {fmt(generator_step(big, layer, 1, 2, 1))}")

    from tests.paper.test_paper_train import TINY

    run(models, replace(TINY, steps=args.steps, n_latents=1), "tests' loop (TINY, one latent)")

    G, layer = models.generator, models.flame
    mapper = DualMappers(MapperConfig(n_exp=layer.n_exp)).eval()
    c = orbit([0.0], [0.0]).eg3d_c()
    ws = G.mapping(torch.randn(1, 512), c, truncation_psi=0.7).detach()
    params = FlameParams.zeros(1, layer.n_shape, layer.n_exp)
    with torch.no_grad():
        m = timeit(lambda: edit_latent([(mapper, 1.0)], ws, params), repeats=5)
        r = timeit(lambda: G.render_view(G.planes(ws, flame_inputs(layer, params)), ws, c), repeats=2)
    print(f"mapper forward (default config)  {fmt(m)}")
    print(f"tiny Next3D planes + one view    {fmt(r)}")
    print(f"mapper / render ratio {m['median_ms'] / r['median_ms']:.4f}")


if __name__ == "__main__":
    main()
