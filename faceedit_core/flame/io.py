"""FLAME model and landmark-embedding files: reading the official layouts, writing our own.

Official FLAME pickles (2020, 2023) and DECA's `landmark_embedding.npy` are pickles; they are
read with the restricted unpickler of `unpickle.py`, never with plain `pickle` or
`np.load(allow_pickle=True)`. Our own copies are plain `.npz` files (no pickle).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from faceedit_core.errors import InputError, MissingModelError
from faceedit_core.storage.atomic import atomic_write
from faceedit_core.storage.unpickle import safe_load

N_JOINTS = 5
N_SHAPE_MAX = 300  # FLAME shapedirs columns [0, 300) are identity, [300, 400) expression
N_EXP_MAX = 100


@dataclass
class FlameModel:
    """A FLAME head model as arrays, in the official names.

    v_template [V,3], shapedirs [V,3,300+100], posedirs [V,3,36], J_regressor [5,V] (dense),
    weights [V,5], parents [5] (root -1), f [F,3] int64; optional UVs vt [T,2], ft [F,3].
    """

    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    f: np.ndarray
    vt: np.ndarray | None = None
    ft: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_verts(self) -> int:
        return int(self.v_template.shape[0])

    def validate(self) -> "FlameModel":
        """Check every array's shape against FLAME's layout; raise InputError naming the key."""
        V = self.v_template.shape[0] if self.v_template.ndim == 2 else -1
        expect = {
            "v_template": (V, 3),
            "shapedirs": (V, 3, None),
            "posedirs": (V, 3, 36),
            "J_regressor": (N_JOINTS, V),
            "weights": (V, N_JOINTS),
            "parents": (N_JOINTS,),
            "f": (None, 3),
        }
        for key, shape in expect.items():
            arr = getattr(self, key)
            if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
                raise InputError(f"FLAME key '{key}' has shape {arr.shape}, expected {shape} (V={V})")
        if self.shapedirs.shape[2] not in (N_SHAPE_MAX + N_EXP_MAX, N_SHAPE_MAX + 50):
            raise InputError(
                f"FLAME key 'shapedirs' has {self.shapedirs.shape[2]} components, "
                "expected 400 (300 shape + 100 expression)"
            )
        if self.parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(self.parents[1:], 1)):
            raise InputError(
                f"FLAME kinematic tree must have root -1 and parents before children, got {self.parents.tolist()}"
            )
        if self.f.min() < 0 or self.f.max() >= V:
            raise InputError(f"FLAME key 'f' indexes vertices outside [0, {V})")
        if (self.vt is None) != (self.ft is None):
            raise InputError("FLAME UVs need both 'vt' and 'ft'")
        if self.ft is not None and self.ft.shape != self.f.shape:
            raise InputError(f"FLAME key 'ft' has shape {self.ft.shape}, expected {self.f.shape} like 'f'")
        return self


def _as_float(value, key: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object:
        raise InputError(f"FLAME key '{key}' could not be read as an array")
    return arr.astype(np.float32)


def model_from_dict(data: dict, source: str = "") -> FlameModel:
    """Build a FlameModel from the official pickle dict (chumpy/sparse already made plain)."""
    missing = [
        k
        for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
        if k not in data and not (k == "kintree_table" and "parents" in data)
    ]
    if missing:
        raise InputError(f"{source or 'FLAME model'} lacks the key(s) {missing}")
    if "parents" in data:
        parents = np.asarray(data["parents"]).astype(np.int64)
    else:
        parents = np.asarray(data["kintree_table"])[0].astype(np.int64)
    parents[0] = -1  # stored as uint32 -1 (4294967295) in the official files
    model = FlameModel(
        v_template=_as_float(data["v_template"], "v_template"),
        shapedirs=_as_float(data["shapedirs"], "shapedirs"),
        posedirs=_as_float(data["posedirs"], "posedirs"),
        J_regressor=_as_float(data["J_regressor"], "J_regressor"),
        weights=_as_float(data["weights"], "weights"),
        parents=parents,
        f=np.asarray(data["f"]).astype(np.int64),
        vt=_as_float(data["vt"], "vt") if data.get("vt") is not None else None,
        ft=np.asarray(data["ft"]).astype(np.int64) if data.get("ft") is not None else None,
        meta={"source": source},
    )
    return model.validate()


def load_flame_model(path: str | os.PathLike) -> FlameModel:
    """Read an official FLAME `.pkl` (2020/2023, via the restricted unpickler) or our `.npz`."""
    path = Path(path)
    if not path.is_file():
        raise MissingModelError(
            f"FLAME model {path} not found: download FLAME 2020 (generic_model.pkl) or FLAME 2023 "
            f"from the FLAME website (registration required) and put it in <models>/flame/"
        )
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    else:
        data = safe_load(path)
        if not isinstance(data, dict):
            raise InputError(f"{path} does not hold a FLAME dict (got {type(data).__name__})")
    return model_from_dict(data, source=str(path))


def save_flame_model(model: FlameModel, path: str | os.PathLike) -> Path:
    """Write a FlameModel as a plain `.npz` atomically."""
    model.validate()
    arrays = {f.name: getattr(model, f.name) for f in fields(model) if f.name != "meta"}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    return atomic_savez(path, arrays)


def atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """np.savez to a temporary file, then rename: readers never see a half-written file."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))


# ---------------------------------------------------------------------------- landmarks
@dataclass
class LandmarkEmbedding:
    """Where the 68 iBUG landmarks sit on the mesh, as (face, barycentric) pairs.

    static_faces [51], static_bary [51,3]: landmarks 17-67 (brows, nose, eyes, mouth).
    dynamic_faces [79,17], dynamic_bary [79,17,3]: the jaw contour 0-16 for each yaw row
    (row r in 0..39 stands for +r degrees, r in 40..78 for -(r-39) degrees).
    full_faces [68], full_bary [68,3]: a fixed 68-point embedding (frontal contour).
    """

    static_faces: np.ndarray
    static_bary: np.ndarray
    dynamic_faces: np.ndarray
    dynamic_bary: np.ndarray
    full_faces: np.ndarray
    full_bary: np.ndarray

    def validate(self, n_faces: int | None = None) -> "LandmarkEmbedding":
        expect = {
            "static_faces": (51,),
            "static_bary": (51, 3),
            "dynamic_faces": (79, 17),
            "dynamic_bary": (79, 17, 3),
            "full_faces": (68,),
            "full_bary": (68, 3),
        }
        for key, shape in expect.items():
            if getattr(self, key).shape != shape:
                raise InputError(f"landmark key '{key}' has shape {getattr(self, key).shape}, expected {shape}")
        if n_faces is not None:
            for key in ("static_faces", "dynamic_faces", "full_faces"):
                arr = getattr(self, key)
                if arr.min() < 0 or arr.max() >= n_faces:
                    raise InputError(f"landmark key '{key}' indexes faces outside [0, {n_faces})")
        return self

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _plain(value) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _read_npy_object(path: Path):
    """Read a `.npy` holding a pickled 0-d object array, through the restricted unpickler."""
    with open(path, "rb") as f:
        version = npy_format.read_magic(f)
        header = npy_format.read_array_header_1_0(f) if version == (1, 0) else npy_format.read_array_header_2_0(f)
        if header[2] != np.dtype(object):
            raise InputError(f"{path} holds a plain {header[2]} array, not an embedding dict")
        return safe_load(io.BytesIO(f.read()), allow_torch=True)


def _unwrap(obj):
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        return obj[()]
    return obj


def load_landmark_embedding(
    path: str | os.PathLike, dynamic_path: str | os.PathLike | None = None
) -> LandmarkEmbedding:
    """Read DECA's `landmark_embedding.npy`, our `.npz`, or FLAME_PyTorch's pair
    (`flame_static_embedding.pkl` + `flame_dynamic_embedding.npy`).

    FLAME_PyTorch's pair has no fixed 68-point embedding: its full variant is built from the
    frontal contour row (row 0) followed by the 51 static points.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingModelError(f"landmark embedding {path} not found (DECA's data/landmark_embedding.npy)")
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    elif path.suffix.lower() == ".npy":
        data = _unwrap(_read_npy_object(path))
    else:
        data = safe_load(path)
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a landmark dict")
    if "lmk_face_idx" in data:  # FLAME_PyTorch / RingNet static file
        if dynamic_path is None:
            raise InputError(f"{path} is FLAME_PyTorch's static embedding: pass its flame_dynamic_embedding.npy too")
        dyn = _unwrap(_read_npy_object(Path(dynamic_path)))
        dyn_faces = _plain(dyn["lmk_face_idx"]).astype(np.int64)
        dyn_bary = _plain(dyn["lmk_b_coords"]).astype(np.float32)
        static_faces = _plain(data["lmk_face_idx"]).astype(np.int64)
        static_bary = _plain(data["lmk_b_coords"]).astype(np.float32)
        emb = LandmarkEmbedding(
            static_faces,
            static_bary,
            dyn_faces,
            dyn_bary,
            np.concatenate([dyn_faces[0], static_faces]),
            np.concatenate([dyn_bary[0], static_bary]),
        )
        return emb.validate()
    keys = (
        "static_lmk_faces_idx",
        "static_lmk_bary_coords",
        "dynamic_lmk_faces_idx",
        "dynamic_lmk_bary_coords",
        "full_lmk_faces_idx",
        "full_lmk_bary_coords",
    )
    if all(k in data for k in keys):
        vals = [_plain(data[k]) for k in keys]
        emb = LandmarkEmbedding(
            vals[0].astype(np.int64),
            vals[1].astype(np.float32),
            vals[2].astype(np.int64),
            vals[3].astype(np.float32),
            vals[4].reshape(68).astype(np.int64),
            vals[5].reshape(68, 3).astype(np.float32),
        )
        return emb.validate()
    if all(f.name in data for f in fields(LandmarkEmbedding)):
        return LandmarkEmbedding(**{f.name: np.asarray(data[f.name]) for f in fields(LandmarkEmbedding)}).validate()
    raise InputError(f"{path} has none of the known landmark layouts (keys: {sorted(data)[:8]})")


def save_landmark_embedding(emb: LandmarkEmbedding, path: str | os.PathLike) -> Path:
    """Write a LandmarkEmbedding as a plain `.npz` (no pickle) atomically."""
    return atomic_savez(path, emb.validate().to_npz_dict())
