"""FLAME forward latency on CPU, batch 1 and 64, for a 5023-vertex model in the FLAME layout.

Run: .venv/bin/python benchmarks/bench_flame.py
The model is random arrays with the real FLAME sizes (5023 vertices, 9976 faces, 400
blendshapes), built here: the cost of LBS does not depend on the values.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, timeit  # noqa: E402

from faceedit_core.flame import FlameLayer  # noqa: E402
from faceedit_core.flame.io import FlameModel, LandmarkEmbedding  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402


def flame_sized_model(seed: int = 0) -> tuple[FlameModel, LandmarkEmbedding]:
    rng = np.random.default_rng(seed)
    V, F = 5023, 9976
    weights = rng.dirichlet(np.ones(5), size=V).astype(np.float32)
    J = rng.dirichlet(np.ones(V), size=5).astype(np.float32)
    model = FlameModel(
        rng.normal(size=(V, 3)).astype(np.float32) * 0.1,
        rng.normal(size=(V, 3, 400)).astype(np.float32) * 1e-3,
        rng.normal(size=(V, 3, 36)).astype(np.float32) * 1e-3,
        J,
        weights,
        np.array([-1, 0, 1, 1, 1]),
        rng.integers(0, V, size=(F, 3)),
    )
    lm = LandmarkEmbedding(
        rng.integers(0, F, 51),
        np.full((51, 3), 1 / 3, np.float32),
        rng.integers(0, F, (79, 17)),
        np.full((79, 17, 3), 1 / 3, np.float32),
        rng.integers(0, F, 68),
        np.full((68, 3), 1 / 3, np.float32),
    )
    return model, lm


def main() -> dict:
    torch.set_num_threads(2)
    layer = FlameLayer(*flame_sized_model())
    results = {}
    with torch.no_grad():
        for batch in (1, 64):
            p = FlameParams.zeros(batch, 300, 100)
            p.expression.normal_()
            p.jaw_pose[:, 0] = 0.2
            results[f"flame_forward_b{batch}"] = r = timeit(lambda: layer(p), repeats=15 if batch == 1 else 7)
            print(f"FLAME forward, 5023 verts, batch {batch:2d}: {fmt(r)}  ({r['median_ms'] / batch:.3f} ms per head)")
        # the layer keeps the last identity's shaped template: a new identity every call pays the shape matmul
        identities = [FlameParams.zeros(1, 300, 100) for _ in range(8)]
        for i, q in enumerate(identities):
            q.shape.normal_(generator=torch.Generator().manual_seed(i))
        turn = iter(range(1 << 30))
        results["flame_forward_b1_new_identity"] = r = timeit(lambda: layer(identities[next(turn) % 8]), repeats=15)
        print(f"FLAME forward, 5023 verts, batch  1, a new identity each call: {fmt(r)}")
    return results


if __name__ == "__main__":
    main()
