"""Triangle rasterisation: per-pixel face id, barycentrics and depth, plus attribute interpolation.

Two backends behind one interface:
- "torch": this project's rasteriser (CPU or GPU). Coverage and the z-buffer are found without
  gradients, per triangle bounding box; barycentrics are then recomputed differentiably from
  the vertex positions for the covered pixels, so interpolated attributes have gradients with
  respect to the vertices (as nvdiffrast's interpolate gives).
- "nvdiffrast": used on CUDA when the package is installed.

Conventions: clip_verts [B,V,4] are homogeneous clip coordinates (x right, y up, depth z/w
smaller = nearer); pixel (0, 0) is the top-left, pixel centres at half-integers. A triangle is
front-facing when it is counter-clockwise in NDC.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError

CHUNK = 1 << 22  # candidate (face, pixel) pairs processed at once


@dataclass
class Fragments:
    """face_id [B,H,W] long (-1 background), bary [B,H,W,3] (perspective-correct), depth [B,H,W] (z/w)."""

    face_id: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        return self.face_id >= 0


def _to_pixels(clip: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    w = clip[..., 3]
    px = (clip[..., 0] / w + 1) * 0.5 * W
    py = (1 - clip[..., 1] / w) * 0.5 * H
    return px, py, clip[..., 2] / w


def _edge_functions(X: torch.Tensor, Y: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """Corner x/y [N,3] and sample points [N] -> unnormalised barycentrics [N,3] (twice the sub-areas)."""
    e0 = (X[:, 2] - X[:, 1]) * (sy - Y[:, 1]) - (Y[:, 2] - Y[:, 1]) * (sx - X[:, 1])
    e1 = (X[:, 0] - X[:, 2]) * (sy - Y[:, 2]) - (Y[:, 0] - Y[:, 2]) * (sx - X[:, 2])
    e2 = (X[:, 1] - X[:, 0]) * (sy - Y[:, 0]) - (Y[:, 1] - Y[:, 0]) * (sx - X[:, 0])
    return torch.stack([e0, e1, e2], 1)


def _coverage(px: torch.Tensor, py: torch.Tensor, z: torch.Tensor, w: torch.Tensor, faces: torch.Tensor,
              H: int, W: int, cull_backfaces: bool) -> torch.Tensor:
    """Face id per pixel [B,H*W] (-1 none) by a z-buffer over bounding-box candidates.

    px, py, z, w [B,V]: pixel coordinates, depth and clip w. All B images are one candidate
    set (face g of the flattened [B*F] list belongs to image g // F).
    """
    dev = px.device
    B, F = px.shape[0], faces.shape[0]
    fx, fy = px[:, faces].reshape(-1, 3), py[:, faces].reshape(-1, 3)  # [B*F,3]
    fz, fw = z[:, faces].reshape(-1, 3), w[:, faces].reshape(-1, 3)
    area = (fx[:, 1] - fx[:, 0]) * (fy[:, 2] - fy[:, 0]) - (fx[:, 2] - fx[:, 0]) * (fy[:, 1] - fy[:, 0])
    keep = (fw > 0).all(1) & (area.abs() > 1e-12)
    if cull_backfaces:
        keep &= area < 0  # counter-clockwise in NDC is clockwise in y-down pixels
    x0 = fx.min(1).values.sub(0.5).ceil().clamp(0, W).long()
    x1 = fx.max(1).values.sub(0.5).floor().clamp(-1, W - 1).long()
    y0 = fy.min(1).values.sub(0.5).ceil().clamp(0, H).long()
    y1 = fy.max(1).values.sub(0.5).floor().clamp(-1, H - 1).long()
    bw, bh = (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)
    n = bw * bh * keep
    ids = torch.nonzero(n > 0).squeeze(1)
    best = torch.full((B * H * W,), float("inf"), device=dev)
    owner = torch.full((B * H * W,), -1, dtype=torch.long, device=dev)
    counts = n[ids]
    cum = torch.cumsum(counts, 0)
    packed = torch.cat([fx, fy, fz, area[:, None]], 1)  # [B*F,10]
    lo = 0
    while lo < len(ids):  # faces in groups of about CHUNK candidate pixels
        hi = max(int(torch.searchsorted(cum, cum[lo] - counts[lo] + CHUNK, right=True)), lo + 1)
        f, c = ids[lo:hi], counts[lo:hi]
        face = torch.repeat_interleave(f, c)
        local = torch.arange(int(c.sum()), device=dev) - torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
        # one gather of everything a candidate needs from its face (index_select beats fancy indexing)
        fdata = packed.index_select(0, face)
        X, Y, Z, a = fdata[:, 0:3], fdata[:, 3:6], fdata[:, 6:9], fdata[:, 9]
        cx = x0.index_select(0, face) + local % bw.index_select(0, face)
        cy = y0.index_select(0, face) + local // bw.index_select(0, face)
        bary = _edge_functions(X, Y, cx.float() + 0.5, cy.float() + 0.5) / a[:, None]
        depth = (bary * Z).sum(1)
        inside = (bary >= 0).all(1) & (depth >= -1)
        pix = ((face // F) * (H * W) + cy * W + cx)[inside]
        depth, face = depth[inside], face[inside]
        best.scatter_reduce_(0, pix, depth, reduce="amin")
        win = depth <= best[pix]
        owner[pix[win]] = face[win] % F
        lo = hi
    return owner.view(B, H * W)


def rasterize(clip_verts: torch.Tensor, faces: torch.Tensor, size: tuple[int, int],
              cull_backfaces: bool = False, backend: str = "auto") -> Fragments:
    """clip_verts [B,V,4], faces [F,3] long, size (H, W) -> Fragments."""
    if clip_verts.dim() != 3 or clip_verts.shape[-1] != 4:
        raise InputError(f"clip_verts must have shape [B,V,4], got {list(clip_verts.shape)}")
    H, W = int(size[0]), int(size[1])
    if not (1 <= H <= 4096 and 1 <= W <= 4096):
        raise InputError(f"raster size {H}x{W} is outside 1..4096")
    faces = faces.long().to(clip_verts.device)
    if backend == "auto":
        backend = "nvdiffrast" if clip_verts.is_cuda and _nvdiffrast() is not None else "torch"
    if backend == "nvdiffrast":
        return _rasterize_nvdiffrast(clip_verts, faces, H, W, cull_backfaces)
    if backend != "torch":
        raise InputError(f"unknown rasteriser backend '{backend}' (auto, torch, nvdiffrast)")
    px, py, z = _to_pixels(clip_verts, H, W)  # [B,V]
    w = clip_verts[..., 3]
    with torch.no_grad():
        face_id = _coverage(px.detach(), py.detach(), z.detach(), w.detach(), faces, H, W, cull_backfaces)
    item, pix = torch.nonzero(face_id >= 0, as_tuple=True)
    V = px.shape[1]
    flat = (faces.index_select(0, face_id[item, pix]) + (item * V)[:, None]).reshape(-1)  # [P*3] into [B*V]
    take = lambda t: t.reshape(-1).index_select(0, flat).view(-1, 3)  # noqa: E731
    sx, sy = (pix % W).to(px.dtype) + 0.5, (pix // W).to(px.dtype) + 0.5
    screen = _edge_functions(take(px), take(py), sx, sy)
    screen = screen / screen.sum(1, keepdim=True)
    persp = screen / take(w)
    B = clip_verts.shape[0]
    bary = torch.zeros(B, H * W, 3, dtype=px.dtype, device=px.device).index_put((item, pix), persp / persp.sum(1, keepdim=True))
    depth = torch.ones(B, H * W, dtype=px.dtype, device=px.device).index_put(
        (item, pix), (screen * take(z)).sum(1))
    return Fragments(face_id.view(B, H, W), bary.view(B, H, W, 3), depth.view(B, H, W))


def interpolate(attrs: torch.Tensor, frags: Fragments, faces: torch.Tensor) -> torch.Tensor:
    """attrs [B,V,C] or [V,C] per vertex of `faces` [F,3] -> [B,H,W,C] (0 on background)."""
    B, H, W = frags.face_id.shape
    if attrs.dim() == 2:
        attrs = attrs[None].expand(B, -1, -1)
    fid = frags.face_id.clamp(min=0).view(B, -1)
    corners = faces.long().to(attrs.device)[fid]  # [B,HW,3]
    vals = torch.gather(attrs, 1, corners.view(B, -1, 1).expand(-1, -1, attrs.shape[-1]))
    vals = vals.view(B, H * W, 3, -1)
    out = (vals * frags.bary.view(B, H * W, 3, 1)).sum(2)
    return (out * frags.mask.view(B, -1, 1)).view(B, H, W, -1)


def _nvdiffrast():
    try:
        import nvdiffrast.torch as dr
    except ImportError:
        return None
    return dr


_CONTEXTS: dict = {}


def _rasterize_nvdiffrast(clip: torch.Tensor, faces: torch.Tensor, H: int, W: int, cull: bool) -> Fragments:
    """nvdiffrast: rows are bottom-up there, and (u, v) weight vertices 0 and 1 of the triangle."""
    dr = _nvdiffrast()
    if dr is None or not clip.is_cuda:
        raise InputError("the nvdiffrast backend needs CUDA and the nvdiffrast package (pip install faceedit[cuda])")
    ctx = _CONTEXTS.setdefault(clip.device, dr.RasterizeCudaContext(device=clip.device))
    tri = faces.int().contiguous()
    if cull:  # nvdiffrast has no culling switch: drop back faces per item
        raise InputError("back-face culling is only implemented in the torch backend")
    rast, _ = dr.rasterize(ctx, clip.contiguous(), tri, (H, W))
    rast = torch.flip(rast, dims=[1])
    u, v, zw, tid = rast.unbind(-1)
    face_id = tid.long() - 1
    bary = torch.stack([u, v, 1 - u - v], -1) * (face_id >= 0)[..., None]
    return Fragments(face_id, bary, torch.where(face_id >= 0, zw, torch.ones_like(zw)))
