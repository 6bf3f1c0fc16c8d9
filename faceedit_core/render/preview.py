"""The preview renderer: a FLAME mesh rasterised with an albedo texture and simple lighting.

render(verts [B,V,3] in FLAME metres, cameras (N views), size) -> rgba [B,N,H,W,4] in [0,1].
Lighting is a key light from above-left of each camera plus ambient (Lambert), so every view of
a turntable is lit the same way. Edges are antialiased by supersampling.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from faceedit_core.errors import InputError
from faceedit_core.render.cameras import Cameras, flame_to_world
from faceedit_core.render.rasterize import Fragments, interpolate_covered, rasterize

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

    def __init__(
        self,
        faces: torch.Tensor,
        uvs: torch.Tensor | None = None,
        uv_faces: torch.Tensor | None = None,
        albedo: np.ndarray | None = None,
        supersample: int = 2,
    ):
        self.faces = torch.as_tensor(faces, dtype=torch.long)
        self.supersample = supersample
        self.uvs = None if uvs is None else torch.as_tensor(uvs, dtype=torch.float32)
        self.uv_faces = None if uv_faces is None else torch.as_tensor(uv_faces, dtype=torch.long)
        if albedo is not None and self.uvs is None:
            raise InputError("an albedo texture needs the mesh's UVs (uvs and uv_faces)")
        self.texture = None if albedo is None else torch.as_tensor(albedo, dtype=torch.float32).permute(2, 0, 1)[None]

    def _albedo(self, frags, hit: torch.Tensor) -> torch.Tensor:
        """Albedo [P,3] at the covered pixels hit [P]."""
        if self.texture is None:
            return torch.tensor(NEUTRAL_RGB).expand(len(hit), 3)
        uv = interpolate_covered(self.uvs, frags, self.uv_faces, hit)  # [P,2]
        grid = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], -1).view(1, 1, -1, 2)
        return F.grid_sample(self.texture, grid, mode="bilinear", align_corners=False)[0, :, 0].t()

    def render(self, verts: torch.Tensor, cameras: Cameras, size: int | tuple[int, int] = 512) -> torch.Tensor:
        """verts [B,V,3] (FLAME metres) -> rgba [B,N,H,W,4], straight (not premultiplied) alpha.

        All views of a mesh are rasterised in one call; shading then goes view by view over the
        covered samples only (the head is a third of the frame or less), so its temporaries stay
        a few MB instead of a batch's hundreds (fresh memory the kernel must fault in)."""
        H, W = (size, size) if isinstance(size, int) else size
        if not (16 <= H <= MAX_SIZE and 16 <= W <= MAX_SIZE):
            raise InputError(f"render size {H}x{W} is outside 16..{MAX_SIZE}")
        if verts.dim() != 3 or verts.shape[-1] != 3:
            raise InputError(f"verts must have shape [B,V,3], got {list(verts.shape)}")
        s = self.supersample
        R = cameras.cam2world[:, :3, :3]  # columns: right, down, forward
        light = F.normalize(-0.45 * R[:, :, 0] - 0.55 * R[:, :, 1] - 1.0 * R[:, :, 2], dim=-1)  # [N,3]
        out = []
        with torch.no_grad():
            for b in range(verts.shape[0]):
                world = flame_to_world(verts[b].float())
                normals = vertex_normals(world, self.faces)
                frags = rasterize(cameras.project(world), self.faces, (H * s, W * s), cull_backfaces=True)
                out.append(
                    torch.cat(
                        [_resolve(self._shade(frags.image(v), normals, light[v]), s) for v in range(len(cameras))]
                    )
                )
        return torch.stack(out)

    def _shade(self, frags: Fragments, normals: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
        """One view's fragments [1,sH,sW], vertex normals [V,3], light direction [3] ->
        premultiplied samples [1,sH,sW,4] (lit albedo and coverage, 0 on background)."""
        _, Hs, Ws = frags.face_id.shape
        hit = frags.covered()  # [P]
        n = F.normalize(interpolate_covered(normals, frags, self.faces, hit), dim=-1)
        lambert = (n @ light).clamp(min=0)
        rgb = (self._albedo(frags, hit) * (0.38 + 0.72 * lambert)[:, None]).clamp(0, 1)
        return rgb.new_zeros(Hs * Ws, 4).index_copy_(0, hit, F.pad(rgb, (0, 1), value=1.0)).view(1, Hs, Ws, 4)


def _resolve(samples: torch.Tensor, s: int) -> torch.Tensor:
    """Premultiplied samples [N,sH,sW,4] (colour and coverage, 0 on background) -> straight-alpha
    pixels [N,H,W,4]: alpha is the covered share of each s x s block, colour the mean over its
    covered samples only, so silhouettes get no fringe of background colour."""
    if s > 1:
        samples = F.avg_pool2d(samples.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1)
    alpha = samples[..., 3:]
    return torch.cat([samples[..., :3] / alpha.clamp(min=1e-6), alpha], -1)
