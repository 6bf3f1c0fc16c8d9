"""The procedural demo head: a FLAME-layout head model built from code in about a second.

`build_demo_head()` returns a `DemoHead`: a `FlameModel` (same array names and meanings as the
official FLAME file, fewer vertices), its 68-landmark embedding in DECA's layout, and the
documented expression components (FACS-like, localised). See docs/demo_head.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from faceedit_core.flame.io import FlameModel, LandmarkEmbedding
from faceedit_core.flame.procedural_expressions import COMPONENTS, ExpressionComponent, expression_basis
from faceedit_core.flame.procedural_landmarks import landmark_embedding
from faceedit_core.flame.procedural_shape import (
    CHIN_Y,
    EYEBALL_RADIUS,
    MOUTH_Y,
    SkinGrid,
    build_skin,
    eye_centre,
    smoothstep,
)
from faceedit_core.flame.procedural_topology import HeadTopology, build_topology

GENERATOR_VERSION = 1
N_SHAPE_COMPONENTS = 40  # meaningful identity components; columns up to 300 are zero


@dataclass
class DemoHead:
    model: FlameModel
    landmarks: LandmarkEmbedding
    components: list[ExpressionComponent]
    topology: HeadTopology

    def content_hash(self) -> str:
        h = hashlib.sha256()
        for name in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "parents", "f", "vt", "ft"):
            h.update(np.ascontiguousarray(getattr(self.model, name)).tobytes())
        for name in ("static_faces", "static_bary", "dynamic_faces", "dynamic_bary", "full_faces", "full_bary"):
            h.update(np.ascontiguousarray(getattr(self.landmarks, name)).tobytes())
        return h.hexdigest()


# heights (m) of the vertex rings whose centroids are the root, neck and jaw joints
ROOT_Y, NECK_Y, JAW_Y = -0.15, -0.088, -0.028


def skinning_weights(verts: np.ndarray, topo: HeadTopology, grid: SkinGrid) -> np.ndarray:
    """[V,5]: root for the lower neck, jaw for the chin/lower lip, eyes for the eyeballs, neck else."""
    V = len(verts)
    w = np.zeros((V, 5))
    x, y, z = verts.T
    root = smoothstep(-0.12, -0.15, y)
    jaw = (
        smoothstep(MOUTH_Y + 0.0004, MOUTH_Y - 0.0012, y)  # below the mouth line
        * smoothstep(-0.05, 0.025, z - 0.5 * np.abs(x))  # the front of the lower face
        * smoothstep(CHIN_Y - 0.018, CHIN_Y + 0.006, y)
    )  # fading out under the chin
    # the pocket's lower half follows the jaw, its upper half the head: split at the mouth line
    skin = topo.skin_index
    pocket = grid.pocket.reshape(-1) > 0
    jaw[skin[pocket]] = 0.5
    jaw = np.clip(jaw, 0, 1) * (1 - root)
    w[:, 0] = root
    w[:, 2] = jaw
    w[:, 1] = 1 - root - jaw
    for side, joint in ((1, 3), (-1, 4)):
        idx = topo.eyeball_index[side]
        w[idx] = 0
        w[idx, joint] = 1
    return w


def joint_regressor(verts: np.ndarray, topo: HeadTopology) -> np.ndarray:
    """[5,V]: each joint is the mean of a vertex group whose centroid sits at the joint."""
    J = np.zeros((5, len(verts)))
    skin = topo.skin_index
    ys, xs = verts[skin, 1], np.abs(verts[skin, 0])
    # root and neck: a whole ring at the pivot height; jaw: the ring's sides near the ears
    for j, pivot_y, min_abs_x in ((0, ROOT_Y, 0.0), (1, NECK_Y, 0.0), (2, JAW_Y, 0.06)):
        ring = skin[(np.abs(ys - pivot_y) < 0.004) & (xs >= min_abs_x)]
        J[j, ring] = 1.0 / len(ring)
    for side, joint in ((1, 3), (-1, 4)):
        idx = topo.eyeball_index[side]
        J[joint, idx] = 1.0 / len(idx)
    return J


def shape_basis(verts: np.ndarray, topo: HeadTopology, n: int = N_SHAPE_COMPONENTS, seed: int = 7) -> np.ndarray:
    """[V,3,300]: smooth identity components, about 3 mm per unit coefficient, decaying.

    The first five are global (width, height, depth, jaw width, face length); the rest are
    smooth random fields (sums of broad Gaussians, mirror-symmetric). Eyeballs move rigidly
    with the skin around them so they stay in their sockets.
    """
    rng = np.random.default_rng(seed)
    V = len(verts)
    dirs = np.zeros((V, 3, 300))
    x, y, z = verts.T
    c = verts - np.array([0, 0.0, -0.015])
    dirs[:, 0, 0] = c[:, 0] * 0.04
    dirs[:, 1, 1] = c[:, 1] * 0.03
    dirs[:, 2, 2] = c[:, 2] * 0.04
    dirs[:, 0, 3] = c[:, 0] * 0.08 * smoothstep(0.0, -0.06, y) * (z > -0.02)
    dirs[:, 1, 4] = np.minimum(y, 0) * 0.05 * (z > -0.03)
    for k in range(5, n):
        centre = verts[rng.integers(V)]
        sigma = rng.uniform(0.025, 0.05)
        amp = 0.003 * (k + 1) ** -0.5 * rng.normal(size=3)
        for mirror in (1, -1):
            cm = centre * np.array([mirror, 1, 1])
            g = np.exp(-0.5 * np.sum((verts - cm) ** 2, axis=1) / sigma**2)
            dirs[:, :, k] += g[:, None] * (amp * np.array([mirror, 1, 1]))[None]
    for side in (1, -1):  # eyeballs follow the socket rim's mean displacement
        idx = topo.eyeball_index[side]
        rim = topo.skin_index[np.linalg.norm(verts[topo.skin_index] - eye_centre(side), axis=1) < 0.02]
        dirs[idx] = dirs[rim].mean(axis=0, keepdims=True)
    return dirs


def build_demo_head() -> DemoHead:
    """Build the demo head deterministically (about a second on one CPU core)."""
    grid = build_skin()
    topo = build_topology(grid)
    verts = topo.vertices
    expr = expression_basis(verts, topo, grid)  # [V,3,100]
    shapedirs = np.concatenate([shape_basis(verts, topo), expr], axis=2)
    model = FlameModel(
        v_template=verts.astype(np.float32),
        shapedirs=shapedirs.astype(np.float32),
        posedirs=np.zeros((len(verts), 3, 36), np.float32),
        J_regressor=joint_regressor(verts, topo).astype(np.float32),
        weights=skinning_weights(verts, topo, grid).astype(np.float32),
        parents=np.array([-1, 0, 1, 1, 1]),
        f=topo.faces.astype(np.int64),
        vt=topo.uvs.astype(np.float32),
        ft=topo.uv_faces.astype(np.int64),
        meta={"source": "faceedit procedural demo head", "generator_version": GENERATOR_VERSION},
    ).validate()
    return DemoHead(
        model=model, landmarks=landmark_embedding(model, topo, grid), components=list(COMPONENTS), topology=topo
    )


__all__ = ["DemoHead", "build_demo_head", "COMPONENTS", "ExpressionComponent", "EYEBALL_RADIUS", "GENERATOR_VERSION"]
