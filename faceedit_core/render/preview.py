"""The preview renderer: a FLAME mesh rasterised with an albedo texture and simple lighting.

render(verts [B,V,3] in FLAME metres, cameras (N views), size) -> rgba [B,N,H,W,4] in [0,1].
Lighting is a key light from above-left of each camera plus ambient (Lambert), so every view of
a turntable is lit the same way. Edges are antialiased by supersampling.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .cameras import Cameras, flame_to_world
from .rasterize import interpolate, rasterize

MAX_SIZE = 2048
NEUTRAL_RGB = (0.78, 0.66, 0.58)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals: verts [V,3], faces [F,3] -> [V,3]."""
    tri = verts[faces]
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    n = torch.zeros_like(verts).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return F.normalize(n, dim=-1)


class PreviewRenderer:
    """Renders meshes of one topology. albedo [T,T,3] in [0,1] needs `uvs`/`uv_faces`; without it a
    neutral skin colour is used."""

    def __init__(self, faces: torch.Tensor, uvs: torch.Tensor | None = None, uv_faces: torch.Tensor | None = None,
                 albedo: np.ndarray | None = None, supersample: int = 2):
        self.faces = torch.as_tensor(faces, dtype=torch.long)
        self.supersample = supersample
        self.uvs = None if uvs is None else torch.as_tensor(uvs, dtype=torch.float32)
        self.uv_faces = None if uv_faces is None else torch.as_tensor(uv_faces, dtype=torch.long)
        if albedo is not None and self.uvs is None:
            raise InputError("an albedo texture needs the mesh's UVs (uvs and uv_faces)")
        self.texture = None if albedo is None else torch.as_tensor(albedo, dtype=torch.float32).permute(2, 0, 1)[None]

    def _albedo(self, frags) -> torch.Tensor:
        B, H, W = frags.face_id.shape
        if self.texture is None:
            return torch.tensor(NEUTRAL_RGB).expand(B, H, W, 3)
        uv = interpolate(self.uvs, frags, self.uv_faces)  # [B,H,W,2]
        grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], -1)
        tex = F.grid_sample(self.texture.expand(B, -1, -1, -1), grid, mode="bilinear", align_corners=False)
        return tex.permute(0, 2, 3, 1)

    def render(self, verts: torch.Tensor, cameras: Cameras, size: int | tuple[int, int] = 512) -> torch.Tensor:
        """verts [B,V,3] (FLAME metres) -> rgba [B,N,H,W,4]."""
        H, W = (size, size) if isinstance(size, int) else size
        if not (16 <= H <= MAX_SIZE and 16 <= W <= MAX_SIZE):
            raise InputError(f"render size {H}x{W} is outside 16..{MAX_SIZE}")
        if verts.dim() != 3 or verts.shape[-1] != 3:
            raise InputError(f"verts must have shape [B,V,3], got {list(verts.shape)}")
        s = self.supersample
        out = []
        with torch.no_grad():
            for b in range(verts.shape[0]):
                world = flame_to_world(verts[b].float())
                normals = vertex_normals(world, self.faces)
                frags = rasterize(cameras.project(world), self.faces, (H * s, W * s), cull_backfaces=True)
                n = F.normalize(interpolate(normals, frags, self.faces), dim=-1)
                R = cameras.cam2world[:, :3, :3]  # columns: right, down, forward
                light = F.normalize(-0.45 * R[:, :, 0] - 0.55 * R[:, :, 1] - 1.0 * R[:, :, 2], dim=-1)
                lambert = (n * light[:, None, None, :]).sum(-1).clamp(min=0)
                rgb = self._albedo(frags) * (0.38 + 0.72 * lambert)[..., None]
                rgba = torch.cat([rgb.clamp(0, 1), frags.mask[..., None].float()], -1)
                rgba = F.avg_pool2d(rgba.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1) if s > 1 else rgba
                out.append(rgba)
        return torch.stack(out)
