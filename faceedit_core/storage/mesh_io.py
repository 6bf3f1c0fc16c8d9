"""Wavefront OBJ with UVs: write (atomically) and read back."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from faceedit_core.errors import InputError
from faceedit_core.storage.atomic import atomic_write
from faceedit_core.storage.reading import reading_errors


def write_obj(
    path: str | os.PathLike,
    verts: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray | None = None,
    uv_faces: np.ndarray | None = None,
) -> Path:
    """verts [V,3], faces [F,3] (0-based), optional uvs [T,2] and uv_faces [F,3]."""
    verts, faces = np.asarray(verts, np.float64), np.asarray(faces, np.int64)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise InputError(f"verts must have shape [V,3], got {verts.shape}")
    if not np.isfinite(verts).all():
        raise InputError("verts contain NaN or Inf")
    buf = io.StringIO()
    buf.write("# FaceEdit OBJ (metres, y up, face towards +z)\n")
    np.savetxt(buf, verts, fmt="v %.6f %.6f %.6f")
    if uvs is not None:
        np.savetxt(buf, np.asarray(uvs), fmt="vt %.6f %.6f")
        idx = np.stack([faces + 1, np.asarray(uv_faces) + 1], axis=-1).reshape(len(faces), 6)
        np.savetxt(buf, idx, fmt="f %d/%d %d/%d %d/%d")
    else:
        np.savetxt(buf, faces + 1, fmt="f %d %d %d")
    return atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def read_obj(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """-> verts [V,3], faces [F,3], uvs [T,2] or None, uv_faces [F,3] or None (triangles only).

    A malformed file (not UTF-8, a row of the wrong length, a number that does not parse, an index
    outside the vertices or UVs, UVs on some faces only) is an InputError naming the file."""
    with reading_errors(str(path)):
        verts, uvs, faces, uv_faces = [], [], [], []
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                verts.append([float(p) for p in parts[1:4]])
            elif parts[0] == "vt":
                uvs.append([float(p) for p in parts[1:3]])
            elif parts[0] == "f":
                corners = [p.split("/") for p in parts[1:]]
                if len(corners) != 3:
                    raise InputError(f"{path}: only triangles are supported, got a face with {len(corners)} corners")
                faces.append([int(c[0]) - 1 for c in corners])
                if len(corners[0]) > 1 and corners[0][1]:
                    uv_faces.append([int(c[1]) - 1 for c in corners])
        return (
            _rows(verts, 3, np.float64, path, "v"),
            _indices(faces, len(verts), path, "f"),
            _rows(uvs, 2, np.float64, path, "vt") if uvs else None,
            _indices(uv_faces, len(uvs), path, "f (texture)", len(faces)) if uv_faces else None,
        )


def _rows(rows: list, width: int, dtype, path, what: str) -> np.ndarray:
    """`rows` as an [N, width] array; a row of another length is an InputError naming the line kind."""
    if any(len(r) != width for r in rows):
        raise InputError(f"{path}: every '{what}' line needs {width} numbers")
    return np.array(rows, dtype).reshape(len(rows), width)


def _indices(rows: list, count: int, path, what: str, n_faces: int | None = None) -> np.ndarray:
    """Face rows [F,3] of 0-based indices, each within [0, count); `n_faces`: as many as the faces."""
    out = _rows(rows, 3, np.int64, path, what)
    if out.size and (out.min() < 0 or out.max() >= count):
        raise InputError(f"{path}: '{what}' indices must lie in 1..{count} (negative indices are not supported)")
    if n_faces is not None and len(out) != n_faces:
        raise InputError(f"{path}: texture coordinates on {len(out)} of {n_faces} faces (all or none)")
    return out
