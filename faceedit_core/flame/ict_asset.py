"""The committed ICT head asset: `data/ict/ict_head.npz` + `manifest.json` (+ `LICENSE`).

Arrays (metres, FLAME axes; written by tools/ict/convert_ict.py, read by `read_asset`):
  v_template [V,3] f32; f [F,3], ft [F,3] i32; vt [T,2] f32; vertex_part [V], face_part [F] u8
  identity [100,V,3] f16 (ICT's identity PCA modes: identityNNN.obj - neutral)
  exp_index [N] u16, exp_delta [N,3] f16, exp_ptr [E+1] i64: expression shapes (the upstream
      list, jawOpen included) stored sparse: shape e moves exp_index[exp_ptr[e]:exp_ptr[e+1]]
  J_regressor [5,V] f32, weights [V,5] f32, jaw_corrective [V,3] f16, jaw_axis [3], jaw_centre [3],
      jaw_angle [] f64
  static_faces [51], static_bary [51,3], dynamic_faces [79,17], dynamic_bary [79,17,3],
      full_faces [68], full_bary [68,3]: the LandmarkEmbedding
  landmark_vertices [68] i32: upstream's Multi-PIE vertex ids
  pca_mix [S,S] f64 (semantic shapes -> PCA basis), pca_explained [S] f64, semantic_gram [S,S]
      f64 (shapes^T shapes of the S semantic shapes, flattened [3V,S], as stored)
The manifest holds names, part ranges, FACS table, upstream hashes and the measured figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data" / "ict"
ASSET_NAME = "ict_head.npz"
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


def asset_paths(folder: str | Path | None = None) -> tuple[Path, Path]:
    folder = DATA_DIR if folder is None else Path(folder)
    return folder / ASSET_NAME, folder / MANIFEST_NAME


def read_asset(folder: str | Path | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, manifest) of the asset in `folder` (default: the package's data/ict)."""
    npz_path, manifest_path = asset_paths(folder)
    if not npz_path.is_file() or not manifest_path.is_file():
        raise FileNotFoundError(f"ICT head asset missing in {npz_path.parent} (run tools/ict/convert_ict.py)")
    with np.load(npz_path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{manifest_path} has format {manifest.get('format_version')}, expected {FORMAT_VERSION}")
    return arrays, manifest


def sparse_pack(deltas: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """deltas [E,V,3] -> (index [N] u16, delta [N,3] f16, ptr [E+1] i64): the vertices of each
    shape whose largest offset component exceeds tol."""
    idx, vals, ptr = [], [], [0]
    for d in deltas:
        keep = np.nonzero(np.abs(d).max(1) > tol)[0]
        idx.append(keep.astype(np.uint16))
        vals.append(d[keep].astype(np.float16))
        ptr.append(ptr[-1] + len(keep))
    return np.concatenate(idx), np.concatenate(vals), np.array(ptr, np.int64)


def sparse_rows(
    index: np.ndarray,
    delta: np.ndarray,
    ptr: np.ndarray,
    n_verts: int,
    shapes: list[int] | None = None,
    out: np.ndarray | None = None,
    dtype=np.float32,
) -> np.ndarray:
    """The expression shapes (all, or the listed ones in that order) as dense offsets [len,V,3],
    written into `out` [len,V,3] (zeros elsewhere) when given."""
    shapes = list(range(len(ptr) - 1)) if shapes is None else list(shapes)
    if out is None:
        out = np.zeros((len(shapes), n_verts, 3), dtype)
    for row, e in enumerate(shapes):
        a, b = ptr[e], ptr[e + 1]
        out[row, index[a:b].astype(np.int64)] = delta[a:b]
    return out


def sparse_unpack(
    index: np.ndarray,
    delta: np.ndarray,
    ptr: np.ndarray,
    n_verts: int,
    shapes: list[int] | None = None,
    dtype=np.float32,
) -> np.ndarray:
    """The expression shapes as dense [V,3,len] offsets (a view of `sparse_rows`' [len,V,3])."""
    return sparse_rows(index, delta, ptr, n_verts, shapes, dtype=dtype).transpose(1, 2, 0)


def array_digest(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """sha256 of each array's dtype, shape and bytes (zip bytes differ run to run; these do not)."""
    import hashlib

    out = {}
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
        out[k] = h.hexdigest()
    return out
