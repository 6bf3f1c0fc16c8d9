"""The demo head's expression basis: localised FACS-like deformations, one per column.

Coefficient 1.0 of a component is its full-strength action; components add linearly (smile =
cheek raise + lip corner pull). Column k of the 100 expression coefficients is COMPONENTS[k];
columns past the last component are zero. Each displacement field is written as a formula of
the rest position (x, y, z) over the facial features laid out in `procedural_shape`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceedit_core.flame.procedural_shape import (
    BROW_Y,
    CHIN_Y,
    EYE_HALF_WIDTH,
    EYE_X,
    MOUTH_HALF_WIDTH,
    MOUTH_Y,
    SkinGrid,
    almond,
    eye_centre,
    gauss,
    lid_z,
    smoothstep,
)

N_EXP = 100


@dataclass(frozen=True)
class ExpressionComponent:
    index: int  # column in the 100 expression coefficients
    name: str
    facs: str
    description: str


COMPONENTS: tuple[ExpressionComponent, ...] = tuple(
    ExpressionComponent(i, n, f, d)
    for i, (n, f, d) in enumerate(
        [
            ("inner_brow_raise", "AU1", "inner ends of the brows rise"),
            ("outer_brow_raise", "AU2", "outer ends of the brows rise"),
            ("brow_lower", "AU4", "brows drop and draw together, bulging between them"),
            ("upper_lid_raise", "AU5", "upper lids lift, widening the eyes"),
            ("cheek_raise", "AU6", "cheeks lift and push the lower lids up"),
            ("lid_tighten", "AU7", "lids tense: lower lid rises, upper lid drops a little"),
            ("nose_wrinkle", "AU9", "skin beside the nose and the upper lip pull up"),
            ("lip_corner_pull", "AU12", "lip corners pull up and out (smile)"),
            ("lip_corner_depress", "AU15", "lip corners pull down"),
            ("lip_pucker", "AU18", "lips push forward and draw together"),
            ("lip_stretch", "AU20", "lip corners pull sideways, lips flatten"),
            ("lip_tighten", "AU23", "lips narrow and thin"),
            ("lip_press", "AU24", "lips press together"),
            ("lips_part", "AU25", "lips part without the jaw opening"),
            ("chin_raise", "AU17", "chin boss pushes the lower lip up"),
            ("eyes_closed", "AU43", "upper lids close fully over the eyes"),
        ]
    )
)
BY_NAME = {c.name: c for c in COMPONENTS}


def _eye_zone(x, y, side):
    """Per-vertex almond margins for one eye and a taper that is 1 inside the eye's width."""
    y_u, y_l = almond(x, side)
    taper = smoothstep(EYE_HALF_WIDTH * 1.05, EYE_HALF_WIDTH * 0.7, np.abs(x - side * EYE_X))
    return y_u, y_l, taper


def _upper_lid_weight(x, y, side, reach=0.010):
    y_u, _, taper = _eye_zone(x, y, side)
    return taper * (y >= y_u - 1e-6) * smoothstep(y_u + reach, y_u, y)


def _lower_lid_weight(x, y, side, reach=0.009):
    _, y_l, taper = _eye_zone(x, y, side)
    return taper * (y <= y_l + 1e-6) * smoothstep(y_l - reach, y_l, y)


def _eyes_closed(verts, front):
    d = np.zeros_like(verts)
    x, y, z = verts.T
    for side in (1, -1):
        centre = eye_centre(side)
        y_u, y_l, taper = _eye_zone(x, y, side)
        y_top = y_u + 0.011
        near = front & (taper > 0) & (y > y_l + 1e-6) & (y < y_top)
        lid = near & (y >= y_u - 1e-6)
        t = np.clip((y - y_u) / (y_top - y_u), 0, 1)
        new_y = np.where(
            lid, y_l + 0.0007 + t * (y_top - y_l - 0.0007), y_l + 0.0004 * (y - y_l) / np.maximum(y_u - y_l, 1e-6)
        )
        new_z = lid_z(x, new_y, centre) + 0.0009
        blend = np.where(lid, 1 - t**2, 1.0)
        new_z = blend * new_z + (1 - blend) * z
        dy = (new_y - y) * taper
        dz = (new_z - z) * taper
        d[near, 1] += dy[near]
        d[near, 2] += dz[near]
    return d


def expression_basis(verts: np.ndarray, topo, grid: SkinGrid) -> np.ndarray:
    """[V,3,100] displacement fields (metres per unit coefficient); eyeballs never move."""
    V = len(verts)
    x, y, z = verts.T
    sx = np.sign(x) + (x == 0)
    skin = np.zeros(V, bool)
    skin[topo.skin_index] = True
    front = skin & (z > -0.02)
    both = lambda cx, cy, sxx, syy: gauss(x, y, cx, cy, sxx, syy) + gauss(x, y, -cx, cy, sxx, syy)  # noqa: E731
    lips = np.exp(-0.5 * ((y - MOUTH_Y) / 0.009) ** 2) * smoothstep(
        MOUTH_HALF_WIDTH + 0.012, MOUTH_HALF_WIDTH - 0.006, np.abs(x)
    )
    upper_lip = lips * (y > MOUTH_Y + 1e-4)
    lower_lip = lips * (y < MOUTH_Y - 1e-4)
    corners = both(MOUTH_HALF_WIDTH, MOUTH_Y, 0.012, 0.010)
    upper_lids = _upper_lid_weight(x, y, 1) + _upper_lid_weight(x, y, -1)
    lower_lids = _lower_lid_weight(x, y, 1) + _lower_lid_weight(x, y, -1)
    brow_band = smoothstep(BROW_Y - 0.016, BROW_Y - 0.006, y)  # brows act above the lids
    vec = lambda dx=0.0, dy=0.0, dz=0.0: np.stack(np.broadcast_arrays(dx, dy, dz, np.zeros(V))[:3], -1)  # noqa: E731

    fields = {
        "inner_brow_raise": vec(dy=0.0065 * both(0.016, BROW_Y, 0.011, 0.013) * brow_band),
        "outer_brow_raise": vec(dy=0.0065 * both(0.047, BROW_Y, 0.013, 0.013) * brow_band),
        "brow_lower": vec(
            dx=-0.0045 * sx * both(0.022, BROW_Y, 0.014, 0.011),
            dy=-0.0055 * both(0.03, BROW_Y, 0.024, 0.011) * brow_band - 0.001 * upper_lids,
            dz=0.0025 * both(0.012, BROW_Y - 0.004, 0.01, 0.01),
        ),
        "upper_lid_raise": vec(dy=0.0028 * upper_lids),
        "cheek_raise": vec(
            dy=0.0045 * both(0.042, -0.004, 0.017, 0.014) + 0.0022 * lower_lids,
            dz=0.003 * both(0.042, -0.004, 0.017, 0.014),
        ),
        "lid_tighten": vec(dy=0.0024 * lower_lids - 0.0012 * upper_lids, dz=0.0008 * lower_lids),
        "nose_wrinkle": vec(
            dy=0.0035 * both(0.011, 0.008, 0.008, 0.012)
            + 0.002 * gauss(x, y, 0, MOUTH_Y + 0.01, 0.015, 0.006)
            - 0.002 * both(0.016, BROW_Y, 0.01, 0.01),
            dz=-0.001 * both(0.011, 0.008, 0.008, 0.012),
        ),
        "lip_corner_pull": vec(
            dx=0.0065 * sx * corners,
            dy=0.0075 * corners + 0.002 * both(0.035, MOUTH_Y + 0.018, 0.012, 0.01),
            dz=-0.003 * corners + 0.0025 * both(0.036, MOUTH_Y + 0.016, 0.01, 0.01),
        ),
        "lip_corner_depress": vec(
            dx=0.002 * sx * corners, dy=-0.0065 * corners - 0.002 * both(0.03, MOUTH_Y - 0.015, 0.012, 0.01)
        ),
        "lip_pucker": vec(dx=-0.32 * x * lips, dz=0.008 * lips),
        "lip_stretch": vec(
            dx=0.0085 * sx * both(MOUTH_HALF_WIDTH, MOUTH_Y, 0.016, 0.012), dy=-0.001 * corners, dz=-0.0025 * corners
        ),
        "lip_tighten": vec(dx=-0.15 * x * lips, dy=-0.0015 * upper_lip + 0.0015 * lower_lip, dz=0.001 * lips),
        "lip_press": vec(dy=-0.002 * upper_lip + 0.0022 * lower_lip, dz=-0.002 * lips),
        "lips_part": vec(
            dy=0.0015 * upper_lip * (y < MOUTH_Y + 0.006)
            - 0.0045 * lower_lip * smoothstep(MOUTH_Y - 0.02, MOUTH_Y - 0.002, y)
        ),
        "chin_raise": vec(
            dy=0.003 * gauss(x, y, 0, CHIN_Y + 0.014, 0.016, 0.012) + 0.0018 * lower_lip,
            dz=0.002 * gauss(x, y, 0, CHIN_Y + 0.014, 0.016, 0.012) + 0.0015 * lower_lip,
        ),
        "eyes_closed": _eyes_closed(verts, front),
    }
    basis = np.zeros((V, 3, N_EXP))
    for comp in COMPONENTS:
        d = fields[comp.name]
        if comp.name != "eyes_closed":
            d = d * front[:, None]
        basis[:, :, comp.index] = d
    return basis


def component_regions(basis: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """[K,V] region weights: each component's displacement magnitude relative to its peak."""
    mags = np.linalg.norm(basis[:, :, : len(COMPONENTS)], axis=1).T  # [K,V]
    peak = mags.max(axis=1, keepdims=True)
    return np.where(mags > threshold * peak, mags / np.maximum(peak, 1e-12), 0.0)
