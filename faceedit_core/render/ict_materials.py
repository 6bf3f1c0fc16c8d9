"""Flat albedo colours for the ICT head's parts, and which faces a plain rasteriser should draw.

`part_colours(head) -> [V,3]` in [0,1]: skin (warm, lips from the lip landmarks, darker brows
along the brow landmarks), the eyeball shell coloured as sclera with an iris disc and pupil
around its front pole (ICT's own iris mesh sits inside that shell and gets the same colours, for
where it pokes through), teeth, gums and tongue, the mouth and eye sockets (dark), eyelashes.
`render_faces(head) -> bool [F]`: every face but the game-engine helper meshes (lacrimal fluid,
eye blend, eye occlusion), which need transparency and would float as grey shells here.
Both work on the neutral template, so the colours follow the vertices through any expression.
"""

from __future__ import annotations

import numpy as np

from faceedit_core.flame.ict import HELPER_PARTS

SKIN = (0.80, 0.60, 0.50)
LIP = (0.69, 0.37, 0.37)
BROW = (0.45, 0.33, 0.27)
SCLERA = (0.93, 0.91, 0.87)
IRIS = (0.36, 0.25, 0.16)
PUPIL = (0.03, 0.03, 0.03)
TEETH = (0.88, 0.85, 0.77)
GUMS_TONGUE = (0.60, 0.25, 0.27)  # deeper than the lips: the inside of the mouth reads as inside
MOUTH_SOCKET = (0.30, 0.11, 0.12)
EYE_SOCKET = (0.36, 0.22, 0.20)
LASHES = (0.08, 0.06, 0.05)
HELPER = (0.5, 0.5, 0.5)

# angles (degrees) from the eyeball's optical axis: pupil inside PUPIL_DEG, blending into the iris
# by PUPIL_EDGE_DEG; iris inside IRIS_DEG, blending into the sclera by IRIS_EDGE_DEG (these sit on
# rings of the sclera shell, which is a UV sphere about that axis)
PUPIL_DEG, PUPIL_EDGE_DEG, IRIS_DEG, IRIS_EDGE_DEG = 6.5, 8.8, 19.9, 21.8
MOUTH_BACK_SHADE = 0.45
LIP_FEATHER = 0.0012  # m: lip colour fades over this distance across the lip contour
BROW_HALF_WIDTH = 0.0045
BROW_DEPTH = 0.015  # m: skin this far behind the brow landmarks is not brow

LASH_ROOT = 0.0012  # m: eyelash faces within this of the skin are drawn (the lash line)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _polygon_signed_distance(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """2D signed distance of points [N,2] to a closed polygon [M,2] (negative inside)."""
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    t = np.clip(((points[:, None] - a[None]) * ab[None]).sum(-1) / (ab**2).sum(-1)[None], 0, 1)
    d = np.linalg.norm(points[:, None] - (a[None] + t[..., None] * ab[None]), axis=-1).min(1)
    inside = np.zeros(len(points), bool)
    for (x0, y0), (x1, y1) in zip(a, b):  # even-odd rule
        crosses = (y0 > points[:, 1]) != (y1 > points[:, 1])
        x_at = x0 + (points[:, 1] - y0) * (x1 - x0) / np.where(y1 != y0, y1 - y0, 1e-20)
        inside ^= crosses & (points[:, 0] < x_at)
    return np.where(inside, -d, d)


def _polyline_distance(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """2D distance of points [N,2] to an open polyline [M,2]."""
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.clip(((points[:, None] - a[None]) * ab[None]).sum(-1) / (ab**2).sum(-1)[None], 0, 1)
    return np.linalg.norm(points[:, None] - (a[None] + t[..., None] * ab[None]), axis=-1).min(1)


def _mask(head, *names: str) -> np.ndarray:
    return head.part_mask(*names)


def eye_pole_angles(head, side: str) -> np.ndarray:
    """Angle (degrees) of each vertex of one eyeball from its optical axis, seen from the eye
    joint: [V] (NaN off that eyeball). The axis runs through the front pole of ICT's sclera shell
    (a UV sphere: its poles are the two vertices where 32 edges meet; the front one faces +z)."""
    v = head.model.v_template.astype(np.float64)
    joint = 3 if side == "left" else 4
    centre = head.model.J_regressor[joint].astype(np.float64) @ v
    lab = head.part_labels.index(f"sclera_{side}")
    f = head.model.f[head.face_part == lab]
    e = np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1), axis=0)
    valence = np.bincount(e.ravel(), minlength=len(v))
    poles = np.nonzero(valence == valence.max())[0]
    pole = v[poles[np.argmax(v[poles, 2])]] - centre
    pole /= np.linalg.norm(pole)
    out = np.full(len(v), np.nan)
    ball = np.arange(*head.parts[f"eyeball_{side}"])
    u = v[ball] - centre
    out[ball] = np.degrees(np.arccos(np.clip(u @ pole / np.linalg.norm(u, axis=1), -1, 1)))
    return out


def part_colours(head) -> np.ndarray:
    """Albedo per vertex [V,3] float32 in [0,1] (see the module docstring)."""
    v = head.model.v_template.astype(np.float64)
    V = len(v)
    col = np.tile(np.array(SKIN), (V, 1))
    for names, rgb in (
        (("mouth_socket",), MOUTH_SOCKET),
        (("eye_socket_left", "eye_socket_right"), EYE_SOCKET),
        (("gums_tongue",), GUMS_TONGUE),
        (("teeth",), TEETH),
        (("eyelashes_left", "eyelashes_right"), LASHES),
        (HELPER_PARTS, HELPER),
    ):
        col[_mask(head, *names)] = rgb

    face = np.nonzero(_mask(head, "face"))[0]
    lm = head.landmark_vertices
    # lips: inside the outer lip contour (landmarks 48..59) seen from the front, not deep inside
    lips = v[lm[48:60]]
    sd = _polygon_signed_distance(v[face, :2], lips[:, :2])
    depth_ok = v[face, 2] > lips[:, 2].min() - 0.012
    w = _smoothstep(LIP_FEATHER, -LIP_FEATHER, sd) * depth_ok
    col[face] = col[face] * (1 - w[:, None]) + np.array(LIP) * w[:, None]
    # brows: a band along each brow's landmarks (17..21, 22..26), fading at its ends and edges
    for lo in (17, 22):
        brow = v[lm[lo : lo + 5]]
        d = _polyline_distance(v[face, :2], brow[:, :2])
        near = v[face, 2] > brow[:, 2].min() - BROW_DEPTH
        x0, x1 = np.sort(brow[[0, -1], 0])
        along = _smoothstep(x0 - 0.004, x0 + 0.004, v[face, 0]) * _smoothstep(x1 + 0.004, x1 - 0.004, v[face, 0])
        w = _smoothstep(BROW_HALF_WIDTH, BROW_HALF_WIDTH * 0.4, d) * near * along * 0.8
        col[face] = col[face] * (1 - w[:, None]) + np.array(BROW) * w[:, None]
    # the mouth's inside darkens towards the back (no occlusion in a plain rasteriser): teeth, gums
    # and tongue from 100 % at the front incisors to MOUTH_BACK_SHADE at the last molars
    inner = _mask(head, "teeth", "gums_tongue")
    z = v[inner, 2]
    teeth_z = v[_mask(head, "teeth"), 2]
    col[inner] *= (MOUTH_BACK_SHADE + (1 - MOUTH_BACK_SHADE) * _smoothstep(teeth_z.min(), teeth_z.max(), z))[:, None]
    # eyes: sclera with an iris disc and a pupil about each front pole
    for side in ("left", "right"):
        ang = eye_pole_angles(head, side)
        ball = ~np.isnan(ang)
        a = ang[ball]
        iris = _smoothstep(IRIS_EDGE_DEG, IRIS_DEG, a)
        pupil = _smoothstep(PUPIL_EDGE_DEG, PUPIL_DEG, a)
        c = np.array(SCLERA) * (1 - iris[:, None]) + np.array(IRIS) * iris[:, None]
        col[ball] = c * (1 - pupil[:, None]) + np.array(PUPIL) * pupil[:, None]
    return col.astype(np.float32)


def _nearest_distance(points: np.ndarray, targets: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Distance of each of points [N,3] to its nearest of targets [M,3]: [N]."""
    out = np.empty(len(points))
    for i in range(0, len(points), chunk):
        d = ((points[i : i + chunk, None, :] - targets[None]) ** 2).sum(-1)
        out[i : i + chunk] = np.sqrt(d.min(1))
    return out


def render_faces(head) -> np.ndarray:
    """bool [F]: True for the faces a plain (opaque) rasteriser should draw.

    Drops the helper meshes, and the eyelash strips except their root band (faces whose corners
    all lie within LASH_ROOT of the face skin): ICT's lashes are alpha-textured cards several
    millimetres wide, which drawn opaque look like thick black crescents; their roots read as a
    lash line along the lid."""
    keep = ~np.isin(head.face_part, [head.part_labels.index(n) for n in HELPER_PARTS])
    v = head.model.v_template.astype(np.float64)
    skin = v[head.part_mask("face")]
    for side in ("left", "right"):
        lab = head.part_labels.index(f"eyelashes_{side}")
        faces = np.nonzero(head.face_part == lab)[0]
        ids = np.unique(head.model.f[faces])
        lo, hi = v[ids].min(0) - LASH_ROOT, v[ids].max(0) + LASH_ROOT  # only skin this close can be within reach
        local = skin[((skin >= lo) & (skin <= hi)).all(1)]
        near = np.zeros(len(v), bool)
        near[ids] = _nearest_distance(v[ids], local) <= LASH_ROOT if len(local) else False
        keep[faces] = near[head.model.f[faces]].all(1)
    return keep


def preview_renderer(head, supersample: int = 2):
    """A PreviewRenderer for the ICT head: `part_colours` per vertex, only `render_faces` drawn."""
    from faceedit_core.render.preview import PreviewRenderer

    return PreviewRenderer(
        head.model.f, supersample=supersample, vertex_colours=part_colours(head), render_faces=render_faces(head)
    )


__all__ = ["part_colours", "render_faces", "preview_renderer", "eye_pole_angles", "HELPER_PARTS"]
