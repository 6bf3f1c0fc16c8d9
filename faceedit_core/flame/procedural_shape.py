"""The rest geometry of the procedural demo head: a structured (ring x column) skin grid.

The skin is one closed surface from the crown pole to a pole under the neck. Rings run top to
bottom (y), columns around the head (azimuth phi, 0 = front). Columns are denser at the front
and rings are denser over the face, so the features get about 2.5 mm spacing.

Two places fold the skin inwards instead of cutting holes, so the mesh stays closed:
- the eye openings: skin inside each almond dives behind the eyeball, which is a separate
  sphere; the margins are snapped onto smooth lid curves;
- the mouth: the ring on the mouth line is pushed 2 cm back into a pocket; when the jaw opens
  the pocket's faces stretch into a dark mouth interior.
All lengths in metres, FLAME axes (y up, face towards +z, +x the subject's left).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Feature layout (metres).
EYE_X, EYE_Y = 0.032, 0.027  # eye centres at (+-EYE_X, EYE_Y)
EYE_HALF_WIDTH = 0.0135  # almond half width
EYE_UP, EYE_DOWN = 0.0055, 0.0040  # almond heights above / below EYE_Y
EYEBALL_RADIUS = 0.0118
LID_RADIUS = 0.0132  # lids wrap the eyeball on this sphere
BROW_Y = 0.047
MOUTH_Y = -0.043
MOUTH_HALF_WIDTH = 0.024
LIP_EDGE = 0.0008  # half gap between the lip edges at rest
POCKET_DEPTH = 0.02
NOSE_TIP_Y = -0.004
CHIN_Y = -0.085


@dataclass
class SkinGrid:
    """The skin as a grid: pos [R,C,3] (ring, column), ring_y [R], col_phi [C], plus flags."""

    pos: np.ndarray
    col_phi: np.ndarray
    dived: np.ndarray  # [R,C] bool: inside an eye opening (hidden behind the eyeball)
    pocket: np.ndarray  # [R,C] float: mouth-pocket weight (inner mouth)
    upper_margin: dict  # side (+1 left, -1 right) -> list of (ring, col) on the upper lid margin
    lower_margin: dict


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def almond(x: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid margin heights y_u(x), y_l(x) of one eye (side +1 left, -1 right)."""
    t = np.clip((x - side * EYE_X) / EYE_HALF_WIDTH, -1, 1)
    shape = 1 - t**2
    # the upper lid peaks slightly to the inner side, like a real eye
    skew = 1 + 0.15 * (-side * t)
    return EYE_Y + EYE_UP * shape * skew, EYE_Y - EYE_DOWN * shape


def ring_heights() -> np.ndarray:
    """Ring y values, top (crown) to bottom (under the neck), without the two poles."""
    top = 0.118 - 0.05 * (1 - np.cos(np.linspace(0.25, np.pi / 2, 12)))  # crown cap, coarse
    face = np.arange(0.066, -0.092, -0.0025)  # 2.5 mm over the face
    face = face[np.abs(face - MOUTH_Y) > 0.0022]
    mouth = MOUTH_Y + np.array([LIP_EDGE, 0.0, -LIP_EDGE])
    neck = np.linspace(-0.097, -0.168, 12)
    ys = np.concatenate([top[top > 0.068], face, mouth, neck])
    return np.sort(ys)[::-1]


def column_angles(n: int = 104) -> np.ndarray:
    """Azimuths in [-pi, pi), dense at the front (phi = 0)."""
    u = np.linspace(-1, 1, n, endpoint=False) + 1.0 / n
    return np.pi * (0.42 * u + 0.58 * u**3)


def _profile(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cross-section at height y: half width a, front depth zf, back depth zb, centre z0."""
    ys = np.array(
        [0.125, 0.118, 0.10, 0.075, 0.045, 0.015, -0.015, -0.045, -0.07, -0.085, -0.095, -0.11, -0.17, -0.176]
    )
    a = np.array([0.0, 0.035, 0.062, 0.075, 0.078, 0.077, 0.073, 0.066, 0.055, 0.045, 0.050, 0.052, 0.054, 0.0])
    zf = np.array([0.0, 0.045, 0.075, 0.090, 0.094, 0.095, 0.096, 0.090, 0.078, 0.062, 0.045, 0.040, 0.046, 0.0])
    zb = np.array([0.0, 0.050, 0.088, 0.100, 0.102, 0.098, 0.088, 0.070, 0.060, 0.052, 0.050, 0.048, 0.050, 0.0])
    z0 = np.array(
        [-0.015, -0.015, -0.015, -0.015, -0.015, -0.015, -0.015, -0.015, -0.018, -0.022, -0.03, -0.035, -0.035, -0.035]
    )
    order = np.argsort(ys)
    return tuple(np.interp(y, ys[order], v[order]) for v in (a, zf, zb, z0))


def face_relief(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Forward (+z) offset of the facial features over the smooth cross-sections."""
    ax = np.abs(x)
    nose_ridge = (
        0.021
        * smoothstep(0.035, -0.004, y)
        * smoothstep(-0.022, -0.006, y)
        * np.exp(-0.5 * (x / (0.0045 + 0.006 * smoothstep(0.03, -0.01, y))) ** 2)
    )
    nose_tip = 0.006 * gauss(x, y, 0.0, NOSE_TIP_Y - 0.004, 0.008, 0.006)
    alae = 0.006 * (gauss(x, y, 0.014, -0.012, 0.006, 0.006) + gauss(x, y, -0.014, -0.012, 0.006, 0.006))
    brow = 0.007 * np.exp(-0.5 * ((y - BROW_Y + 0.004) / 0.008) ** 2) * smoothstep(0.075, 0.03, ax)
    sockets = -0.011 * (
        gauss(x, y, EYE_X, EYE_Y + 0.002, 0.014, 0.011) + gauss(x, y, -EYE_X, EYE_Y + 0.002, 0.014, 0.011)
    )
    cheeks = 0.005 * (gauss(x, y, 0.045, -0.008, 0.016, 0.014) + gauss(x, y, -0.045, -0.008, 0.016, 0.014))
    upper_lip = (
        0.007 * np.exp(-0.5 * ((y - MOUTH_Y - 0.006) / 0.006) ** 2) * smoothstep(MOUTH_HALF_WIDTH + 0.006, 0.0, ax)
    )
    lower_lip = (
        0.006 * np.exp(-0.5 * ((y - MOUTH_Y + 0.007) / 0.005) ** 2) * smoothstep(MOUTH_HALF_WIDTH + 0.004, 0.0, ax)
    )
    philtrum = 0.004 * np.exp(-0.5 * ((y - MOUTH_Y - 0.016) / 0.008) ** 2) * np.exp(-0.5 * (x / 0.012) ** 2)
    chin = 0.007 * gauss(x, y, 0.0, CHIN_Y + 0.012, 0.016, 0.011)
    labial_fold = -0.003 * gauss(x, y, 0.0, MOUTH_Y - 0.015, 0.012, 0.004)
    return (
        nose_ridge + nose_tip + alae + brow + sockets + cheeks + upper_lip + lower_lip + philtrum + chin + labial_fold
    )


def build_skin(ring_y: np.ndarray | None = None, col_phi: np.ndarray | None = None) -> SkinGrid:
    """The rest skin grid (without eyeballs), eye openings and mouth pocket included, on the ring
    heights ring_y [R] and column angles col_phi [C] (default: the demo head's grid)."""
    ring_y = ring_heights() if ring_y is None else ring_y
    col_phi = column_angles() if col_phi is None else col_phi
    Y, PHI = np.meshgrid(ring_y, col_phi, indexing="ij")
    a, zf, zb, z0 = _profile(Y)
    s, c = np.sin(PHI), np.cos(PHI)
    X = a * s
    Z = z0 + np.where(c > 0, zf, zb) * c
    front = smoothstep(0.15, 0.6, c) * smoothstep(-0.105, -0.088, Y)
    Z = Z + front * face_relief(X, Y)
    pos = np.stack([X, Y, Z], axis=-1)

    dived = np.zeros(Y.shape, bool)
    upper_margin: dict = {}
    lower_margin: dict = {}
    for side in (1, -1):
        _wrap_eye(pos, side, dived, upper_margin, lower_margin)
    pocket = _fold_mouth(pos, ring_y)
    return SkinGrid(
        pos=pos, col_phi=col_phi, dived=dived, pocket=pocket, upper_margin=upper_margin, lower_margin=lower_margin
    )


def eye_centre(side: int) -> np.ndarray:
    """Eyeball centre: its front pokes 1.5 mm out of the rest face surface in the socket."""
    z_face = _front_surface_z(side * EYE_X, EYE_Y)
    return np.array([side * EYE_X, EYE_Y, z_face - EYEBALL_RADIUS + 0.0042])


def _front_surface_z(x: float, y: float) -> float:
    a, zf, _, z0 = _profile(np.array(y))
    phi = np.arcsin(np.clip(x / a, -1, 1))
    return float(z0 + zf * np.cos(phi) + face_relief(np.array(x), np.array(y)))


def lid_z(x: np.ndarray, y: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Depth of the lid sphere in front of the eyeball at (x, y)."""
    d2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2
    return centre[2] + np.sqrt(np.clip(LID_RADIUS**2 - d2, 0, None))


def _wrap_eye(pos: np.ndarray, side: int, dived: np.ndarray, upper: dict, lower: dict) -> None:
    """Lids wrap the eyeball; the almond's inside dives behind it; margins snap to the lid curves."""
    centre = eye_centre(side)
    X, Y, Z = pos[..., 0], pos[..., 1], pos[..., 2]
    d = np.sqrt((X - centre[0]) ** 2 + (Y - centre[1]) ** 2)
    in_front = pos[..., 2] > 0
    w = smoothstep(LID_RADIUS * 1.25, LID_RADIUS * 0.75, d) * in_front
    pos[..., 2] = np.maximum(Z, (1 - w) * Z + w * lid_z(X, Y, centre))
    upper[side], lower[side] = [], []
    R, C = X.shape
    for col in range(C):
        x = X[:, col]
        if not np.any(in_front[:, col] & (np.abs(x - side * EYE_X) < EYE_HALF_WIDTH * 0.97)):
            continue
        rows = np.where(in_front[:, col] & (np.abs(Y[:, col] - EYE_Y) < 0.02))[0]
        xr = float(np.median(x[rows]))
        if abs(xr - side * EYE_X) >= EYE_HALF_WIDTH * 0.97:
            continue
        y_u, y_l = almond(np.array(xr), side)
        inside = rows[(Y[rows, col] < y_u) & (Y[rows, col] > y_l)]
        above = rows[Y[rows, col] >= y_u]
        below = rows[Y[rows, col] <= y_l]
        if len(above) == 0 or len(below) == 0:
            continue
        r_up, r_low = above.max(), below.min()  # rows nearest the opening
        for r, yy in ((r_up, y_u), (r_low, y_l)):
            pos[r, col, 1] = yy
            pos[r, col, 2] = lid_z(np.array(xr), np.array(yy), centre)
        for r in inside:  # hide behind the eyeball front
            dived[r, col] = True
            pos[r, col, 2] = centre[2] + 0.45 * EYEBALL_RADIUS
        upper[side].append((int(r_up), col))
        lower[side].append((int(r_low), col))


def _fold_mouth(pos: np.ndarray, ring_y: np.ndarray) -> np.ndarray:
    """Push the mouth-line ring back into a pocket; returns the pocket weight [R,C]."""
    r_mid = int(np.argmin(np.abs(ring_y - MOUTH_Y)))
    X = pos[r_mid, :, 0]
    front = pos[r_mid, :, 2] > 0
    width = np.clip(1 - (X / MOUTH_HALF_WIDTH) ** 2, 0, 1) * front
    pocket = np.zeros(pos.shape[:2])
    pocket[r_mid] = width
    pos[r_mid, :, 2] -= POCKET_DEPTH * np.sqrt(width)
    pos[r_mid, :, 0] *= 1 - 0.25 * width
    for r in (r_mid - 1, r_mid + 1):  # lip edges roll in slightly
        pos[r, :, 2] -= 0.0015 * width
    return pocket
