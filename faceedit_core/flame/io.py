"""FLAME model and landmark-embedding files: reading the official layouts, writing our own.

Official FLAME pickles (2020, 2023) and DECA's `landmark_embedding.npy` are pickles; they are
read with the restricted unpickler of `unpickle.py`, never with plain `pickle` or
`np.load(allow_pickle=True)`. Our own copies are plain `.npz` files (no pickle).

Files are checked before anything is allocated from what they claim (docs/security.md): the
unpickler's budget (twice the file's size), `.npz` entries that unpack to at most
`NPZ_MAX_RATIO` times the archive, at most `MAX_VERTS` vertices, and every array's shape checked
against FLAME's layout before it is converted. Any failure is an `InputError` naming the file.
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
from faceedit_core.storage.unpickle import BUDGET_FLOOR, check_zip_sizes, reading_errors, safe_load

N_JOINTS = 5
MAX_VERTS = 100_000  # FLAME has 5023, the demo head 9554; shapedirs of 100k vertices is 480 MB as float32
NPZ_MAX_RATIO = 8  # a .npz's entries may unpack to 8x the archive (+1 MiB): savez_compressed of floats is ~1.1x
N_SHAPE_MAX = 300  # FLAME shapedirs columns [0, 300) are identity, [300, 400) expression
N_EXP_MAX = 100


@dataclass
class FlameModel:
    """A FLAME head model as arrays, in the official names.

    v_template [V,3], shapedirs [V,3,n_shape+n_exp], posedirs [V,3,36], J_regressor [5,V] (dense),
    weights [V,5], parents [5] (root -1), f [F,3] int64; optional UVs vt [T,2], ft [F,3].
    n_shape: how many leading shapedirs columns are identity (FLAME's files: 300, with 100 or 50
    expression columns after them; another head, such as the ICT head, may have fewer of each).
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
    n_shape: int = N_SHAPE_MAX

    @property
    def n_verts(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def n_exp(self) -> int:
        """Expression columns: shapedirs columns past the n_shape identity ones."""
        return int(self.shapedirs.shape[2]) - int(self.n_shape)

    def validate(self) -> "FlameModel":
        """Check every array's shape against FLAME's layout; raise InputError naming the key."""
        V = self.v_template.shape[0] if self.v_template.ndim == 2 else -1
        if V > MAX_VERTS:
            raise InputError(f"FLAME key 'v_template' has {V} vertices, more than {MAX_VERTS}")
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
        check_widths(self.shapedirs.shape[2], self.n_shape)
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


def check_widths(columns: int, n_shape: int) -> None:
    """shapedirs' columns = n_shape identity + expression; raise InputError otherwise.

    FLAME's files (n_shape 300) hold 100 expression columns (50 in some exports); a model with a
    narrower identity space (the ICT head's 100 modes) holds 1..N_EXP_MAX expression columns."""
    if isinstance(n_shape, bool) or not isinstance(n_shape, (int, np.integer)) or not 1 <= n_shape <= N_SHAPE_MAX:
        raise InputError(f"FLAME model's shape width n_shape must be an integer in 1..{N_SHAPE_MAX}, got {n_shape!r}")
    n_exp = columns - int(n_shape)
    if n_shape == N_SHAPE_MAX and n_exp not in (N_EXP_MAX, 50):
        raise InputError(f"FLAME key 'shapedirs' has {columns} components, expected 400 (300 shape + 100 expression)")
    if not 1 <= n_exp <= N_EXP_MAX:
        raise InputError(
            f"FLAME key 'shapedirs' has {columns} components: {n_shape} shape + {n_exp} expression, "
            f"expected 1..{N_EXP_MAX} expression columns"
        )


def _as_float(value, key: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise InputError(f"FLAME key '{key}' could not be read as an array of numbers")
    return arr


def _shape_width(value) -> int:
    """The `n_shape` entry of our own `.npz` (absent in FLAME's files: 300) as an int."""
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "iu":
        raise InputError(f"FLAME key 'n_shape' must be one integer, got {arr.dtype} of shape {arr.shape}")
    return int(arr)


def model_from_dict(data: dict, source: str = "") -> FlameModel:
    """Build a FlameModel from the official pickle dict (chumpy/sparse already made plain).

    Every array's shape is checked against FLAME's layout before any is converted (copied).
    """
    missing = [
        k
        for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
        if k not in data and not (k == "kintree_table" and "parents" in data)
    ]
    if missing:
        raise InputError(f"{source or 'FLAME model'} lacks the key(s) {missing}")
    tree = _as_float(data["parents"] if "parents" in data else data["kintree_table"], "kintree_table")
    if tree.ndim not in (1, 2) or tree.shape[-1] != N_JOINTS or tree.size > 2 * N_JOINTS:
        raise InputError(f"FLAME kinematic tree has shape {tree.shape}, expected ({N_JOINTS},) or (2, {N_JOINTS})")
    parents = (tree if tree.ndim == 1 else tree[0]).astype(np.int64)
    parents[0] = -1  # stored as uint32 -1 (4294967295) in the official files
    optional = {k: _as_float(data[k], k) for k in ("vt", "ft") if data.get(k) is not None}
    raw = FlameModel(
        v_template=_as_float(data["v_template"], "v_template"),
        shapedirs=_as_float(data["shapedirs"], "shapedirs"),
        posedirs=_as_float(data["posedirs"], "posedirs"),
        J_regressor=_as_float(data["J_regressor"], "J_regressor"),
        weights=_as_float(data["weights"], "weights"),
        parents=parents,
        f=_as_float(data["f"], "f"),
        vt=optional.get("vt"),
        ft=optional.get("ft"),
        meta={"source": source},
        n_shape=_shape_width(data.get("n_shape", N_SHAPE_MAX)),
    )
    raw.validate()  # shapes and index ranges on the arrays as read, before any copy
    floats = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "vt")
    for key in floats + ("f", "ft"):
        arr = getattr(raw, key)
        if arr is not None:
            setattr(raw, key, arr.astype(np.float32 if key in floats else np.int64))
    return raw


def load_flame_model(path: str | os.PathLike) -> FlameModel:
    """Read an official FLAME `.pkl` (2020/2023, via the restricted unpickler) or our `.npz`."""
    path = Path(path)
    if not path.is_file():
        raise MissingModelError(
            f"FLAME model {path} not found: download FLAME 2020 (generic_model.pkl) or FLAME 2023 "
            f"from the FLAME website (registration required) and put it in <models>/flame/"
        )
    with reading_errors(str(path)):
        if path.suffix.lower() == ".npz":
            data = _read_npz(path)
        else:
            data = safe_load(path)
            if not isinstance(data, dict):
                raise InputError(f"{path} does not hold a FLAME dict (got {type(data).__name__})")
        return model_from_dict(data, source=str(path))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """A plain `.npz` (no pickle), its entries' unpacked sizes checked first."""
    check_zip_sizes(path, NPZ_MAX_RATIO * path.stat().st_size + BUDGET_FLOOR, str(path))
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def save_flame_model(model: FlameModel, path: str | os.PathLike) -> Path:
    """Write a FlameModel as a plain `.npz` atomically."""
    model.validate()
    arrays = {f.name: getattr(model, f.name) for f in fields(model) if f.name not in ("meta", "n_shape")}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    if model.n_shape != N_SHAPE_MAX:  # FLAME-width files stay exactly as they were
        arrays["n_shape"] = np.int64(model.n_shape)
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
    with reading_errors(str(path)):
        return _landmark_embedding(path, dynamic_path)


def _landmark_embedding(path: Path, dynamic_path: str | os.PathLike | None) -> LandmarkEmbedding:
    if path.suffix.lower() == ".npz":
        data = _read_npz(path)
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
