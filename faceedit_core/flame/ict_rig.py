"""The ICT head's skeleton: the jaw hinge fitted to jawOpen, joint regressor, skinning weights
and the jaw pose corrective. Pure numpy; run once by tools/ict/convert_ict.py, whose results the
asset stores (the loader only reads them).

Joints as FLAME: 0 root (neck base), 1 neck, 2 jaw, 3 left eye (+x), 4 right eye.
All positions in metres, FLAME axes; shapes in each docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# heights of the skin rings (metres, in the converted frame) whose centroids are the root and
# neck joints: the neck's base above the shoulders, and the neck under the jaw
ROOT_RING_Y = -0.129
NECK_RING_Y = -0.104
RING_HALF_HEIGHT = 0.003
NECK_BLEND_ABOVE = 0.012  # the neck's skin blends from the neck joint (above) to the root (below)
NECK_BLEND_BELOW = 0.008  # over [root ring - this, neck ring + NECK_BLEND_ABOVE]
JAW_ANCHORS_PER_SIDE = 6  # skin vertices nearest the hinge axis, per side, that regress the jaw joint
JAW_SMOOTH_ITERS = 8  # Laplacian smoothing passes over the skin's jaw weights
EYE_FRONT_CONE_DEG = 40.0  # sclera vertices within this angle of +z (the cornea bulge) are left out of the sphere fit


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Unit axis [3], angle (radians) -> [3,3] (Rodrigues; acts on column vectors)."""
    a = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def skew(a: np.ndarray) -> np.ndarray:
    """[3] -> the cross-product matrix [3,3]."""
    return np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], np.float64)


@dataclass
class JawHinge:
    """A rotation about a fixed axis through `centre`: axis [3] (unit), centre [3] (m), angle
    (radians, jawOpen at weight 1), rms/max: residual of the rigid fit on the lower teeth (m)."""

    axis: np.ndarray
    centre: np.ndarray
    angle: float
    rms: float = 0.0
    max: float = 0.0

    def rotation(self, angle: float | None = None) -> np.ndarray:
        return rotation_matrix(self.axis, self.angle if angle is None else angle)

    def apply(self, verts: np.ndarray, angle: float | None = None) -> np.ndarray:
        """verts [N,3] rotated about the hinge -> [N,3]."""
        R = self.rotation(angle)
        return (verts - self.centre) @ R.T + self.centre

    def pose(self, weight: float = 1.0) -> np.ndarray:
        """FLAME jaw_pose axis-angle [3] for jawOpen at `weight`."""
        return self.axis * self.angle * weight


def _procrustes_about(X: np.ndarray, Y: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The rotation R [3,3] that best maps X - c onto Y - c (no translation)."""
    U, _, Vt = np.linalg.svd((X - c).T @ (Y - c))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    return Vt.T @ D @ U.T


def fit_hinge(rest: np.ndarray, moved: np.ndarray, iters: int = 100) -> JawHinge:
    """The pure rotation (axis through a centre, no slide along it) best mapping rest [N,3] to
    moved [N,3] in least squares, by alternating: R given c (Procrustes about c), c given R
    ((I - R) c = mean(Y - R X)). The centre is the point of the axis nearest the points' centroid.
    """
    X, Y = np.asarray(rest, np.float64), np.asarray(moved, np.float64)
    c = X.mean(0)
    for _ in range(iters):
        R = _procrustes_about(X, Y, c)
        c = np.linalg.lstsq(np.eye(3) - R, (Y - X @ R.T).mean(0), rcond=None)[0]
    R = _procrustes_about(X, Y, c)
    angle = float(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
    axis = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2 * np.sin(angle))
    axis /= np.linalg.norm(axis)
    centroid = X.mean(0)
    c = c + axis * ((centroid - c) @ axis)
    hinge = JawHinge(axis, c, angle)
    res = np.linalg.norm(hinge.apply(X) - Y, axis=1)
    hinge.rms, hinge.max = float(np.sqrt(np.mean(res**2))), float(res.max())
    return hinge


def affine_weights(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Weights w [K] with sum 1 and sum w_k points_k = target, nearest the uniform 1/K (least
    norm): a joint regressed from vertices that lands exactly on `target` at rest."""
    P = np.asarray(points, np.float64)
    K = len(P)
    A = np.vstack([P.T, np.ones((1, K))])  # [4,K]
    b = np.append(np.asarray(target, np.float64), 1.0)
    w0 = np.full(K, 1.0 / K)
    return w0 + np.linalg.lstsq(A, b - A @ w0, rcond=None)[0]


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through points [N,3] -> (centre [3], radius)."""
    A = np.c_[2 * points, np.ones(len(points))]
    x = np.linalg.lstsq(A, (points**2).sum(1), rcond=None)[0]
    return x[:3], float(np.sqrt(x[3] + x[:3] @ x[:3]))


def eyeball_centre(sclera: np.ndarray, iters: int = 5) -> np.ndarray:
    """Rotation centre of an eyeball: sphere fit to its sclera [N,3] without the front cone
    (the cornea bulges out of the sphere). -> [3]."""
    c, _ = fit_sphere(sclera)
    for _ in range(iters):
        u = sclera - c
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        c, _ = fit_sphere(sclera[u[:, 2] < np.cos(np.radians(EYE_FRONT_CONE_DEG))])
    return c


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def smooth_on(values: np.ndarray, movable: np.ndarray, faces: np.ndarray, iters: int) -> np.ndarray:
    """Laplacian smoothing of values [V] over the mesh: vertices where movable [V] bool take the
    mean of their neighbours (every neighbour counts, fixed or not), `iters` passes."""
    V = len(values)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.unique(np.concatenate([e, e[:, ::-1]]), axis=0)
    deg = np.bincount(e[:, 0], minlength=V).astype(np.float64)
    out = values.astype(np.float64).copy()
    for _ in range(iters):
        acc = np.bincount(e[:, 0], weights=out[e[:, 1]], minlength=V)
        out = np.where(movable & (deg > 0), acc / np.maximum(deg, 1), out)
    return out


@dataclass
class Rig:
    """J_regressor [5,V], weights [V,5], jaw hinge, jaw_corrective [V,3] (rest-space offset that
    makes the posed jaw at the hinge angle reproduce jawOpen exactly, but on the lower teeth,
    which stay rigid), fit figures (m)."""

    J_regressor: np.ndarray
    weights: np.ndarray
    hinge: JawHinge
    jaw_corrective: np.ndarray
    figures: dict


def build_rig(
    verts: np.ndarray,
    faces: np.ndarray,
    jaw_open: np.ndarray,
    parts: dict[str, tuple[int, int]],
    skin_parts: tuple[str, ...] = ("face", "head_neck"),
) -> Rig:
    """The skeleton and skinning of the ICT head.

    verts [V,3] rest (m), faces [F,3], jaw_open [V,3] (jawOpen's offsets, m), parts: name ->
    vertex range [start, end). Lower teeth fix the hinge; every other vertex follows the jaw by
    how much of the hinge's motion jawOpen gives it (projection ratio, clipped to [0,1]): gums
    and tongue are split at 0.5 into jaw (1) and head (0); the skin and the mouth socket keep the
    ratio, smoothed over the mesh.
    """
    V = len(verts)
    rng = lambda name: np.arange(*parts[name])  # noqa: E731
    lower = rng("teeth_lower")
    hinge = fit_hinge(verts[lower], verts[lower] + jaw_open[lower])
    rigid = hinge.apply(verts) - verts  # [V,3] what a rigid jaw would do
    ratio = (jaw_open * rigid).sum(1) / np.maximum((rigid**2).sum(1), 1e-18)
    jaw = np.clip(ratio, 0.0, 1.0)
    jaw[np.linalg.norm(jaw_open, axis=1) < 1e-7] = 0.0
    skin = np.zeros(V, bool)
    for name in skin_parts + ("mouth_socket",):
        skin[rng(name)] = True
    jaw = np.where(skin, smooth_on(jaw, skin, faces, JAW_SMOOTH_ITERS), jaw)
    gums = rng("gums_tongue")
    jaw[gums] = (ratio[gums] > 0.5).astype(np.float64)
    jaw[lower] = 1.0
    rigid_only = ~skin
    rigid_only[gums] = rigid_only[lower] = True
    for name in ("teeth_upper", "eyeball_left", "eyeball_right"):
        jaw[rng(name)] = 0.0

    # root / neck: rings of the skin at two heights; the neck's lower part blends to the root
    skin_idx = np.concatenate([rng(n) for n in skin_parts])
    J = np.zeros((5, V))
    for j, ring_y in ((0, ROOT_RING_Y), (1, NECK_RING_Y)):
        ring = skin_idx[np.abs(verts[skin_idx, 1] - ring_y) < RING_HALF_HEIGHT]
        J[j, ring] = 1.0 / len(ring)
    root = np.zeros(V)
    root[skin_idx] = smoothstep(NECK_RING_Y + NECK_BLEND_ABOVE, ROOT_RING_Y - NECK_BLEND_BELOW, verts[skin_idx, 1])
    jaw = jaw * (1 - root)

    # jaw joint: the hinge centre as an affine mix of skin vertices nearest the axis, both sides
    rel = verts[skin_idx] - hinge.centre
    dist = np.linalg.norm(rel - np.outer(rel @ hinge.axis, hinge.axis), axis=1)
    side = np.sign(rel @ hinge.axis)
    anchors = np.concatenate(
        [skin_idx[side == s][np.argsort(dist[side == s], kind="stable")[:JAW_ANCHORS_PER_SIDE]] for s in (1, -1)]
    )
    J[2, anchors] = affine_weights(verts[anchors], hinge.centre)

    W = np.zeros((V, 5))
    W[:, 0], W[:, 2] = root, jaw
    W[:, 1] = 1 - root - jaw
    for joint, name in ((3, "eyeball_left"), (4, "eyeball_right")):
        idx = rng(name)
        sclera = rng(name.replace("eyeball", "sclera"))
        centre = eyeball_centre(verts[sclera])
        J[joint, sclera] = affine_weights(verts[sclera], centre)
        W[idx] = 0.0
        W[idx, joint] = 1.0

    # blended transform of each vertex at the hinge angle; the corrective undoes LBS's error
    R = hinge.rotation()
    t = hinge.centre - R @ hinge.centre
    M = np.eye(3)[None] * (1 - W[:, 2:3, None]) + W[:, 2:3, None] * R[None]  # [V,3,3]
    lbs = np.einsum("vij,vj->vi", M, verts) + W[:, 2:3] * t
    target = verts + jaw_open
    corrective = np.einsum("vij,vj->vi", np.linalg.inv(M), target - W[:, 2:3] * t) - verts
    corrective[np.linalg.norm(target - lbs, axis=1) < 1e-9] = 0.0
    corrective[lower] = 0.0  # the lower teeth stay exactly rigid (their residual is the hinge fit's)
    err = np.linalg.norm(lbs - target, axis=1)
    face = rng("face")
    figures = {
        "hinge_rms_m": hinge.rms,
        "hinge_max_m": hinge.max,
        "hinge_angle_deg": float(np.degrees(hinge.angle)),
        "lbs_only_face_rms_m": float(np.sqrt(np.mean(err[face] ** 2))),
        "lbs_only_face_max_m": float(err[face].max()),
        "lbs_only_all_rms_m": float(np.sqrt(np.mean(err**2))),
        "lbs_only_all_max_m": float(err.max()),
        "non_skin_max_m": float(err[rigid_only].max()),
    }
    return Rig(J, W, hinge, corrective, figures)


def posed_jaw(
    verts: np.ndarray,
    weights: np.ndarray,
    hinge: JawHinge,
    corrective: np.ndarray | None = None,
    angle: float | None = None,
) -> np.ndarray:
    """LBS of verts [V,3] (+ corrective [V,3] scaled by sin(angle)/sin(hinge angle)) with only the
    jaw rotated by `angle` about the hinge (default: jawOpen's): [V,3]. Numpy twin of FlameLayer's
    pose for this one case, for the converter's figures."""
    a = hinge.angle if angle is None else angle
    R = hinge.rotation(a)
    t = hinge.centre - R @ hinge.centre
    w = weights[:, 2:3]
    M = np.eye(3)[None] * (1 - w[..., None]) + w[..., None] * R[None]
    x = verts if corrective is None else verts + corrective * (np.sin(a) / np.sin(hinge.angle))
    return np.einsum("vij,vj->vi", M, x) + w * t


def jaw_posedirs(hinge: JawHinge, corrective: np.ndarray) -> np.ndarray:
    """FLAME posedirs [V,3,36] carrying the jaw corrective: features 9..17 are (R_jaw - I)
    flattened row by row; column g = vec(K) / (sin(angle) |K|_F^2) (K the hinge's cross-product
    matrix) gives g . vec(R(theta) - I) = sin(theta') / sin(angle) for rotations about the hinge
    axis (theta' the part of the rotation about it), so the corrective is 1 at jawOpen and 0 at
    rest; eye, neck and root rotations do not touch it."""
    K = skew(hinge.axis)
    g = K.reshape(-1) / (np.sin(hinge.angle) * np.sum(K * K))
    P = np.zeros(corrective.shape + (36,))
    P[:, :, 9:18] = corrective[:, :, None] * g[None, None, :]
    return P
