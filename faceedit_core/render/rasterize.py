"""Triangle rasterisation: per-pixel face id, barycentrics and depth, plus attribute interpolation.

Two backends behind one interface:
- "torch": this project's rasteriser (CPU or GPU). Coverage and the z-buffer are found without
  gradients, from the pixel runs of each triangle on each pixel row it spans (`_coverage`);
  barycentrics are then recomputed differentiably from
  the vertex positions for the covered pixels, so interpolated attributes have gradients with
  respect to the vertices (as nvdiffrast's interpolate gives).
- "nvdiffrast": used on CUDA when the package is installed.

Conventions: clip_verts [B,V,4] are homogeneous clip coordinates (x right, y up, depth z/w
smaller = nearer); pixel (0, 0) is the top-left, pixel centres at half-integers. A triangle is
front-facing when it is counter-clockwise in NDC.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from ..errors import InputError

CHUNK = 1 << 20  # candidate (face, pixel) pairs processed at once


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
    """Corner x/y rows [3,N] and sample points [N] -> unnormalised barycentrics [3,N] (twice the sub-areas)."""
    e0 = (X[2] - X[1]) * (sy - Y[1]) - (Y[2] - Y[1]) * (sx - X[1])
    e1 = (X[0] - X[2]) * (sy - Y[2]) - (Y[0] - Y[2]) * (sx - X[2])
    e2 = (X[1] - X[0]) * (sy - Y[0]) - (Y[1] - Y[0]) * (sx - X[0])
    return torch.stack([e0, e1, e2])


_NO_HIT = torch.iinfo(torch.int64).max  # empty z-buffer key: infinite depth, low word -1
SLACK = 1e-2  # pixels added to each end of a row run before the exact per-pixel test


def _segments(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """counts [S] long -> (segment [N], position in its segment [N]) with N = counts.sum().

    The same as repeat_interleave(arange(S), counts) but a scatter of run ends plus a cumsum,
    several times faster on CPU.
    """
    end = torch.cumsum(counts, 0)
    n = int(end[-1]) if len(end) else 0
    marks = torch.zeros(n + 1, dtype=torch.long, device=counts.device).index_add_(0, end, torch.ones_like(end))
    seg = torch.cumsum(marks[:-1], 0)
    return seg, torch.arange(n, device=counts.device) - (end - counts).index_select(0, seg)


def _sortable(depth: torch.Tensor) -> torch.Tensor:
    """depth [N] -> int64 [N] whose signed order is the float32 order (the top word of a z-buffer key)."""
    bits = depth.float().view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()


def _face_table(fx: torch.Tensor, fy: torch.Tensor, fz: torch.Tensor, area: torch.Tensor, x0: torch.Tensor,
                x1: torch.Tensor) -> torch.Tensor:
    """Constants of the row runs of triangles -> [21,N].

    fx, fy, fz [3,N] corner pixel x/y and depth, area [N] signed double area, x0, x1 [N]
    first and last bounding-box column.

    Edge i runs from corner j = i+1 to corner k = i+2 (mod 3); its edge function, made
    non-negative inside by the winding sign s, is s*dx*(sy - y_j) + step*(sx - x_j) with
    step = -s*dy. Rows: x_j (3), y_j (3), s*dx (3), step (3), dx/dy (3), corner depth times
    1/|area| (3), depth step per pixel in x (1), x0 and x1 (2). Rows, not columns: torch's CPU
    kernels are several times faster on contiguous rows than on narrow columns.
    """
    s = torch.sign(area)
    xj, yj = fx.roll(-1, 0), fy.roll(-1, 0)
    dx, dy = fx.roll(-2, 0) - xj, fy.roll(-2, 0) - yj
    step = -dy * s
    inv = 1 / area.abs()
    zs = fz * inv
    return torch.cat([xj, yj, dx * s, step, dx / dy, zs, (step * zs).sum(0, keepdim=True), x0[None], x1[None]])


def _row_runs(tab: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel runs of triangles on pixel rows.

    tab [21,S] (`_face_table`) of each run's triangle, rows [S] long. Returns the first column
    c0 [S] long, the run length [S] long (0 when the row misses the triangle) and coef [8,S]:
    the three edge functions at the first pixel centre, their steps per pixel in x, the depth
    there and its step. A horizontal edge needs no test of its own: the bounding box holds
    only rows on its inside (up to rounding, which the exact per-pixel test settles).
    """
    xj, yj, sdx, step, slope, zs = tab[0:3], tab[3:6], tab[6:9], tab[9:12], tab[12:15], tab[15:18]
    t = (rows.to(tab.dtype) + 0.5) - yj  # [3,S]
    root = torch.addcmul(xj, slope, t)  # where each edge crosses the row
    lo = root.masked_fill(step <= 0, -float("inf")).amax(0)
    hi = root.masked_fill(step >= 0, float("inf")).amin(0)
    c0 = torch.maximum((lo - 0.5 - SLACK).ceil(), tab[19])
    c1 = torch.minimum((hi - 0.5 + SLACK).floor(), tab[20])
    e = torch.addcmul(sdx * t, step, (c0 + 0.5) - xj)  # [3,S]
    return c0.long(), (c1 - c0 + 1).clamp(min=0).long(), torch.cat([e, step, (e * zs).sum(0, keepdim=True), tab[18:19]])


def _coverage(px: torch.Tensor, py: torch.Tensor, z: torch.Tensor, w: torch.Tensor, faces: torch.Tensor,
              H: int, W: int, cull_backfaces: bool) -> torch.Tensor:
    """Face id per pixel [B*H*W] (-1 none) by a z-buffer over the row runs of every triangle.

    px, py, z, w [B,V]: pixel coordinates, depth and clip w. All B images are one candidate
    set (triangle g of the flattened [B*F] list belongs to image g // F). Each triangle is cut
    into the pixel rows of its bounding box and each row into the run of pixel centres inside
    it (plus SLACK), so candidates are nearly only covered pixels; an exact edge-function test
    decides each one. The z-buffer is one `scatter_reduce` amin over int64 keys (depth bits,
    face id): the nearest face wins, ties go to the lower face id.
    """
    dev = px.device
    B, V = px.shape
    F = faces.shape[0]
    corner = (faces.t()[:, None, :] + (torch.arange(B, device=dev) * V)[None, :, None]).reshape(-1)  # [3*B*F]
    fx, fy, fz, fw = torch.stack([px, py, z, w]).view(4, B * V).index_select(1, corner).view(4, 3, B * F)
    area = (fx[1] - fx[0]) * (fy[2] - fy[0]) - (fx[2] - fx[0]) * (fy[1] - fy[0])  # [B*F]
    keep = (fw > 0).all(0) & (area.abs() > 1e-12)
    if cull_backfaces:
        keep &= area < 0  # counter-clockwise in NDC is clockwise in y-down pixels
    x0 = fx.amin(0).sub(0.5).ceil().clamp(0, W).long()
    x1 = fx.amax(0).sub(0.5).floor().clamp(-1, W - 1).long()
    y0 = fy.amin(0).sub(0.5).ceil().clamp(0, H).long()
    y1 = fy.amax(0).sub(0.5).floor().clamp(-1, H - 1).long()
    nrows = (y1 - y0 + 1).clamp(min=0) * (keep & (x1 >= x0))
    ids = torch.nonzero(nrows > 0).squeeze(1)  # triangles that reach a pixel row
    tab = _face_table(fx[:, ids], fy[:, ids], fz[:, ids], area[ids], x0[ids].to(px.dtype), x1[ids].to(px.dtype))
    tri, r = _segments(nrows.index_select(0, ids))  # one entry per (triangle, row) [S]
    g = ids.index_select(0, tri)  # [S] triangle in the flattened [B*F] list
    row = y0.index_select(0, g) + r
    c0, n, coef = _row_runs(tab.index_select(1, tri), row)
    start = (g // F) * (H * W) + row * W + c0  # flat pixel of each run's first candidate
    face = g % F
    keys = torch.full((B * H * W,), _NO_HIT, dtype=torch.long, device=dev)
    cum = torch.cumsum(n, 0)
    lo = 0
    while lo < len(n):  # runs in groups of about CHUNK candidate pixels
        hi = max(int(torch.searchsorted(cum, cum[lo] - n[lo] + CHUNK, right=True)), lo + 1)
        run, k = _segments(n[lo:hi])
        run += lo
        kf = k.to(coef.dtype)
        cf = coef.index_select(1, run)  # [8,N]
        e = torch.addcmul(cf[0:3], cf[3:6], kf)
        depth = torch.addcmul(cf[6], cf[7], kf)
        key = ((_sortable(depth) << 32) | face.index_select(0, run)).masked_fill_(
            (e.amin(0) < 0) | (depth < -1), _NO_HIT)
        keys.scatter_reduce_(0, start.index_select(0, run) + k, key, reduce="amin")
        lo = hi
    return (keys << 32) >> 32  # the low word, sign-extended: face id, or -1 where nothing was hit


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
    if clip_verts.shape[0] == 1 or clip_verts.is_cuda:
        return _rasterize_torch(clip_verts, faces, H, W, cull_backfaces)
    return _rasterize_images_on_pool(clip_verts, faces, H, W, cull_backfaces)


_POOL: ThreadPoolExecutor | None = None


def _rasterize_images_on_pool(clip_verts: torch.Tensor, faces: torch.Tensor, H: int, W: int,
                              cull_backfaces: bool) -> Fragments:
    """CPU batches: each image on its own, on a pool of torch.get_num_threads() threads.

    torch releases the GIL in its kernels, so the mostly single-threaded index and scatter kernels
    of several images run on all cores at once; one image's working set also stays in cache, so
    even one after another B images are cheaper than one flattened pass. Autograd records the
    ops of each thread as usual. The workers run torch with one intra-op thread: a worker that
    opened OpenMP teams of its own would leave more OpenMP threads than cores in the process,
    and libgomp then stops spin-waiting, which made every later parallel op of the process
    (single views included) 2x slower.
    """
    global _POOL
    if _POOL is None:
        threads = torch.get_num_threads()
        _POOL = ThreadPoolExecutor(max(1, threads), thread_name_prefix="faceedit-raster",
                                   initializer=_one_intra_op_thread, initargs=(threads,))
    frags = list(_POOL.map(lambda b: _rasterize_torch(clip_verts[b:b + 1], faces, H, W, cull_backfaces),
                           range(clip_verts.shape[0])))
    return Fragments(*(torch.cat([getattr(f, k) for f in frags]) for k in ("face_id", "bary", "depth")))


def _one_intra_op_thread(threads: int) -> None:
    """Pool worker initializer: torch ops of this thread use one intra-op thread. torch sets up a
    thread's count on its first use from one process-wide default, which set_num_threads also
    changes: so this thread is set up first, then set to 1, and a short-lived helper thread puts
    the default back to `threads` for every thread that starts later."""
    torch.get_num_threads()  # this thread's first use: set up from the default now, not later
    torch.set_num_threads(1)
    helper = threading.Thread(target=torch.set_num_threads, args=(threads,))
    helper.start()
    helper.join()


def _rasterize_torch(clip_verts: torch.Tensor, faces: torch.Tensor, H: int, W: int, cull_backfaces: bool) -> Fragments:
    """This project's rasteriser on a batch [B,V,4] as one flattened candidate set."""
    B, V = clip_verts.shape[:2]
    px, py, z = _to_pixels(clip_verts, H, W)  # [B,V]
    w = clip_verts[..., 3]
    with torch.no_grad():
        face_id = _coverage(px.detach(), py.detach(), z.detach(), w.detach(), faces, H, W, cull_backfaces)
    hit = (face_id >= 0).nonzero().squeeze(1)  # [P] flat pixels of all images
    grow = hit // W  # row in the stack of B images
    col = hit - grow * W
    corner = faces.t().index_select(1, face_id.index_select(0, hit))  # [3,P]
    if B > 1:
        corner += (grow // H) * V
    X, Y, Z, Wc = torch.stack([px, py, z, w]).view(4, B * V).index_select(1, corner.view(-1)).view(4, 3, -1)
    e = _edge_functions(X, Y, col.to(px.dtype) + 0.5, (grow % H).to(px.dtype) + 0.5)  # [3,P]
    persp = e / Wc
    bary = torch.zeros(B * H * W, 3, dtype=px.dtype, device=px.device).index_copy(
        0, hit, (persp / persp.sum(0)).t())
    depth = torch.ones(B * H * W, dtype=px.dtype, device=px.device).index_copy(
        0, hit, (e * Z).sum(0) / e.sum(0))
    return Fragments(face_id.view(B, H, W), bary.view(B, H, W, 3), depth.view(B, H, W))


def interpolate(attrs: torch.Tensor, frags: Fragments, faces: torch.Tensor) -> torch.Tensor:
    """attrs [B,V,C] or [V,C] per vertex of `faces` [F,3] -> [B,H,W,C] (0 on background).

    Only covered pixels are interpolated (a head covers a third of its frame or less); the
    result is differentiable with respect to attrs and the barycentrics."""
    B, H, W = frags.face_id.shape
    C = attrs.shape[-1]
    fid = frags.face_id.reshape(-1)
    hit = (fid >= 0).nonzero().squeeze(1)  # [P] flat pixels of all images
    corners = faces.long().to(attrs.device).index_select(0, fid.index_select(0, hit))  # [P,3]
    if attrs.dim() == 3:  # rows of the flattened [B*V,C]
        corners = corners + (hit // (H * W) * attrs.shape[1])[:, None]
        attrs = attrs.reshape(-1, C)
    vals = attrs.index_select(0, corners.reshape(-1)).view(-1, 3, C)
    bary = frags.bary.reshape(-1, 3).index_select(0, hit)
    out = (vals * bary[..., None]).sum(1)  # [P,C]
    return attrs.new_zeros(B * H * W, C).index_copy(0, hit, out).view(B, H, W, C)


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
