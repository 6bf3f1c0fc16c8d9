"""A procedural albedo texture for the demo head, painted per texel from its UV layout.

The demo head's UVs are analytic (azimuth and height for the skin, angle from the pupil for
the eyeballs), so each texel knows where on the face it lies: skin with low-frequency
variation, warmer cheeks, lips, brows, hair on the crown and back, the inner mouth, and the
eyes' sclera, iris and pupil.
"""

from __future__ import annotations

import numpy as np

from faceedit_core.flame.procedural_shape import (
    BROW_Y,
    LIP_EDGE,
    MOUTH_HALF_WIDTH,
    MOUTH_Y,
    _profile,
    column_angles,
    smoothstep,
)
from faceedit_core.flame.procedural_topology import EYE_BANDS, EYE_U0, skin_u, uv_to_eye, uv_to_skin

SKIN = np.array([0.80, 0.60, 0.49])
CHEEK = np.array([0.82, 0.52, 0.45])
LIPS = np.array([0.66, 0.33, 0.33])
BROWS = np.array([0.24, 0.16, 0.11])
HAIR = np.array([0.20, 0.13, 0.09])
MOUTH = np.array([0.22, 0.05, 0.06])
SCLERA, IRIS, PUPIL = np.array([0.93, 0.91, 0.88]), np.array([0.30, 0.42, 0.55]), np.array([0.03, 0.03, 0.03])
NEUTRAL = np.array([0.78, 0.66, 0.58])
# The skin island ends at its seam column, the first column again one turn on (u = 0.808); the
# eyes' islands start at EYE_U0 = 0.82. Each island's colour runs into the gap between them up to
# its middle, so bilinear sampling at an island's edge reads the island's own colour (the eyes'
# sclera 0.2 texel past the skin's last column drew a light line down the back of the head).
SKIN_U_END = float(skin_u(column_angles()[0] + 2 * np.pi))
GUTTER_U = 0.5 * (SKIN_U_END + EYE_U0)


def _noise(u: np.ndarray, v: np.ndarray, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros_like(u)
    for k in range(6):
        f = rng.uniform(3, 14, size=2)
        out += np.sin(2 * np.pi * (f[0] * u + rng.uniform())) * np.sin(2 * np.pi * (f[1] * v + rng.uniform())) / (k + 2)
    return out


def demo_albedo(size: int = 512) -> np.ndarray:
    """[size,size,3] float albedo in [0,1]; row 0 is v = 1 (top of the texture)."""
    v, u = np.meshgrid(np.linspace(1, 0, size), np.linspace(0, 1, size), indexing="ij")
    tex = np.zeros((size, size, 3))
    phi, y = uv_to_skin(u, v)
    a = _profile(y)[0]
    x = a * np.sin(phi)
    front = np.cos(phi)
    col = SKIN * (1 + 0.035 * _noise(u, v))[..., None]
    cheeks = np.exp(-0.5 * (((np.abs(x) - 0.042) / 0.015) ** 2 + ((y + 0.01) / 0.014) ** 2)) * (front > 0)
    col = col + (CHEEK - SKIN) * 0.6 * cheeks[..., None]
    brow_y = BROW_Y - 0.002 + 0.004 * (1 - ((np.abs(x) - 0.032) / 0.026) ** 2)
    brows = (
        smoothstep(0.0035, 0.0018, np.abs(y - brow_y))
        * smoothstep(0.009, 0.013, np.abs(x))
        * smoothstep(0.062, 0.054, np.abs(x))
        * (front > 0.3)
    )
    col = col + (BROWS - col) * brows[..., None]
    lip_w = MOUTH_HALF_WIDTH + 0.001
    lip_h = np.where(y > MOUTH_Y, 0.0085, 0.011) * np.sqrt(np.clip(1 - (x / lip_w) ** 2, 0, 1))
    lips = smoothstep(0.0012, -0.0008, np.abs(y - MOUTH_Y) - lip_h) * (np.abs(x) < lip_w) * (front > 0.5)
    col = col + (LIPS - col) * lips[..., None]
    inner = (np.abs(y - MOUTH_Y) < 0.95 * LIP_EDGE) & (np.abs(x) < MOUTH_HALF_WIDTH) & (front > 0.5)
    col[inner] = MOUTH
    hairline = 0.075 - 0.02 * np.clip(-front, 0, 1) - 0.11 * smoothstep(-0.1, -0.5, front)
    hair = smoothstep(hairline - 0.004, hairline + 0.004, y) * (1 + 0.04 * _noise(u * 3, v * 3, 9))
    col = col + (HAIR - col) * np.clip(hair, 0, 1)[..., None]
    skin_part = u < GUTTER_U  # a margin past the seam so bilinear sampling never reads black
    tex[skin_part] = col[skin_part]
    for side, (v0, v1) in EYE_BANDS.items():
        band = (u >= GUTTER_U) & (v >= v0 - 0.01) & (v <= v1 + 0.01)
        theta = uv_to_eye(v, side)
        eye = np.where((theta < 0.19)[..., None], PUPIL, np.where((theta < 0.43)[..., None], IRIS, SCLERA))
        tex[band] = eye[band]
    return np.clip(tex, 0, 1)
