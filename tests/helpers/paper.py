"""Tiny paper-tier models for tests: the procedural head's FLAME, the tiny Next3D, tiny CLIP and ArcFace.

`tiny_models()` gives them in memory (built once per session); `write_models_dir(dir)` writes
the procedural head, the tiny Next3D, CLIP and ArcFace as files in the layouts a user supplies (FLAME
pickle, DECA's landmark .npy, a Next3D checkpoint, CLIP and ArcFace state dicts) under the folders `ModelsDir` looks in.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from faceedit_core.flame.default_head import procedural_head  # the FLAME-layout test head
from faceedit_core.flame.layer import FlameLayer
from faceedit_core.paper.models import PaperModels

_cache: dict = {}


def tiny_generator(layer: FlameLayer, seed: int = 0):
    from faceedit_core.next3d.generator import Next3DGenerator
    from faceedit_core.next3d.topology import Next3DTopology

    return Next3DGenerator.from_config("tiny", topology=Next3DTopology.from_flame_layer(layer), seed=seed)


def tiny_models(tmp_dir: Path) -> PaperModels:
    """PaperModels as a user's folder would give them, at test size: the procedural head's FLAME, the
    tiny Next3D and tiny random CLIP and ArcFace (weights files under tmp_dir), built once per
    session."""
    from faceedit_core.paper.arcface import load_arcface, tiny_arcface_file
    from faceedit_core.paper.clip_model import load_clip, tiny_clip_file

    if "models" not in _cache:
        head = procedural_head()
        layer = FlameLayer(head.model, head.landmarks)
        hashes = {"flame": head.content_hash, "next3d": "tiny seed 0", "clip": "tiny", "arcface": "tiny"}
        clip = load_clip(tiny_clip_file(tmp_dir / "clip"))
        arcface = load_arcface(tiny_arcface_file(tmp_dir / "arcface"))
        _cache["models"] = PaperModels(layer, tiny_generator(layer), clip, arcface, hashes=hashes)
    return _cache["models"]


def _flame_pickle(path: Path) -> None:
    """The procedural head as an official FLAME 2023-style pickle (float64 arrays, kintree_table, uint32 faces, UVs)."""
    m = procedural_head().model
    data = {
        "v_template": m.v_template.astype(np.float64),
        "shapedirs": m.shapedirs.astype(np.float64),
        "posedirs": m.posedirs.astype(np.float64),
        "J_regressor": m.J_regressor.astype(np.float64),
        "weights": m.weights.astype(np.float64),
        "f": m.f.astype(np.uint32),
        "kintree_table": np.stack([np.where(m.parents < 0, 2**32 - 1, m.parents), np.arange(5)]).astype(np.int64),
        "vt": m.vt.astype(np.float64),
        "ft": m.ft.astype(np.uint32),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data, protocol=2))


def _deca_landmarks(path: Path) -> None:
    """The procedural head's landmark embedding as DECA's landmark_embedding.npy (a pickled dict in a .npy)."""
    lm = procedural_head().landmarks
    data = {
        "static_lmk_faces_idx": lm.static_faces,
        "static_lmk_bary_coords": lm.static_bary,
        "dynamic_lmk_faces_idx": lm.dynamic_faces,
        "dynamic_lmk_bary_coords": lm.dynamic_bary,
        "full_lmk_faces_idx": lm.full_faces[None],
        "full_lmk_bary_coords": lm.full_bary[None],
    }
    np.save(path, np.array(data, dtype=object), allow_pickle=True)


def write_models_dir(root: Path, guidance: bool = True) -> Path:
    """A complete paper-tier model folder of tiny files; returns root."""
    from faceedit_core.next3d.checkpoint import save_checkpoint
    from faceedit_core.paper.arcface import tiny_arcface_file
    from faceedit_core.paper.clip_model import tiny_clip_file

    _flame_pickle(root / "flame" / "generic_model.pkl")
    _deca_landmarks(root / "flame" / "landmark_embedding.npy")
    head = procedural_head()
    save_checkpoint(tiny_generator(FlameLayer(head.model, head.landmarks)), root / "next3d" / "tiny_next3d")
    if guidance:
        tiny_clip_file(root / "clip")
        tiny_arcface_file(root / "arcface")
    return root
