"""Cameras in the EG3D / Next3D convention, and orbit / turntable generators.

A camera is cam2world [4,4] (OpenCV axes: x right, y down, z forward) plus normalised
intrinsics [3,3] (focal 4.2647 = 18.837 degree FOV, principal point 0.5); EG3D conditions its
generator on the 25 values of both flattened. Cameras look at a pivot from a radius, at a yaw
(about +y, positive turns the camera towards +x) and a pitch (positive looks from above).

FLAME metres map into this world as Next3D does: world = 2.5 * (v + [0, -0.01, -0.01]) (its
planes rasterise (v + shift) * 5 into [-1, 1] and sample tri-planes with box_warp 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from faceedit_core.errors import InputError

FOCAL = 4.2647
RADIUS = 2.7
PIVOT = (0.0, 0.0, 0.2)  # EG3D's look-at point (the face)
TURNTABLE_PIVOT = (0.0, -0.06, -0.03)  # the middle of a FLAME head in world units: turntables orbit it
TURNTABLE_RADIUS = 3.4  # far enough to keep head and neck in the frame
PORTRAIT_PIVOT = (0.0, 0.0, -0.04)  # the middle of the head (face to nape, crown to an open chin), world units
PORTRAIT_RADIUS = 3.1  # the whole head, a wide-open jaw included, at any yaw
FLAME_SHIFT = (0.0, -0.01, -0.01)
FLAME_SCALE = 2.5
MAX_VIEWS = 64


def flame_to_world(verts: torch.Tensor) -> torch.Tensor:
    """FLAME vertices in metres [...,3] -> EG3D/Next3D world units [...,3]."""
    return (verts + verts.new_tensor(FLAME_SHIFT)) * FLAME_SCALE


@dataclass
class Cameras:
    """A batch of N cameras: cam2world [N,4,4], intrinsics [N,3,3] (normalised)."""

    cam2world: torch.Tensor
    intrinsics: torch.Tensor

    def __len__(self) -> int:
        return self.cam2world.shape[0]

    def eg3d_c(self) -> torch.Tensor:
        """[N,25]: cam2world flattened then intrinsics flattened."""
        return torch.cat([self.cam2world.reshape(-1, 16), self.intrinsics.reshape(-1, 9)], dim=1)

    @classmethod
    def from_eg3d_c(cls, c: torch.Tensor) -> "Cameras":
        if c.dim() != 2 or c.shape[1] != 25:
            raise InputError(f"cameras must have shape [N,25], got {list(c.shape)}")
        if not torch.isfinite(c).all():
            raise InputError("cameras contain NaN or Inf")
        return cls(c[:, :16].reshape(-1, 4, 4), c[:, 16:].reshape(-1, 3, 3))

    def project(self, points: torch.Tensor, near: float = 0.1, far: float = 10.0) -> torch.Tensor:
        """World points [P,3] or [N,P,3] -> clip coordinates [N,P,4] for `rasterize` (y up)."""
        R, t = self.cam2world[:, :3, :3], self.cam2world[:, :3, 3]
        fx, fy = self.intrinsics[:, 0, 0], self.intrinsics[:, 1, 1]
        cx, cy = self.intrinsics[:, 0, 2], self.intrinsics[:, 1, 2]
        # camera coordinates (x right, y down, z forward) are (p - t) R; normalised image coords are
        # u = fx x/z + cx (right), v = fy y/z + cy (down), NDC = 2u-1, 1-2v: so clip x, y and w are
        # linear in them (K), and world -> clip is one matrix per camera, R K, plus an offset
        K = torch.zeros(len(self), 3, 4, dtype=R.dtype, device=R.device)
        K[:, 0, 0], K[:, 2, 0] = 2 * fx, 2 * cx - 1
        K[:, 1, 1], K[:, 2, 1] = -2 * fy, 1 - 2 * cy
        K[:, 2, 3] = 1
        M = R @ K  # [N,3,4]
        if points.dim() == 2:  # one GEMM for all cameras
            lin = (points @ M.transpose(0, 1).reshape(3, -1)).view(len(points), len(self), 4).transpose(0, 1)
        else:
            lin = points @ M
        clip = lin - t[:, None] @ M  # [N,P,4], its z column unused
        w = clip[..., 3:]
        return torch.cat([clip[..., :2], (w - near) / (far - near) * w, w], -1)


def intrinsics(n: int, focal: float = FOCAL) -> torch.Tensor:
    K = torch.tensor([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1.0]])
    return K.expand(n, 3, 3).clone()


def look_at(origins: torch.Tensor, pivot=PIVOT) -> torch.Tensor:
    """Camera origins [N,3] looking at `pivot` -> cam2world [N,4,4] (OpenCV axes, world y up)."""
    target = origins.new_tensor(pivot).expand_as(origins)
    forward = torch.nn.functional.normalize(target - origins, dim=-1)
    world_up = origins.new_tensor([0.0, 1.0, 0.0]).expand_as(origins)
    right = -torch.nn.functional.normalize(torch.cross(world_up, forward, dim=-1), dim=-1)
    down = torch.cross(forward, right, dim=-1)
    m = torch.eye(4).repeat(len(origins), 1, 1)
    m[:, :3, 0], m[:, :3, 1], m[:, :3, 2], m[:, :3, 3] = right, down, forward, origins
    return m


def orbit(yaws_deg, pitches_deg, radius: float = RADIUS, pivot=PIVOT, focal: float = FOCAL) -> Cameras:
    """Cameras at the given yaw/pitch pairs (degrees) around the pivot."""
    yaw = torch.as_tensor(yaws_deg, dtype=torch.float32).reshape(-1)
    pitch = torch.as_tensor(pitches_deg, dtype=torch.float32).reshape(-1).expand_as(yaw)
    if len(yaw) > MAX_VIEWS:
        raise InputError(f"{len(yaw)} views requested, the limit is {MAX_VIEWS}")
    if not (0.5 <= radius <= 20):
        raise InputError(f"camera radius {radius} is outside 0.5..20")
    if pitch.abs().max() >= 89.9:
        raise InputError("camera pitch must stay within (-89.9, 89.9) degrees")
    y, p = torch.deg2rad(yaw), torch.deg2rad(pitch)
    offset = torch.stack([torch.sin(y) * torch.cos(p), torch.sin(p), torch.cos(y) * torch.cos(p)], -1)
    origins = torch.tensor(pivot, dtype=torch.float32) + radius * offset
    return Cameras(look_at(origins, pivot), intrinsics(len(yaw), focal))


def portrait(yaws_deg, pitches_deg, radius: float = PORTRAIT_RADIUS) -> Cameras:
    """Views of the whole head for contact sheets and atlases: `orbit` about the middle of the head,
    not about EG3D's face point, so a three-quarter view keeps the back of the head in the frame."""
    return orbit(yaws_deg, pitches_deg, radius, PORTRAIT_PIVOT)


def turntable(
    n_views: int,
    yaw_range=(-180.0, 180.0),
    pitch_deg: float = 0.0,
    radius: float = TURNTABLE_RADIUS,
    pivot=TURNTABLE_PIVOT,
) -> Cameras:
    """n_views cameras evenly spaced in yaw over yaw_range (end excluded for a full turn)."""
    if not 1 <= n_views <= MAX_VIEWS:
        raise InputError(f"views must be within 1..{MAX_VIEWS}, got {n_views}")
    lo, hi = yaw_range
    full = math.isclose(hi - lo, 360.0)
    yaws = (
        torch.linspace(lo, hi, n_views + (1 if full else 0))[:n_views]
        if n_views > 1
        else torch.tensor([0.5 * (lo + hi)])
    )
    return orbit(yaws, pitch_deg, radius, pivot)


NEXT3D_PLANE_SCALE = 5.0
NEXT3D_VIEWS = ("front", "yaw+90", "yaw-90", "top")


def next3d_plane_clip(verts: torch.Tensor) -> torch.Tensor:
    """Next3D's orthographic plane views of FLAME vertices: [B,V,3] -> clip [B,4,V,4].

    Views in NEXT3D_VIEWS order: front, the head turned +90 and -90 degrees about y, and seen
    from the top (pitch 90). Each maps (v + [0, -0.01, -0.01]) * 5 into NDC [-1, 1] (x right,
    y up, depth = -z of the turned head, nearer is smaller), w = 1.
    """
    v = (verts + verts.new_tensor(FLAME_SHIFT)) * NEXT3D_PLANE_SCALE
    c, s = 0.0, 1.0  # cos and sin of 90 degrees
    rots = verts.new_tensor(
        [
            [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
            [[c, 0, s], [0, 1, 0], [-s, 0, c]],
            [[c, 0, -s], [0, 1, 0], [s, 0, c]],
            [[1, 0, 0], [0, c, -s], [0, s, c]],
        ]
    )
    turned = torch.einsum("kij,bvj->bkvi", rots, v)
    ones = torch.ones_like(turned[..., :1])
    depth = (1 - turned[..., 2:3]) * 0.5  # z in [-1, 1] towards the viewer -> depth in [0, 1]
    return torch.cat([turned[..., :2], depth, ones], -1)
