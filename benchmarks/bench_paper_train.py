"""Paper-tier training and inference cost on CPU with the tiny networks (random weights).

Run: .venv/bin/python benchmarks/bench_paper_train.py [--steps 6] [--micro-steps 40]
1. Training over the tiny Next3D (the release's sizes: 256^2 planes, 512^2 output) with the demo
   head, tiny CLIP and tiny ArcFace: seconds per step (batch 1, default mapper config), loss
   at the first and the last steps (one latent code, so successive losses are comparable).
2. The same loop over the tests' MicroGenerator (a toy with Next3D's interface): loss over more
   steps (mean of the first and last quarter, capped at 10 steps each) and seconds per step.
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

from faceedit_core.mapper_sets import edit_latent  # noqa: E402
from faceedit_core.mappers import DualMappers, MapperConfig  # noqa: E402
from faceedit_core.next3d.generator import flame_inputs  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402
from faceedit_core.render.cameras import orbit  # noqa: E402
from faceedit_core.train import PaperTrainConfig, train_mappers  # noqa: E402
from tests.paper_fixtures import tiny_models  # noqa: E402


def run(models, cfg, label: str) -> None:
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        r = train_mappers(models, cfg, out)
        wall = time.perf_counter() - t
        history = json.loads(r.checkpoint_path.read_text())["history"]
    s = r.summary
    for term in history[0]:
        print(f"  {term:8s} per step: " + " ".join(f"{h[term]:.4f}" for h in history))
    print(f"{label}: {s['steps']} steps, batch {cfg.batch}: {s['seconds_per_step']:.2f} s/step "
          f"(wall {wall:.1f} s incl. setup); loss {s['loss_first']:.4f} -> {s['loss_last']:.4f} "
          f"({100 * (1 - s['loss_last'] / s['loss_first']):.1f}% lower)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--micro-steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=3e-3, help="learning rate of the tiny Next3D run")
    ap.add_argument("--l2", type=float, default=0.05, help="L2 weight of the tiny Next3D run")
    args = ap.parse_args()
    os.environ.setdefault("FACEEDIT_HOME", tempfile.mkdtemp())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    weights = Path(tempfile.mkdtemp())
    base = PaperTrainConfig(steps=args.steps, batch=1, lr=3e-3, n_latents=2, checkpoint_every=10_000)
    base = replace(base, weights=replace(base.weights, l2=0.002))

    micro = tiny_models(weights / "micro", "micro")
    mcfg = MapperConfig(hidden=64, attn_dim=32, psi_tokens=4, layers=2, texture_levels=(14, 15))
    run(micro, replace(base, steps=args.micro_steps, batch=2, mapper=mcfg), "micro generator")

    models = tiny_models(weights / "next3d", "next3d")
    run(models, replace(base, n_latents=1, lr=args.lr, weights=replace(base.weights, l2=args.l2)), "tiny Next3D")

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
