"""Mesh topology and UV layout of the demo head: skin grid + two poles + two eyeballs.

Vertex order: crown pole, the skin grid ring by ring, the pole under the neck, then the left
(+x) and right eyeball spheres. Triangles are counter-clockwise seen from outside.

UV layout (u right, v up, in [0, 1]): the skin fills u in [0, 0.8] with u linear in the
azimuth (front of the face at u = 0.4) and v linear in the nominal ring height; each eyeball
fills a band of u in [0.82, 0.98] with v linear in the angle from the pupil. `uv_to_skin` and
`uv_to_eye` invert this, so an albedo can be painted analytically per texel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceedit_core.flame.procedural_shape import EYEBALL_RADIUS, SkinGrid, eye_centre

SKIN_U_MAX = 0.8
Y_TOP, Y_BOTTOM = 0.125, -0.176
EYE_U0, EYE_U1 = 0.82, 0.98
EYE_BANDS = {1: (0.52, 0.96), -1: (0.04, 0.48)}  # v range per eyeball (pupil at the band's top)
EYE_LAT, EYE_LON = 12, 18


@dataclass
class HeadTopology:
    vertices: np.ndarray  # [V,3]
    faces: np.ndarray  # [F,3]
    uvs: np.ndarray  # [T,2]
    uv_faces: np.ndarray  # [F,3]
    skin_index: np.ndarray  # [R*C] vertex id of grid cell (r, c) at r*C + c
    grid_shape: tuple[int, int]
    eyeball_index: dict  # side (+1 left, -1 right) -> vertex ids [n]
    ring_y: np.ndarray  # [R] nominal ring heights (for UVs)
    col_phi: np.ndarray  # [C]


def skin_v(y: np.ndarray) -> np.ndarray:
    return 0.02 + 0.96 * (np.asarray(y) - Y_BOTTOM) / (Y_TOP - Y_BOTTOM)


def skin_u(phi: np.ndarray) -> np.ndarray:
    return SKIN_U_MAX * (0.5 + np.asarray(phi) / (2 * np.pi))


def uv_to_skin(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texel (u, v) of the skin -> (azimuth phi, nominal height y)."""
    phi = (u / SKIN_U_MAX - 0.5) * 2 * np.pi
    y = Y_BOTTOM + (v - 0.02) / 0.96 * (Y_TOP - Y_BOTTOM)
    return phi, y


def uv_to_eye(v: np.ndarray, side: int) -> np.ndarray:
    """Texel v of an eyeball band -> angle from the pupil (radians)."""
    v0, v1 = EYE_BANDS[side]
    return (v1 - v) / (v1 - v0) * np.pi


def _grid_faces(R: int, C: int, grid_vid, grid_tid) -> tuple[list, list]:
    faces, uv_faces = [], []
    for r in range(R - 1):
        for c in range(C):
            c1 = (c + 1) % C
            a, b, cc, d = grid_vid(r, c), grid_vid(r, c1), grid_vid(r + 1, c1), grid_vid(r + 1, c)
            ta, tb, tc, td = grid_tid(r, c), grid_tid(r, c + 1), grid_tid(r + 1, c + 1), grid_tid(r + 1, c)
            faces += [(a, d, cc), (a, cc, b)]
            uv_faces += [(ta, td, tc), (ta, tc, tb)]
    return faces, uv_faces


def eyeball_vertices(side: int, n_rings: int, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """The eyeball of `side` as a UV sphere whose pole looks forward (+z): vertices [2 + n_rings *
    n_columns, 3] (front pole, rings front to back, back pole) and the rings' polar angles [n_rings]."""
    theta = np.linspace(0, np.pi, n_rings + 2)[1:-1]
    psi = np.linspace(0, 2 * np.pi, n_columns, endpoint=False)
    T, P = np.meshgrid(theta, psi, indexing="ij")
    ring = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1).reshape(-1, 3)
    return eye_centre(side) + EYEBALL_RADIUS * np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]]), theta


def _eyeball(side: int, v0: int, t0: int) -> tuple[np.ndarray, list, np.ndarray, list]:
    """A UV sphere whose pole looks forward (+z): vertices, faces, uvs, uv faces."""
    verts, theta = eyeball_vertices(side, EYE_LAT - 1, EYE_LON)
    band0, band1 = EYE_BANDS[side]
    u_of = lambda j: EYE_U0 + (EYE_U1 - EYE_U0) * j / EYE_LON  # noqa: E731
    v_of = lambda th: band1 - (band1 - band0) * th / np.pi  # noqa: E731
    uvs = [[u_of(j + 0.5), v_of(0.0)] for j in range(EYE_LON)]  # front pole, one per column
    uvs += [[u_of(j), v_of(th)] for th in theta for j in range(EYE_LON + 1)]
    uvs += [[u_of(j + 0.5), v_of(np.pi)] for j in range(EYE_LON)]  # back pole
    n_ring = len(theta)
    vid = lambda i, j: v0 + 1 + i * EYE_LON + j % EYE_LON  # noqa: E731
    tid = lambda i, j: t0 + EYE_LON + i * (EYE_LON + 1) + j  # noqa: E731
    back_v, back_t = v0 + 1 + n_ring * EYE_LON, t0 + EYE_LON + n_ring * (EYE_LON + 1)
    faces, uv_faces = [], []
    for j in range(EYE_LON):
        faces.append((v0, vid(0, j), vid(0, j + 1)))
        uv_faces.append((t0 + j, tid(0, j), tid(0, j + 1)))
        faces.append((vid(n_ring - 1, j), back_v, vid(n_ring - 1, j + 1)))
        uv_faces.append((tid(n_ring - 1, j), back_t + j, tid(n_ring - 1, j + 1)))
        for i in range(n_ring - 1):
            a, b, c, d = vid(i, j), vid(i, j + 1), vid(i + 1, j + 1), vid(i + 1, j)
            ta, tb, tc, td = tid(i, j), tid(i, j + 1), tid(i + 1, j + 1), tid(i + 1, j)
            faces += [(a, d, c), (a, c, b)]
            uv_faces += [(ta, td, tc), (ta, tc, tb)]
    faces, uv_faces = np.array(faces), np.array(uv_faces)
    # orient outwards: flip triangles whose normal points at the centre
    tri = verts[faces - v0]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = np.einsum("fc,fc->f", normal, tri.mean(1) - eye_centre(side)) < 0
    faces[flip] = faces[flip][:, ::-1]
    uv_faces[flip] = uv_faces[flip][:, ::-1]
    return verts, faces.tolist(), np.array(uvs), uv_faces.tolist()


def build_topology(grid: SkinGrid) -> HeadTopology:
    R, C = grid.pos.shape[:2]
    ring_y = np.median(grid.pos[:, :, 1], axis=1)
    top, bottom = np.array([0.0, Y_TOP, -0.015]), np.array([0.0, Y_BOTTOM, -0.035])
    verts = [top[None], grid.pos.reshape(-1, 3), bottom[None]]
    grid_vid = lambda r, c: 1 + r * C + c  # noqa: E731
    bottom_vid = 1 + R * C
    # skin UVs: one row of C+1 texels per ring (the extra closes the seam), then pole texels
    phi_ext = np.append(grid.col_phi, grid.col_phi[0] + 2 * np.pi)
    uu, vv = np.meshgrid(skin_u(phi_ext), skin_v(ring_y), indexing="xy")
    uvs = [np.stack([uu, vv], -1).reshape(-1, 2)]
    grid_tid = lambda r, c: r * (C + 1) + c  # noqa: E731
    n_grid_t = R * (C + 1)
    mid_u = skin_u(0.5 * (phi_ext[:-1] + phi_ext[1:]))
    uvs.append(np.stack([mid_u, np.full(C, skin_v(Y_TOP))], -1))
    uvs.append(np.stack([mid_u, np.full(C, skin_v(Y_BOTTOM))], -1))
    faces, uv_faces = _grid_faces(R, C, grid_vid, grid_tid)
    for c in range(C):
        faces.append((0, grid_vid(0, c), grid_vid(0, (c + 1) % C)))
        uv_faces.append((n_grid_t + c, grid_tid(0, c), grid_tid(0, c + 1)))
        faces.append((grid_vid(R - 1, c), bottom_vid, grid_vid(R - 1, (c + 1) % C)))
        uv_faces.append((grid_tid(R - 1, c), n_grid_t + C + c, grid_tid(R - 1, c + 1)))
    n_v, n_t = bottom_vid + 1, n_grid_t + 2 * C
    eyeball_index = {}
    for side in (1, -1):
        ev, ef, et, etf = _eyeball(side, n_v, n_t)
        verts.append(ev)
        uvs.append(et)
        faces += ef
        uv_faces += etf
        eyeball_index[side] = np.arange(n_v, n_v + len(ev))
        n_v, n_t = n_v + len(ev), n_t + len(et)
    return HeadTopology(
        vertices=np.concatenate(verts),
        faces=np.array(faces, dtype=np.int64),
        uvs=np.concatenate(uvs),
        uv_faces=np.array(uv_faces, dtype=np.int64),
        skin_index=np.arange(1, 1 + R * C),
        grid_shape=(R, C),
        eyeball_index=eyeball_index,
        ring_y=ring_y,
        col_phi=grid.col_phi,
    )
