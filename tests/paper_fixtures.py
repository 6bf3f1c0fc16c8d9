"""Tiny paper-tier models for tests: FLAME, a generator, tiny CLIP and ArcFace.

`tiny_models()` gives them in memory (built once per session); `write_models_dir(dir)` writes
the demo head, the tiny Next3D, CLIP and ArcFace as files in the layouts a user supplies (FLAME pickle, DECA's landmark .npy, a Next3D
checkpoint, CLIP and ArcFace state dicts) under the folders `ModelsDir` looks in.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceedit_core.assets import demo_head
from faceedit_core.flame.layer import FlameLayer
from faceedit_core.paper_models import PaperModels

_cache: dict = {}


def tiny_generator(layer: FlameLayer, seed: int = 0):
    from faceedit_core.next3d.generator import Next3DGenerator
    from faceedit_core.next3d.topology import Next3DTopology
    return Next3DGenerator.from_config("tiny", topology=Next3DTopology.from_flame_layer(layer), seed=seed)


class MicroGenerator(nn.Module):
    """Next3DGenerator's interface (mapping, planes, render_view, synthesis) at a toy's cost.

    For the training-loop tests, which need dozens of optimisation steps in seconds: the tiny
    Next3D keeps the release's fixed sizes (256^2 planes, 512^2 output) and costs tens of seconds
    per step on this CPU, so it is exercised by its own, shorter tests. Frozen random maps:
    ws [B,28,512] from (z, c) with truncation towards w_avg; the image [B,3,32,32] depends on the
    texture ws (14..27), on every vertex (so on the expression) and on the camera.
    """

    z_dim = 512

    def __init__(self, n_inputs: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("map_w", torch.randn(512 + 25, 512, generator=g) / (537 ** 0.5))
        self.register_buffer("w_avg", torch.randn(512, generator=g) * 0.1)
        self.register_buffer("tex", torch.randn(512, 3 * 8 * 8, generator=g) / (512 ** 0.5))
        self.register_buffer("geo", torch.randn(n_inputs * 3, 3 * 8 * 8, generator=g) * (20 / n_inputs ** 0.5))

    def mapping(self, z, c, truncation_psi: float = 1.0, truncation_cutoff=None):
        w = torch.nn.functional.leaky_relu(torch.cat([z, c], 1) @ self.map_w, 0.2)
        w = self.w_avg + truncation_psi * (w - self.w_avg)
        return w[:, None].repeat(1, 28, 1)

    def planes(self, ws, verts):
        return (ws[:, 14:].mean(1) @ self.tex + verts.flatten(1) @ self.geo).view(-1, 3, 8, 8)

    def render_view(self, planes, ws, c):
        img = torch.nn.functional.interpolate(planes, size=(32, 32), mode="bilinear", align_corners=False)
        return {"image": torch.tanh(img + c[:, 3, None, None, None])}

    def synthesis(self, ws, c, verts):
        return self.render_view(self.planes(ws, verts), ws, c)


def tiny_models(tmp_dir: Path, generator: str = "micro") -> PaperModels:
    """PaperModels with tiny random networks (weights files under tmp_dir), built once per session.

    generator "micro": a small random FLAME (60 vertices) and MicroGenerator (the loop tests);
    "next3d": the demo head and the tiny Next3D (as a user's folder would give them).
    """
    from faceedit_core.guidance.arcface import load_arcface, tiny_arcface_file
    from faceedit_core.guidance.clip_model import load_clip, tiny_clip_file
    if generator not in _cache:
        if generator == "micro":
            from tests.flame_fixtures import random_flame
            layer = FlameLayer(*random_flame())
            gen, hashes = MicroGenerator(layer.n_verts + 68), {"flame": "random seed 0", "next3d": "micro seed 0"}
        else:
            head = demo_head()
            layer = FlameLayer(head.model, head.landmarks)
            gen, hashes = tiny_generator(layer), {"flame": head.content_hash, "next3d": "tiny seed 0"}
        clip = load_clip(tiny_clip_file(tmp_dir / "clip"))
        arcface = load_arcface(tiny_arcface_file(tmp_dir / "arcface"))
        _cache[generator] = PaperModels(layer, gen, clip, arcface, hashes={**hashes, "clip": "tiny", "arcface": "tiny"})
    return _cache[generator]


def _flame_pickle(path: Path) -> None:
    """The demo head as an official FLAME 2023-style pickle (float64 arrays, kintree_table, uint32 faces, UVs)."""
    m = demo_head().model
    data = {"v_template": m.v_template.astype(np.float64), "shapedirs": m.shapedirs.astype(np.float64),
            "posedirs": m.posedirs.astype(np.float64), "J_regressor": m.J_regressor.astype(np.float64),
            "weights": m.weights.astype(np.float64), "f": m.f.astype(np.uint32),
            "kintree_table": np.stack([np.where(m.parents < 0, 2**32 - 1, m.parents), np.arange(5)]).astype(np.int64),
            "vt": m.vt.astype(np.float64), "ft": m.ft.astype(np.uint32), "bs_style": "lbs", "bs_type": "lrotmin"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data, protocol=2))


def _deca_landmarks(path: Path) -> None:
    """The demo head's landmark embedding as DECA's landmark_embedding.npy (a pickled dict in a .npy)."""
    lm = demo_head().landmarks
    data = {"static_lmk_faces_idx": lm.static_faces, "static_lmk_bary_coords": lm.static_bary,
            "dynamic_lmk_faces_idx": lm.dynamic_faces, "dynamic_lmk_bary_coords": lm.dynamic_bary,
            "full_lmk_faces_idx": lm.full_faces[None], "full_lmk_bary_coords": lm.full_bary[None]}
    np.save(path, np.array(data, dtype=object), allow_pickle=True)


def write_models_dir(root: Path, guidance: bool = True) -> Path:
    """A complete paper-tier model folder of tiny files; returns root."""
    from faceedit_core.guidance.arcface import tiny_arcface_file
    from faceedit_core.guidance.clip_model import tiny_clip_file
    from faceedit_core.next3d.checkpoint import save_checkpoint
    _flame_pickle(root / "flame" / "generic_model.pkl")
    _deca_landmarks(root / "flame" / "landmark_embedding.npy")
    head = demo_head()
    save_checkpoint(tiny_generator(FlameLayer(head.model, head.landmarks)), root / "next3d" / "tiny_next3d")
    if guidance:
        tiny_clip_file(root / "clip")
        tiny_arcface_file(root / "arcface")
    return root
