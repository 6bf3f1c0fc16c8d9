"""The demo head's 68-landmark embedding in DECA's layout (iBUG-68 order).

Each landmark is pinned to one skin vertex (a face with a one-hot barycentric), chosen by
position on the rest head: brows, nose ridge and base, the snapped lid margins, the lip
contours and the two lip-edge rings. The 17 jaw-contour points are, for each of the 79 yaw
rows, the silhouette vertices of the head turned by that yaw, as DECA's table intends.
"""

from __future__ import annotations

import numpy as np

from faceedit_core.flame.io import FlameModel, LandmarkEmbedding
from faceedit_core.flame.procedural_shape import (
    BROW_Y,
    CHIN_Y,
    EYE_HALF_WIDTH,
    EYE_X,
    EYE_Y,
    MOUTH_HALF_WIDTH,
    MOUTH_Y,
    NOSE_TIP_Y,
    SkinGrid,
)

W = EYE_HALF_WIDTH


def _static_targets() -> list[tuple[float, float, str]]:
    """(x, y, where) for landmarks 17..67; `where` picks the candidate vertex set."""
    t: list[tuple[float, float, str]] = []
    for xs in ([-0.056, -0.045, -0.034, -0.024, -0.014], [0.014, 0.024, 0.034, 0.045, 0.056]):  # 17-26
        for x in xs:
            t.append((x, BROW_Y - 0.002 + 0.004 * (1 - ((abs(x) - 0.032) / 0.026) ** 2), "front"))
    for y in (0.030, 0.019, 0.008, NOSE_TIP_Y - 0.003):  # 27-30
        t.append((0.0, y, "front"))
    for x, y in ((-0.012, -0.012), (-0.006, -0.014), (0.0, -0.0145), (0.006, -0.014), (0.012, -0.012)):  # 31-35
        t.append((x, y, "front"))
    for side, order in (
        (-1, ("outer", "up_outer", "up_inner", "inner", "low_inner", "low_outer")),  # 36-41
        (1, ("inner", "up_inner", "up_outer", "outer", "low_outer", "low_inner")),
    ):  # 42-47
        for name in order:
            dx = {
                "outer": W,
                "inner": -W,
                "up_outer": W / 3,
                "up_inner": -W / 3,
                "low_outer": W / 3,
                "low_inner": -W / 3,
            }[name]
            where = "upper" if name.startswith("up") else "lower" if name.startswith("low") else "corner"
            t.append((side * (EYE_X + dx), EYE_Y, f"{where}{side:+d}"))
    mw = MOUTH_HALF_WIDTH
    outer_up = [
        (-mw, MOUTH_Y, "upper_edge"),
        (-0.015, MOUTH_Y + 0.006, "front"),
        (-0.006, MOUTH_Y + 0.0095, "front"),
        (0.0, MOUTH_Y + 0.0085, "front"),
        (0.006, MOUTH_Y + 0.0095, "front"),
        (0.015, MOUTH_Y + 0.006, "front"),
        (mw, MOUTH_Y, "upper_edge"),
    ]  # 48-54
    outer_low = [
        (0.015, MOUTH_Y - 0.008, "front"),
        (0.007, MOUTH_Y - 0.0115, "front"),
        (0.0, MOUTH_Y - 0.012, "front"),
        (-0.007, MOUTH_Y - 0.0115, "front"),
        (-0.015, MOUTH_Y - 0.008, "front"),
    ]  # 55-59
    inner = [
        (-mw + 0.004, 0, "upper_edge"),
        (-0.008, 0, "upper_edge"),
        (0.0, 0, "upper_edge"),
        (0.008, 0, "upper_edge"),
        (mw - 0.004, 0, "upper_edge"),
        (0.008, 0, "lower_edge"),
        (0.0, 0, "lower_edge"),
        (-0.008, 0, "lower_edge"),
    ]  # 60-67
    return t + outer_up + outer_low + inner


def _vertex_face(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each vertex one face containing it and the vertex's corner in that face."""
    V = faces.max() + 1
    face_of, corner_of = np.full(V, -1), np.zeros(V, int)
    for corner in range(3):
        free = face_of[faces[:, corner]] < 0
        face_of[faces[free, corner]] = np.nonzero(free)[0]
        corner_of[faces[free, corner]] = corner
    return face_of, corner_of


def landmark_embedding(model: FlameModel, topo, grid: SkinGrid) -> LandmarkEmbedding:
    verts = model.v_template.astype(np.float64)
    R, C = topo.grid_shape
    skin = topo.skin_index
    ring_of = np.repeat(np.arange(R), C)
    dived, pocket = grid.dived.reshape(-1), grid.pocket.reshape(-1) > 0
    r_mid = int(np.argmin(np.abs(topo.ring_y - MOUTH_Y)))
    x, y, z = verts[skin].T
    sets = {
        "front": skin[(z > 0.02) & ~dived & ~pocket],
        "upper_edge": skin[(ring_of == r_mid - 1) & (z > 0.02)],
        "lower_edge": skin[(ring_of == r_mid + 1) & (z > 0.02)],
    }
    for side in (1, -1):
        sets[f"upper{side:+d}"] = np.array([topo.skin_index[r * C + c] for r, c in grid.upper_margin[side]])
        sets[f"lower{side:+d}"] = np.array([topo.skin_index[r * C + c] for r, c in grid.lower_margin[side]])
        sets[f"corner{side:+d}"] = np.concatenate([sets[f"upper{side:+d}"], sets[f"lower{side:+d}"]])

    def nearest(tx, ty, where):
        cand = sets[where]
        if where.startswith(("upper_edge", "lower_edge")):
            return cand[np.argmin(np.abs(verts[cand, 0] - tx))]
        if where.startswith(("upper", "lower")):  # lid margins: nearest in x
            return cand[np.argmin(np.abs(verts[cand, 0] - tx))]
        if where.startswith("corner"):  # the margin vertex furthest towards the corner
            return cand[np.argmax(np.sign(tx - np.sign(tx) * EYE_X) * verts[cand, 0])]
        return cand[np.argmin((verts[cand, 0] - tx) ** 2 + (verts[cand, 1] - ty) ** 2)]

    static_v = np.array([nearest(*t) for t in _static_targets()])
    face_of, corner_of = _vertex_face(model.f)

    def embed(vids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bary = np.zeros(vids.shape + (3,), np.float32)
        np.put_along_axis(bary, corner_of[vids][..., None], 1.0, axis=-1)
        return face_of[vids].astype(np.int64), bary

    dyn_v = contour_table(verts, skin[~dived & ~pocket])
    s_f, s_b = embed(static_v)
    d_f, d_b = embed(dyn_v)
    full_f, full_b = embed(np.concatenate([dyn_v[0], static_v]))
    return LandmarkEmbedding(s_f, s_b, d_f, d_b, full_f, full_b).validate(n_faces=len(model.f))


def contour_table(verts: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """[79,17] vertex ids: jaw-contour silhouette points for yaw rows +0..+39, -1..-39 degrees."""
    k = np.arange(17)
    theta = (k - 8) / 8 * (np.pi / 2)
    y_k = CHIN_Y + (EYE_Y - 0.012 - CHIN_Y) * (1 - np.cos(theta))
    side = np.sign(k - 8)
    yaws = np.deg2rad(np.concatenate([np.arange(40), -np.arange(1, 40)]))
    table = np.zeros((79, 17), np.int64)
    cv = verts[candidates]
    for row, a in enumerate(yaws):
        xr = cv[:, 0] * np.cos(a) + cv[:, 2] * np.sin(a)
        zr = -cv[:, 0] * np.sin(a) + cv[:, 2] * np.cos(a)
        for i in range(17):
            level = np.abs(cv[:, 1] - y_k[i]) < 0.0026
            score = side[i] * xr if side[i] != 0 else zr
            score = np.where(level & (cv[:, 2] > -0.03), score, -np.inf)
            table[row, i] = candidates[np.argmax(score)]
    return table
