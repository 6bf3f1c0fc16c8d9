"""FlameLayer: the FLAME head model as a differentiable torch module.

A thin module that holds the model arrays as buffers and calls the pure functions of
`lbs.py` and `landmarks.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from faceedit_core.flame.io import FlameModel, LandmarkEmbedding, load_flame_model, load_landmark_embedding
from faceedit_core.flame.landmarks import contour_rows, landmarks_from_faces
from faceedit_core.flame.lbs import blend_shapes, lbs
from faceedit_core.params import FlameParams


@dataclass
class FlameOutput:
    """vertices [B,V,3], joints [B,5,3] (posed), landmarks [B,68,3] (DECA's yaw-dependent
    contour + 51 static), landmarks_full [B,68,3] (the fixed 68-point embedding); metres."""

    vertices: torch.Tensor
    joints: torch.Tensor
    landmarks: torch.Tensor
    landmarks_full: torch.Tensor


class KeptResult:
    """The result computed for the last key tensor: `get(key)` returns it while `key` equals that
    key (same shape, device, dtype and values), else None; `keep(key, value)` replaces it (with a
    copy of the key). One tuple is swapped at a time, so a reader never pairs a key with another
    key's value."""

    def __init__(self):
        self._entry: tuple[torch.Tensor, object] | None = None

    def get(self, key: torch.Tensor):
        entry = self._entry
        if entry is None:
            return None
        last = entry[0]
        same = last.shape == key.shape and last.device == key.device and last.dtype == key.dtype
        return entry[1] if same and torch.equal(last, key) else None

    def keep(self, key: torch.Tensor, value) -> None:
        self._entry = (key.detach().clone(), value)


class FlameLayer(nn.Module):
    """FLAME forward pass: FlameParams -> FlameOutput.

    Expression coefficient k uses shapedirs column model.n_shape + k (300 + k in FLAME's files)
    whatever the number of shape coefficients given; shorter shape/expression vectors are prefixes
    of the model's.
    """

    def __init__(self, model: FlameModel, landmarks: LandmarkEmbedding):
        super().__init__()
        model.validate()
        landmarks.validate(n_faces=model.f.shape[0])
        as32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        V = model.n_verts
        self.register_buffer("v_template", as32(model.v_template))
        # blendshapes as [L, V*3] matrices: a prefix of coefficients is a prefix of rows. A model
        # whose float32 shapedirs [V,3,L] is a transposed view of an [L,V,3] array (the ICT loader
        # builds it so) is used in place: no copy of its (48 MB) blendshapes
        dirs = np.asarray(model.shapedirs, dtype=np.float32).reshape(V * 3, -1).T
        n_shape = int(model.n_shape)
        self.register_buffer("shapedirs", torch.from_numpy(np.ascontiguousarray(dirs[:n_shape])))
        self.register_buffer("exprdirs", torch.from_numpy(np.ascontiguousarray(dirs[n_shape:])))
        # components that are zero at every vertex add nothing (the procedural head fills 40 of the
        # 300 shape and 16 of the 100 expression slots): blends skip them
        self._live = {name: _LiveRows.of(getattr(self, name)) for name in ("shapedirs", "exprdirs")}
        # [V,3,36] -> [36, 3V] with row index 3v + c (C order), as FLAME's correctives are stored;
        # rows that are zero everywhere (the ICT head has only the jaw's 9) are skipped too
        self.register_buffer("posedirs", as32(model.posedirs.reshape(V * 3, -1).T.copy()))
        live_pose = _LiveRows.of(self.posedirs)
        self.pose_rows = None if live_pose is None else torch.tensor(live_pose.rows, dtype=torch.long)
        self.register_buffer("J_regressor", as32(model.J_regressor))
        self.register_buffer("lbs_weights", as32(model.weights))
        self.register_buffer("parents", torch.as_tensor(model.parents, dtype=torch.long))
        self.register_buffer("faces", torch.as_tensor(model.f, dtype=torch.long))
        self.register_buffer("static_faces", torch.as_tensor(landmarks.static_faces, dtype=torch.long))
        self.register_buffer("static_bary", as32(landmarks.static_bary))
        self.register_buffer("dynamic_faces", torch.as_tensor(landmarks.dynamic_faces, dtype=torch.long))
        self.register_buffer("dynamic_bary", as32(landmarks.dynamic_bary))
        self.register_buffer("full_faces", torch.as_tensor(landmarks.full_faces, dtype=torch.long))
        self.register_buffer("full_bary", as32(landmarks.full_bary))
        self.uvs = None if model.vt is None else torch.as_tensor(model.vt, dtype=torch.float32)
        self.uv_faces = None if model.ft is None else torch.as_tensor(model.ft, dtype=torch.long)
        self.model = model
        self._identity = KeptResult()  # shape [B,S] -> template + shape offsets [B,V,3]

    @classmethod
    def from_files(
        cls,
        model_path: str | os.PathLike,
        landmark_path: str | os.PathLike,
        dynamic_path: str | os.PathLike | None = None,
    ) -> "FlameLayer":
        return cls(load_flame_model(model_path), load_landmark_embedding(landmark_path, dynamic_path))

    @property
    def n_shape(self) -> int:
        return int(self.shapedirs.shape[0])

    @property
    def n_exp(self) -> int:
        return int(self.exprdirs.shape[0])

    @property
    def n_verts(self) -> int:
        return int(self.v_template.shape[0])

    def forward(self, params: FlameParams) -> FlameOutput:
        params.validate(n_shape=self.n_shape, n_exp=self.n_exp)
        p = params.to(self.v_template.device, self.v_template.dtype)
        # in place on fresh results (the same sums): each [B,V,3] temporary is memory faulted in anew
        v_shaped = self._blend(p.expression, "exprdirs").add_(self.identity_template(p.shape))
        rows = None if self.pose_rows is None else self.pose_rows.to(self.posedirs.device)
        verts, joints = lbs(
            v_shaped, p.full_pose(), self.posedirs, self.J_regressor, self.parents, self.lbs_weights, pose_rows=rows
        )
        landmarks = self.landmarks(verts, p.global_pose, p.neck_pose)
        full = landmarks_from_faces(verts, self.faces, self.full_faces, self.full_bary)
        t = p.transl[:, None]
        verts = verts + t if verts.requires_grad else verts.add_(t)  # the landmarks' gathers saved verts for backward
        return FlameOutput(verts, joints + t, landmarks + t, full + t)

    def identity_template(self, shape: torch.Tensor) -> torch.Tensor:
        """Template plus shape blendshapes: shape [B,S] -> [B,V,3].

        The last identity's result is kept (when `shape` needs no gradient): edits change the
        expression and jaw of one face again and again, and the 300-row shape matmul is the
        largest single cost of a forward pass. Same values as computing it afresh (the model
        arrays are constants of the layer).
        """
        if shape.requires_grad:
            return self.v_template + self._blend(shape, "shapedirs")
        shaped = self._identity.get(shape)
        if shaped is None:
            shaped = self.v_template + self._blend(shape, "shapedirs")
            self._identity.keep(shape, shaped)
        return shaped

    def _blend(self, coeffs: torch.Tensor, name: str) -> torch.Tensor:
        """coeffs [B,L] (a prefix of the model's components) x the `name` blendshapes -> [B,V,3]."""
        dirs, live = getattr(self, name), self._live[name]
        if live is None:
            return blend_shapes(coeffs, dirs[: coeffs.shape[1]])
        rows = live.below(coeffs.shape[1], dirs.device)
        if not rows.numel():
            return torch.zeros(coeffs.shape[0], self.n_verts, 3, dtype=dirs.dtype, device=dirs.device)
        return blend_shapes(coeffs.index_select(1, rows), dirs.index_select(0, rows))

    def subset(self, extra_vertices: torch.Tensor | None = None) -> "FlameSubset":
        """A layer that poses only the vertices the 68 landmarks (and `extra_vertices`) need."""
        return FlameSubset(self, extra_vertices)

    def landmarks(self, verts: torch.Tensor, global_pose: torch.Tensor, neck_pose: torch.Tensor) -> torch.Tensor:
        """68 landmarks of any mesh with this topology: verts [B,V,3], poses [B,3] -> [B,68,3]."""
        rows = contour_rows(global_pose, neck_pose)
        contour = landmarks_from_faces(verts, self.faces, self.dynamic_faces[rows], self.dynamic_bary[rows])
        static = landmarks_from_faces(verts, self.faces, self.static_faces, self.static_bary)
        return torch.cat([contour, static], dim=1)


class _LiveRows:
    """Indices of the blendshape rows [L, V*3] that are not all zero; None from `of` when all are."""

    def __init__(self, rows: list[int]):
        self.rows = rows
        self._device_rows: dict = {}

    @classmethod
    def of(cls, dirs: torch.Tensor) -> "_LiveRows | None":
        live = torch.nonzero((dirs.amax(1) > 0) | (dirs.amin(1) < 0)).squeeze(1).tolist()  # no |dirs| copy
        return None if len(live) == len(dirs) else cls(live)

    def below(self, n: int, device: torch.device) -> torch.Tensor:
        """Live rows < n as a long tensor on `device`."""
        key = (n, device)
        if key not in self._device_rows:
            self._device_rows[key] = torch.tensor([r for r in self.rows if r < n], dtype=torch.long, device=device)
        return self._device_rows[key]


class FlameSubset(nn.Module):
    """FLAME posed on a vertex subset: the corners of every landmark face plus extra vertices.

    Exact (same joints, same skinning) and much cheaper than the full mesh: for optimisation
    loops that only look at landmarks and a few probe vertices.
    forward(params) -> (verts [B,S,3] of `vertex_ids`, landmarks [B,68,3]).
    """

    def __init__(self, full: FlameLayer, extra_vertices: torch.Tensor | None = None):
        super().__init__()
        used = [
            full.faces[full.static_faces],
            full.faces[full.dynamic_faces].reshape(-1, 3),
            full.faces[full.full_faces],
        ]
        if extra_vertices is not None:
            used.append(torch.as_tensor(extra_vertices, dtype=torch.long).reshape(-1, 1).expand(-1, 3))
        ids = torch.unique(torch.cat([u.reshape(-1) for u in used]))
        remap = torch.zeros(full.n_verts, dtype=torch.long)
        remap[ids] = torch.arange(len(ids))
        V, S = full.n_verts, len(ids)
        self.full = full
        self.register_buffer("vertex_ids", ids)
        self.register_buffer("remap", remap)
        self.register_buffer("v_template", full.v_template[ids])
        cols = (ids[:, None] * 3 + torch.arange(3)).reshape(-1)  # columns of the kept vertices in [L, V*3]
        self.register_buffer("shapedirs", full.shapedirs[:, cols].contiguous())
        self.register_buffer("exprdirs", full.exprdirs[:, cols].contiguous())
        self.register_buffer("posedirs", full.posedirs.reshape(-1, V, 3)[:, ids].reshape(-1, S * 3))
        self.register_buffer("lbs_weights", full.lbs_weights[ids])
        self.register_buffer("joint_template", torch.einsum("jv,vc->jc", full.J_regressor, full.v_template))
        regress = lambda dirs: torch.einsum("jv,lvc->ljc", full.J_regressor, dirs.view(len(dirs), V, 3)).reshape(
            len(dirs), -1
        )  # noqa: E731
        self.register_buffer("joint_shapedirs", regress(full.shapedirs))  # [n_shape, J*3]
        self.register_buffer("joint_exprdirs", regress(full.exprdirs))  # [n_exp, J*3]
        self.register_buffer("faces", remap[full.faces])

    def forward(self, params: FlameParams) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.full
        p = params.to(self.v_template.device, self.v_template.dtype)
        v_shaped = (
            self.v_template
            + blend_shapes(p.shape, self.shapedirs[: p.n_shape])
            + blend_shapes(p.expression, self.exprdirs[: p.n_exp])
        )
        rest_joints = (
            self.joint_template
            + blend_shapes(p.shape, self.joint_shapedirs[: p.n_shape])
            + blend_shapes(p.expression, self.joint_exprdirs[: p.n_exp])
        )
        verts, _ = lbs(
            v_shaped, p.full_pose(), self.posedirs, None, f.parents, self.lbs_weights, rest_joints=rest_joints
        )
        rows = contour_rows(p.global_pose, p.neck_pose)
        contour = landmarks_from_faces(verts, self.faces, f.dynamic_faces[rows], f.dynamic_bary[rows])
        static = landmarks_from_faces(verts, self.faces, f.static_faces, f.static_bary)
        t = p.transl[:, None]
        return verts + t, torch.cat([contour, static], dim=1) + t
