"""A plain Wavefront OBJ reader for the ICT Face Model files (no third-party mesh library).

Keeps the file's vertex order (upstream's vertex indices stay valid), reads `vt` UVs and
`f v/vt ...` polygons, and triangulates quads along their shorter diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ObjMesh:
    """verts [V,3] float64 (file units), uvs [T,2], polygons as lists of (vertex, uv) index
    arrays (0-based) and the material name of each polygon."""

    verts: np.ndarray
    uvs: np.ndarray
    poly_v: list[np.ndarray]
    poly_t: list[np.ndarray]
    poly_material: list[str]


def _floats(lines: list[bytes], width: int, what: str) -> np.ndarray:
    flat = np.array(b" ".join(lines).split(), dtype=np.float64)
    if flat.size != width * len(lines):
        raise ValueError(f"OBJ {what} lines must hold {width} numbers each")
    return flat.reshape(-1, width)


def read_obj_vertices(data: bytes) -> np.ndarray:
    """Only the `v` lines of an OBJ file, in file order: [V,3] float64."""
    return _floats([ln[2:] for ln in data.split(b"\n") if ln.startswith(b"v ")], 3, "v")


def read_obj(data: bytes) -> ObjMesh:
    """Vertices, UVs and polygons (with their `usemtl` material) of an OBJ file's bytes."""
    v_lines, t_lines, poly_v, poly_t, mats = [], [], [], [], []
    material = ""
    for ln in data.split(b"\n"):
        if ln.startswith(b"v "):
            v_lines.append(ln[2:])
        elif ln.startswith(b"vt "):
            t_lines.append(ln[3:])
        elif ln.startswith(b"f "):
            corners = [c.split(b"/") for c in ln[2:].split()]
            poly_v.append(np.array([int(c[0]) - 1 for c in corners], dtype=np.int64))
            poly_t.append(np.array([int(c[1]) - 1 if len(c) > 1 and c[1] else -1 for c in corners], dtype=np.int64))
            mats.append(material)
        elif ln.startswith(b"usemtl "):
            material = ln[7:].strip().decode()
    return ObjMesh(
        _floats(v_lines, 3, "v"),
        _floats(t_lines, 2, "vt")[:, :2] if t_lines else np.zeros((0, 2)),
        poly_v,
        poly_t,
        mats,
    )


def triangulate(mesh: ObjMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangles of the polygons: f [F,3], ft [F,3], tri_poly [F] (source polygon index).

    Triangles keep the polygon's winding; a quad (a,b,c,d) is split along its shorter diagonal
    on the file's own vertex positions (a,b,c)+(a,c,d) or (a,b,d)+(b,c,d); larger polygons fan.
    """
    f, ft, src = [], [], []
    for i, (pv, pt) in enumerate(zip(mesh.poly_v, mesh.poly_t)):
        n = len(pv)
        if n == 4:
            p = mesh.verts[pv]
            if np.sum((p[0] - p[2]) ** 2) <= np.sum((p[1] - p[3]) ** 2):
                tris = ((0, 1, 2), (0, 2, 3))
            else:
                tris = ((0, 1, 3), (1, 2, 3))
        else:
            tris = tuple((0, k, k + 1) for k in range(1, n - 1))
        for t in tris:
            f.append(pv[list(t)])
            ft.append(pt[list(t)])
            src.append(i)
    return np.array(f, np.int64), np.array(ft, np.int64), np.array(src, np.int64)
