"""FLAME models in the official layout for tests: a small random one (no golden files needed) and the
project's FLAME-format stand-in written as a user's FLAME files are (`write_flame_standin`)."""

from __future__ import annotations

import contextlib
import copyreg
import pickle
import sys
import types
from pathlib import Path

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


# ---------------------------------------------------------------------------- the FLAME-format stand-in as files
@contextlib.contextmanager
def _chumpy_stand_in():
    """A module `chumpy.ch` with a class `Ch` that pickles as real chumpy arrays do (NEWOBJ, then
    BUILD with the state dict chumpy's __getstate__ gives), present only while writing."""
    package, module = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.__dict__.update(
                x=np.asarray(x, np.float64),
                _dirty_vars={"x"},
                _itr=None,
                _make_dense=False,
                _make_sparse=False,
                _depends_on_deps={},
            )

        def __reduce_ex__(self, protocol):
            return (copyreg.__newobj__, (type(self),), dict(self.__dict__))

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    module.Ch, package.ch = Ch, module
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": package, "chumpy.ch": module})
    try:
        yield Ch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def write_flame_standin(
    folder: Path, name: str = "generic_model.pkl", variant: str = "2020", style: str = "2020", landmarks: bool = True
) -> Path:
    """The FLAME-format stand-in as a user has FLAME: `folder/name` in the official pickle layout and,
    with `landmarks`, DECA's `landmark_embedding.npy` beside it (torch tensors in its dynamic entries,
    as DECA's file has). style '2020': a Python-2-protocol pickle with chumpy arrays and a scipy
    sparse J_regressor (as generic_model.pkl); '2023': plain numpy arrays and a sparse regressor."""
    import scipy.sparse
    import torch

    from faceedit_core.flame.standin import build_flame_standin, deca_landmark_dict, official_pickle_dict

    head = build_flame_standin(variant)
    data = official_pickle_dict(head.model)
    data["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if style == "2020":
        with _chumpy_stand_in() as Ch:
            for key in ("v_template", "shapedirs", "posedirs", "weights", "J"):
                data[key] = Ch(data[key])
            blob = pickle.dumps(data, protocol=2)
    else:
        blob = pickle.dumps(data, protocol=4)
    (folder / name).write_bytes(blob)
    if landmarks:
        lm = deca_landmark_dict(head.landmarks)
        lm["dynamic_lmk_faces_idx"] = torch.from_numpy(lm["dynamic_lmk_faces_idx"])
        lm["dynamic_lmk_bary_coords"] = torch.from_numpy(lm["dynamic_lmk_bary_coords"])
        np.save(folder / "landmark_embedding.npy", np.array(lm, dtype=object), allow_pickle=True)
    return folder / name
