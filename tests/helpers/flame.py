"""A small random FLAME model in the official layout, for tests that need no golden files."""

from __future__ import annotations

import numpy as np

from faceedit_core.flame.io import FlameModel, LandmarkEmbedding


def random_flame(n_verts: int = 60, n_faces: int = 80, seed: int = 0) -> tuple[FlameModel, LandmarkEmbedding]:
    """A random model: jaw joint drives the lower half (y < 0), eyes drive two small groups."""
    rng = np.random.default_rng(seed)
    v = rng.normal(scale=0.05, size=(n_verts, 3)).astype(np.float32)
    weights = np.zeros((n_verts, 5), np.float32)
    weights[:, 1] = 1.0
    lower = v[:, 1] < 0
    weights[lower, 1], weights[lower, 2] = 0.0, 1.0
    weights[:3], weights[3:6] = 0, 0
    weights[:3, 3], weights[3:6, 4] = 1.0, 1.0
    J = np.zeros((5, n_verts), np.float32)
    for j, idx in enumerate([range(10, 20), range(20, 30), range(30, 40), range(0, 3), range(3, 6)]):
        J[j, list(idx)] = 1.0 / len(idx)
    f = rng.integers(0, n_verts, size=(n_faces, 3))
    model = FlameModel(
        v_template=v,
        shapedirs=rng.normal(scale=1e-3, size=(n_verts, 3, 400)).astype(np.float32),
        posedirs=rng.normal(scale=1e-3, size=(n_verts, 3, 36)).astype(np.float32),
        J_regressor=J,
        weights=weights,
        parents=np.array([-1, 0, 1, 1, 1]),
        f=f,
    )
    lm = LandmarkEmbedding(
        static_faces=rng.integers(0, n_faces, 51),
        static_bary=np.full((51, 3), 1 / 3, np.float32),
        dynamic_faces=rng.integers(0, n_faces, (79, 17)),
        dynamic_bary=np.full((79, 17, 3), 1 / 3, np.float32),
        full_faces=rng.integers(0, n_faces, 68),
        full_bary=np.full((68, 3), 1 / 3, np.float32),
    )
    return model, lm
