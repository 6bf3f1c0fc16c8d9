"""Neural-texture rasterisation: the mesh seen from four orthographic views samples the UV
neural texture into the front, side and top planes (Next3D's `rasterize` / `fill_mouth` /
`gen_mouth_mask`, written from the golden README §5.5).

Per view (Euler angles in VIEWS_DEG: front, yaw +90, yaw -90, pitch 90), a vertex p in FLAME
metres becomes s = 5 * ((x, -y, z) @ Rz Ry Rx + (0, -0.01, -0.01)); its plane pixel is
column ~ s_x, row ~ s_y (row 0 at s_y = +1: the face is upside down in the planes, as in the
release). Faces are taken with corner order (0, 2, 1) and back faces are culled, so the
barycentrics weight the permuted corners, exactly as the release's PyTorch3D call.

Rasterisers: this project's (`rasterize_views`, differentiable barycentrics) or recorded
fragments (`PlaneFragments` built from PyTorch3D-style pix_to_face / bary, to replay the golden
stand-in exactly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from faceedit_core.errors import InputError
from faceedit_core.render.rasterize import rasterize

PLANE_SIZE = 256  # the release's plane side (the default here; the generator passes its configuration's)
ORTH_SCALE = 5.0
ORTH_SHIFT = (0.0, -0.01, -0.01)
VIEWS_DEG = ((0.0, 0.0, 0.0), (0.0, 90.0, 0.0), (0.0, -90.0, 0.0), (90.0, 0.0, 0.0))
CORNER_ORDER = (0, 2, 1)
MOUTH_LANDMARKS = slice(48, 60)
FILL_UPPER = 254.0  # flood fill passes pre-fill values x 255 within [corner, corner + 254]


def euler_matrix(angles_deg: torch.Tensor) -> torch.Tensor:
    """Euler angles (x, y, z) in degrees [K,3] -> Rz @ Ry @ Rx [K,3,3] (right-handed)."""
    a = angles_deg * (math.pi / 180.0)
    s, c = torch.sin(a), torch.cos(a)
    sx, sy, sz, cx, cy, cz = s[:, 0], s[:, 1], s[:, 2], c[:, 0], c[:, 1], c[:, 2]
    rows = [
        cz * cy,
        cz * sy * sx - sz * cx,
        cz * sy * cx + sz * sx,
        sz * cy,
        sz * sy * sx + cz * cx,
        sz * sy * cx - cz * sx,
        -sy,
        cy * sx,
        cy * cx,
    ]
    return torch.stack(rows, 1).reshape(-1, 3, 3)


def view_coords(points: torch.Tensor) -> torch.Tensor:
    """points [B,N,3] (FLAME metres) -> plane coordinates s [B,4,N,3] of the four views
    (s_x, s_y in [-1,1] across the 256^2 plane; larger s_z is nearer the viewer)."""
    if points.dim() != 3 or points.shape[-1] != 3:
        raise InputError(f"vertices must have shape [B,N,3], got {list(points.shape)}")
    flipped = points * points.new_tensor([1.0, -1.0, 1.0])
    rot = euler_matrix(points.new_tensor(VIEWS_DEG))  # [4,3,3]
    q = torch.matmul(flipped[:, None], rot[None])  # row vectors: p @ R
    return (q + points.new_tensor(ORTH_SHIFT)) * ORTH_SCALE


@dataclass
class PlaneFragments:
    """pix_to_face [B,4,S,S] long (-1 background), bary [B,4,S,S,3] for corners (0,2,1) of each face."""

    pix_to_face: torch.Tensor
    bary: torch.Tensor

    @classmethod
    def from_pytorch3d(cls, pix_to_face: list[torch.Tensor], bary: list[torch.Tensor]) -> "PlaneFragments":
        """Four views of PyTorch3D-style outputs ([B,S,S,1], [B,S,S,1,3]) -> fragments. PyTorch3D
        numbers faces over the packed batch (b*F+f): for B > 1 pass ids modulo F."""
        if len(pix_to_face) != 4 or len(bary) != 4:
            raise InputError("recorded fragments need the four views (front, yaw+90, yaw-90, top)")
        p2f = torch.stack([p[..., 0].long() for p in pix_to_face], 1)
        b = torch.stack([w[..., 0, :].to(torch.float32) for w in bary], 1)
        return cls(p2f, b)


def rasterize_views(s: torch.Tensor, faces: torch.Tensor, size: int = PLANE_SIZE) -> PlaneFragments:
    """Plane coordinates s [B,4,V,3] and faces [F,3] -> fragments, with this project's rasteriser.

    Barycentrics are differentiable with respect to s (hence the vertices)."""
    B, K, V, _ = s.shape
    flat = s.reshape(B * K, V, 3)
    clip = torch.stack([flat[..., 0], flat[..., 1], (10.0 - flat[..., 2]) / 20.0, torch.ones_like(flat[..., 0])], -1)
    frags = rasterize(clip, faces[:, list(CORNER_ORDER)], (size, size), cull_backfaces=True, backend="torch")
    bary = frags.bary * frags.mask[..., None]
    return PlaneFragments(frags.face_id.view(B, K, size, size), bary.view(B, K, size, size, 3))


@dataclass
class ViewSamples:
    """uv_grid [B,4,S,S,2], alpha_prefill [B,4,1,S,S] (mask x visibility), rendering [B,4,C,S,S]."""

    uv_grid: torch.Tensor
    alpha_prefill: torch.Tensor
    rendering: torch.Tensor


def interpolate_corners(frags: PlaneFragments, face_attrs: torch.Tensor) -> torch.Tensor:
    """Per-corner face attributes [F,3,D] (release corner order) -> [B,4,S,S,D], 0 on background."""
    attrs = face_attrs[:, list(CORNER_ORDER)]
    visible = frags.pix_to_face >= 0
    vals = attrs[frags.pix_to_face.clamp(min=0)]  # [B,4,S,S,3,D]
    out = (frags.bary[..., None] * vals).sum(dim=-2)
    return out * visible[..., None]


def sample_views(
    texture: torch.Tensor, frags: PlaneFragments, face_uvcoords: torch.Tensor, uv_mask: torch.Tensor
) -> ViewSamples:
    """texture [B,C,T,T], fragments, face_uvcoords [F,3,3], uv_mask [1,1,M,M] -> ViewSamples.

    Background pixels have grid (0, 0), so their rendering is the texture's centre sample (the
    release does the same; the blending alpha hides it except in the summed side slot)."""
    B, K, S = frags.pix_to_face.shape[:3]
    grid = interpolate_corners(frags, face_uvcoords)[..., :2]  # [B,4,S,S,2]
    flat_grid = grid.reshape(B, K * S, S, 2)
    visible = (frags.pix_to_face >= 0).to(texture.dtype)
    mask = F.grid_sample(
        uv_mask.expand(B, -1, -1, -1), flat_grid, mode="bilinear", padding_mode="zeros", align_corners=False
    ).view(B, K, 1, S, S)
    alpha = mask * visible[:, :, None]
    rendering = F.grid_sample(
        texture, flat_grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # [B,C,K*S,S]
    rendering = rendering.view(B, -1, K, S, S).transpose(1, 2)
    return ViewSamples(grid, alpha, rendering)


def _reach_along_rows(reach: np.ndarray, passable: np.ndarray) -> np.ndarray:
    """Spread `reach` over every horizontal run of `passable` pixels it touches ([H,W] bools)."""
    starts = passable.copy()
    starts[:, 1:] &= ~passable[:, :-1]
    labels = np.cumsum(starts.ravel()).reshape(passable.shape) * passable
    hit = np.zeros(labels.max() + 1, dtype=bool)
    hit[labels[reach & passable]] = True
    hit[0] = False
    return hit[labels]


def flood_region(values: np.ndarray, upper: float) -> np.ndarray:
    """The 4-connected region of pixels with values in [v0, v0 + upper] that contains pixel
    (0, 0) (value v0): values [H,W] -> bool [H,W]. Row and column runs alternately until stable."""
    v0 = values[0, 0]
    passable = (values >= v0) & (values <= v0 + upper)
    reach = np.zeros_like(passable)
    reach[0, 0] = True
    while True:
        new = _reach_along_rows(reach, passable)
        new = _reach_along_rows(new.T.copy(), passable.T.copy()).T
        if np.array_equal(new, reach):
            return reach
        reach = new


def fill_holes(alpha: torch.Tensor) -> torch.Tensor:
    """Release's `fill_mouth`: alpha [N,1,H,W] in [0,1] -> alpha with the enclosed holes (mouth,
    eyes) set to 1. Pixels the flood fill from the corner reaches keep their value; the others
    become 1. Gradients flow through the kept values."""
    scaled = (alpha.detach() * 255.0).to(torch.float32)
    filled = scaled.clone()
    for i in range(alpha.shape[0]):
        region = flood_region(scaled[i, 0].cpu().numpy(), FILL_UPPER)
        filled[i, 0][torch.from_numpy(region).to(alpha.device)] = 255.0
    m = filled / 127.5 - 1
    mouth_mask = ((m * 2.0 - 1.0) * -1.0 + 1.0) / 2.0
    return (alpha + mouth_mask.to(alpha.dtype)).clip(0, 1)


def landmarks_2d(lmk_s: torch.Tensor) -> torch.Tensor:
    """Front-view plane coordinates of the landmarks [B,68,3] -> (s_x, -s_y) [B,68,2]."""
    return torch.stack([lmk_s[..., 0], -lmk_s[..., 1]], -1)


def mouth_box(lm2d: torch.Tensor, size: int = PLANE_SIZE) -> torch.Tensor:
    """Square box [B,4] = (row0, row1, col0, col1), end exclusive, around the outer lips
    (landmarks 48-59) of lm2d [B,68,2]: 1.2x the larger side of their bounding box, centred
    between the mouth corners (48, 54)."""
    lm = (lm2d.detach().to(torch.float32) * (size / 2) + size / 2).cpu().numpy()
    lips = lm[:, MOUTH_LANDMARKS]
    centre = (lips[:, 0] + lips[:, 6]) * 0.5
    extent = np.maximum(lips[..., 0].max(1) - lips[..., 0].min(1), lips[..., 1].max(1) - lips[..., 1].min(1))
    half = (extent * 1.2).astype(int) // 2
    # floored (the release truncates: the same inside the plane; a box over the edge stays square)
    box = np.floor(
        np.stack([centre[:, 1] - half, centre[:, 1] + half, centre[:, 0] - half, centre[:, 0] + half], 1)
    ).astype(int)
    if (half < 1).any() or (box < 0).any() or (box > size).any():
        raise InputError(
            f"mouth box {box.tolist()} (row0,row1,col0,col1) is empty or outside the "
            f"{size}^2 plane: are the vertices FLAME metres with the global rotation zeroed, "
            "and landmarks 48-59 the outer lips?"
        )
    return torch.from_numpy(box).long()


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of [N,C,h,w] to [N,C,size,size] (the release's crop/paste)."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def crop_mouths(front: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """front [B,C,S,S], boxes [B,4] -> the boxes resized to [B,C,size,size]."""
    return torch.cat(
        [resize(front[i : i + 1, :, r0:r1, c0:c1], size) for i, (r0, r1, c0, c1) in enumerate(boxes.tolist())]
    )


def paste_mouths(front: torch.Tensor, mouths: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """A copy of front [B,C,S,S] with mouths [B,C,m,m] resized into boxes [B,4]."""
    out = front.clone()
    for i, (r0, r1, c0, c1) in enumerate(boxes.tolist()):
        out[i, :, r0:r1, c0:c1] = resize(mouths[i : i + 1], r1 - r0)[0]
    return out
