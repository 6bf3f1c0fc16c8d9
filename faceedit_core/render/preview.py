"""The preview renderer: a FLAME mesh rasterised with an albedo texture or vertex colours and simple lighting.

render(verts [B,V,3] in FLAME metres, cameras (N views), size) -> rgba [B,N,H,W,4] in [0,1].
Lighting is a key light from above-left of each camera plus ambient (Lambert, evaluated per vertex and
interpolated: at the heads' 2-3 mm triangles and 512 px it looks as per-pixel lighting did, at a third
of the cost), so every view of a turntable is lit the same way. Edges are antialiased by
supersampling; only covered samples are shaded and resolved (no supersampled frames).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from faceedit_core.errors import InputError
from faceedit_core.render import native
from faceedit_core.render.cameras import Cameras, flame_to_world
from faceedit_core.render.rasterize import Covered, interpolate_screen, rasterize, screen_planes

MAX_SIZE = 2048
RASTER_SAMPLES = 1 << 22  # supersamples rasterised per call (2048^2: one 1024 px view at 2x supersampling)
NEUTRAL_RGB = (0.78, 0.66, 0.58)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals: verts [V,3], faces [F,3] -> [V,3]."""
    a, b, c = (verts.index_select(0, corner) for corner in faces.t())  # [F,3] each (faster than verts[faces])
    fn = torch.cross(b - a, c - a, dim=-1)
    n = torch.zeros_like(verts)
    for corner in faces.t():  # each face's normal onto its corners, one corner at a time (no [3F,3] copy)
        n.index_add_(0, corner, fn)
    return F.normalize(n, dim=-1)


class PreviewRenderer:
    """Renders meshes of one topology. The colour source is one of: albedo [T,T,3] in [0,1] (needs
    `uvs`/`uv_faces`), vertex_colours [V,3] in [0,1] (for meshes whose UVs span several tiles, such
    as the ICT head's), or neither (a neutral skin colour). render_faces bool [F]: draw only those
    faces (helper meshes left out; they are not rasterised and do not shade the normals)."""

    def __init__(
        self,
        faces: torch.Tensor,
        uvs: torch.Tensor | None = None,
        uv_faces: torch.Tensor | None = None,
        albedo: np.ndarray | None = None,
        supersample: int = 2,
        vertex_colours: np.ndarray | None = None,
        render_faces: np.ndarray | None = None,
    ):
        faces = torch.as_tensor(faces, dtype=torch.long)
        keep = None if render_faces is None else torch.as_tensor(render_faces, dtype=torch.bool)
        if keep is not None and keep.shape != faces.shape[:1]:
            raise InputError(f"render_faces must be a bool mask [{len(faces)}], got {list(keep.shape)}")
        self.faces = faces if keep is None else faces[keep]
        self.supersample = supersample
        self.uvs = None if uvs is None else torch.as_tensor(uvs, dtype=torch.float32)
        self.uv_faces = None if uv_faces is None else torch.as_tensor(uv_faces, dtype=torch.long)
        if self.uv_faces is not None and keep is not None:
            self.uv_faces = self.uv_faces[keep]
        self.corner_ids = self.faces.t().reshape(-1)  # [3F]: every face's corner 0, then 1, then 2
        self.uv_corner_ids = None if self.uv_faces is None else self.uv_faces.t().reshape(-1)
        if albedo is not None and self.uvs is None:
            raise InputError("an albedo texture needs the mesh's UVs (uvs and uv_faces)")
        if albedo is not None and vertex_colours is not None:
            raise InputError("give an albedo texture or vertex colours, not both")
        self.texture = None if albedo is None else torch.as_tensor(albedo, dtype=torch.float32).permute(2, 0, 1)[None]
        self.colours = None if vertex_colours is None else torch.as_tensor(vertex_colours, dtype=torch.float32)
        if self.colours is not None and (self.colours.dim() != 2 or self.colours.shape[1] != 3):
            raise InputError(f"vertex_colours must have shape [V,3], got {list(self.colours.shape)}")

    def render(self, verts: torch.Tensor, cameras: Cameras, size: int | tuple[int, int] = 512) -> torch.Tensor:
        """verts [B,V,3] (FLAME metres) -> rgba [B,N,H,W,4], straight (not premultiplied) alpha.

        Views are rasterised a few at a time (RASTER_SAMPLES supersamples per call: one view at
        1024 px, 16 at 256), so the rasteriser's buffers stay the same however many views are
        asked for; shading then goes view by view over the covered samples only (the head is a
        third of the frame or less), so its temporaries stay a few MB instead of a batch's hundreds
        (fresh memory the kernel must fault in). Each view is written into the output as it is done."""
        H, W = (size, size) if isinstance(size, int) else size
        if not (16 <= H <= MAX_SIZE and 16 <= W <= MAX_SIZE):
            raise InputError(f"render size {H}x{W} is outside 16..{MAX_SIZE}")
        if verts.dim() != 3 or verts.shape[-1] != 3:
            raise InputError(f"verts must have shape [B,V,3], got {list(verts.shape)}")
        if not torch.isfinite(verts).all():
            raise InputError("verts contain NaN or Inf")
        s = self.supersample
        R = cameras.cam2world[:, :3, :3]  # columns: right, down, forward
        light = F.normalize(-0.45 * R[:, :, 0] - 0.55 * R[:, :, 1] - 1.0 * R[:, :, 2], dim=-1)  # [N,3]
        N = len(cameras)
        per_call = max(1, RASTER_SAMPLES // (H * s * W * s))
        out = torch.empty(verts.shape[0], N, H, W, 4, device=verts.device)
        with torch.no_grad():
            for b in range(verts.shape[0]):
                world = flame_to_world(verts[b].float())
                normals = vertex_normals(world, self.faces)
                clip = cameras.project(world)  # [N,V,4]
                for lo in range(0, N, per_call):

                    def finish(v: int, covered: Covered, b=b, lo=lo, normals=normals) -> None:
                        # on the rasteriser's worker for this view: views are shaded in parallel
                        if self.texture is None:  # colour planes: shaded and resolved in one pass
                            planes = screen_planes(covered.corners, self._lit_colours(normals, light[lo + v]))
                            _resolve_planes(covered, planes, s, out[b, lo + v])
                        else:
                            _resolve(covered, self._shade(covered, normals, light[lo + v]), s, out[b, lo + v])

                    views, size = clip[lo : lo + per_call], (H * s, W * s)
                    rasterize(
                        views, self.faces, size, cull_backfaces=True, frames=False, each=finish, barycentrics=False
                    )
        return out

    def _lit_colours(self, normals: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
        """Vertex normals [V,3], light direction [3] -> each face's corners' lit colours [3,3,F]: the
        vertex colours (or the neutral colour) times the light, clamped per vertex (a blend of
        corners in [0,1] stays there)."""
        colours = torch.tensor(NEUTRAL_RGB)[:, None] if self.colours is None else self.colours.t()
        return _per_corner((colours.to(normals.device) * _light(normals, light)).clamp_(0, 1), self.corner_ids)

    def _shade(self, covered: Covered, normals: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
        """One view's covered samples (with their image's `corners`), vertex normals [V,3], light
        direction [3] -> lit albedo [3,P] (channel rows) from the texture.

        The light is per vertex; the UVs and the light are interpolated linearly in screen space,
        from per-face planes (`screen_planes`), no barycentrics."""
        lit = _light(normals, light)
        corners = torch.cat([_per_corner(self.uvs.t(), self.uv_corner_ids), _per_corner(lit, self.corner_ids)])
        u, v, lit = interpolate_screen(screen_planes(covered.corners, corners), covered)  # [u v lit, 3, F] -> 3 x [P]
        grid = torch.stack([u * 2 - 1, 1 - v * 2], -1).view(1, 1, -1, 2)
        albedo = F.grid_sample(self.texture, grid, mode="bilinear", align_corners=False)[0, :, 0]  # [3,P]
        return albedo.mul_(lit).clamp_(0, 1)


def _light(normals: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """Vertex normals [V,3], light direction [3] -> Lambert plus ambient [1,V], per vertex."""
    return (0.38 + 0.72 * (normals @ light).clamp(min=0))[None]


def _per_corner(values: torch.Tensor, corner_ids: torch.Tensor) -> torch.Tensor:
    """values [C,N] per vertex (or UV vertex), corner_ids [3F] (corner-major face corners) -> [C,3,F]
    contiguous, as `screen_planes` reads it fastest (from a permuted view it is 6x slower)."""
    return values.index_select(1, corner_ids).view(len(values), 3, -1)


def _resolve(covered: Covered, rgb: torch.Tensor, s: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Covered samples of an (sH, sW) image and their colours rgb [3,P] (channel rows) -> straight-alpha pixels
    [H,W,4]: alpha is the covered share of each s x s block, colour the mean over its covered
    samples only, so silhouettes get no fringe of background colour; background is transparent black.
    Written into `out` [H,W,4] (contiguous) when given, else into a new tensor."""
    Hs, Ws = covered.size
    H, W = Hs // s, Ws // s
    if Ws & (Ws - 1) == 0 and s & (s - 1) == 0:  # powers of two (512 px at 2x): shifts, not int64 divisions
        shift, sub = Ws.bit_length() - 1, s.bit_length() - 1
        pixel = ((covered.hit >> (shift + sub)) * W).add_((covered.hit & (Ws - 1)) >> sub)
    else:
        row = covered.hit // Ws
        pixel = (row // s) * W + (covered.hit - row * Ws) // s
    out = rgb.new_empty(H, W, 4) if out is None else out
    pixels = out.view(H * W, 4).zero_()  # summed channel by channel: 1-D index_adds, 2x faster than rows of 4
    for c in range(3):
        pixels[:, c].index_add_(0, pixel, rgb[c])
    pixels[:, 3].index_add_(0, pixel, torch.ones_like(rgb[0]))
    pixels[:, :3].div_(pixels[:, 3:].clamp(min=1))
    pixels[:, 3].div_(s * s)
    return out


def _resolve_planes(covered: Covered, planes: torch.Tensor, s: int, out: torch.Tensor) -> torch.Tensor:
    """Covered samples of an (sH, sW) image and colour planes [9,F] (`screen_planes` of RGB) -> the
    straight-alpha pixels [H,W,4] into out (contiguous): the colours at the samples, clamped to [0,1],
    then `_resolve`d. One pass by the C kernel where it is built (render/native.py), the same bits."""
    lib = native.library()
    if lib is None or planes.dtype != torch.float32 or planes.is_cuda or not out.is_contiguous():
        return _resolve(covered, interpolate_screen(planes, covered).clamp_(0, 1), s, out)
    (Hs, Ws), planes = covered.size, planes.contiguous()
    if Hs % s or Ws % s or out.numel() != Hs // s * Ws // s * 4 or planes.shape[0] != 9:  # the kernel writes there
        shapes = f"{Hs}x{Ws} samples at {s}x into {list(out.shape)} from planes {list(planes.shape)}"
        raise InputError(f"resolve of {shapes}: out must be [H/s,W/s,4] and planes [9,F]")
    hit, face, F = covered.hit.contiguous(), covered.face.contiguous(), planes.shape[1]
    samples = (hit.data_ptr(), face.data_ptr(), len(hit))
    lib.faceedit_resolve_planes(*samples, planes.data_ptr(), F, Ws, s, Hs // s, Ws // s, out.data_ptr())
    return out
