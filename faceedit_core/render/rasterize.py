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

import functools
import logging
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import torch

from faceedit_core.errors import InputError
from faceedit_core.render import native

log = logging.getLogger(__name__)

CHUNK = 1 << 18  # candidate (face, pixel) pairs processed at once (and a quarter as many row runs)


@dataclass
class Fragments:
    """face_id [B,H,W] long (-1 background), bary [B,H,W,3] (perspective-correct), depth [B,H,W] (z/w)."""

    face_id: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        return self.face_id >= 0

    def image(self, b: int) -> "Fragments":
        """Image b alone, as a batch of one (views, no copies)."""
        return Fragments(self.face_id[b : b + 1], self.bary[b : b + 1], self.depth[b : b + 1])

    def covered(self) -> torch.Tensor:
        """Flat indices [P] long of the covered pixels in the B*H*W pixels of all images."""
        return self.mask.reshape(-1).nonzero().squeeze(1)

    def covered_images(self) -> list["Covered"]:
        """The same fragments image by image, covered pixels only (what `rasterize(frames=False)` gives)."""
        B, H, W = self.face_id.shape
        out = []
        for b in range(B):
            hit = (self.face_id[b].reshape(-1) >= 0).nonzero().squeeze(1)
            out.append(
                Covered(
                    hit,
                    self.face_id[b].reshape(-1).index_select(0, hit),
                    self.bary[b].reshape(-1, 3).index_select(0, hit),
                    self.depth[b].reshape(-1).index_select(0, hit),
                    (H, W),
                )
            )
        return out


@dataclass
class Covered:
    """One image's covered pixels, without frames: hit [P] long (flat pixel index y*W + x, rows
    top-down), face [P] long, bary [P,3] (perspective-correct), depth [P] (z/w), both None from
    `rasterize(barycentrics=False)`, which gives corners [4,3,F] instead (`face_corners` of the
    image, what `screen_planes` reads); size (H, W).
    Work and memory in proportion to the covered pixels, not to the frame."""

    hit: torch.Tensor
    face: torch.Tensor
    bary: torch.Tensor | None
    depth: torch.Tensor | None
    size: tuple[int, int]
    corners: torch.Tensor | None = None


def face_corners(clip_verts: torch.Tensor, faces: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """clip_verts [B,V,4], faces [F,3] -> tri [4,B,3,F]: pixel x, pixel y, depth z/w and clip w of
    the corners of each triangle in each of the B images."""
    B, V = clip_verts.shape[:2]
    w = clip_verts[..., 3]
    px = (clip_verts[..., 0] / w + 1) * 0.5 * W
    py = (1 - clip_verts[..., 1] / w) * 0.5 * H
    corner = faces.t().reshape(1, 1, -1).expand(4, B, -1)  # [4,B,3F], one index for every image
    return torch.gather(torch.stack([px, py, clip_verts[..., 2] / w, w]), 2, corner).view(4, B, 3, -1)


_NO_HIT = torch.iinfo(torch.int64).max  # empty z-buffer key: infinite depth, low word -1
SLACK = 1e-2  # pixels added to each end of a row run before the exact test of its two ends


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


@torch.jit.ignore
def _native_coverage(
    tri: torch.Tensor, F: int, H: int, W: int, cull_backfaces: bool, out: torch.Tensor, no_hit: int
) -> bool:
    """`_coverage` by the C kernel (render/native.py), for float32 CPU input where the kernel is built:
    True when it filled out, False when the PyTorch path must (runs as Python: TorchScript calls out)."""
    lib = native.library()
    if lib is None or tri.dtype != torch.float32 or tri.is_cuda or not out.is_contiguous():
        return False
    images = out.numel() // (H * W)
    if out.numel() != images * H * W or tri.shape[2] != images * F:  # the kernel writes where told
        raise InputError(f"z-buffer of {out.numel()} keys for {tri.shape[2]} triangles, {F} an image, {H}x{W}")
    tri = tri.contiguous()
    out.fill_(no_hit)
    lib.faceedit_coverage(tri.data_ptr(), tri.shape[2], F, H, W, int(cull_backfaces), SLACK, out.data_ptr())
    return True


@torch.jit.ignore
def _native_covered(keys: torch.Tensor, no_hit: int) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """The covered pixels hit [P] of a z-buffer keys [N] and their face ids [P], by the C kernel where
    it is built (else None: the caller's PyTorch path, `nonzero` and `_face_ids`, does it)."""
    lib = native.library()
    if lib is None or keys.is_cuda or not keys.is_contiguous():
        return None
    n = lib.faceedit_covered(keys.data_ptr(), len(keys), no_hit, None, None)
    hit, face = torch.empty(n, dtype=torch.long), torch.empty(n, dtype=torch.long)
    lib.faceedit_covered(keys.data_ptr(), len(keys), no_hit, hit.data_ptr(), face.data_ptr())
    return hit, face


@torch.jit.ignore
def _float_bits(x: torch.Tensor) -> torch.Tensor:
    """float32 [N] -> int32 [N] with the same bits (TorchScript has no dtype view: this runs as Python)."""
    return x.view(torch.int32)


def _sortable(depth: torch.Tensor) -> torch.Tensor:
    """depth [N] -> int64 [N] whose signed order is the float32 order (the top word of a z-buffer key)."""
    bits = _float_bits(depth.float())
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()


def _face_table(
    fx: torch.Tensor, fy: torch.Tensor, fz: torch.Tensor, area: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor
) -> torch.Tensor:
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


def _row_runs(
    tab: torch.Tensor, rows: torch.Tensor, slack: float = SLACK
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel runs of triangles on pixel rows.

    tab [21,S] (`_face_table`) of each run's triangle, rows [S] long, slack in pixels. Returns
    the first column c0 [S] long, the run length [S] long (0 when the row misses the triangle)
    and coef [2,S]: the depth at the first pixel centre and its step per pixel in x.

    The run is every pixel centre between where the edges cross the row, widened by `slack`;
    the exact edge-function test (ties on an edge count as inside) then settles its two ends.
    Pixels between them lie at least 1 - slack pixels inside every edge, far beyond rounding.
    A horizontal edge needs no test of its own: the bounding box holds only rows on its inside
    (up to rounding, which the end test settles).
    """
    xj, yj, sdx, step, slope, zs = tab[0:3], tab[3:6], tab[6:9], tab[9:12], tab[12:15], tab[15:18]
    t = (rows.to(tab.dtype) + 0.5) - yj  # [3,S]
    root = torch.addcmul(xj, slope, t)  # where each edge crosses the row
    lo = root.masked_fill(step <= 0, -float("inf")).amax(0)
    hi = root.masked_fill(step >= 0, float("inf")).amin(0)
    c0 = torch.maximum((lo - 0.5 - slack).ceil(), tab[19])
    c1 = torch.minimum((hi - 0.5 + slack).floor(), tab[20])
    e = torch.addcmul(sdx * t, step, (c0 + 0.5) - xj)  # [3,S] edge functions at the first pixel
    first_out = (e.amin(0) < 0).to(tab.dtype)
    last_out = (torch.addcmul(e, step, c1 - c0).amin(0) < 0).to(tab.dtype)
    depth = torch.addcmul((e * zs).sum(0), tab[18], first_out)  # at the first pixel inside
    c0 = c0 + first_out
    return c0.long(), (c1 - last_out - c0 + 1).clamp(min=0).long(), torch.stack([depth, tab[18]])


def _face_ids(keys: torch.Tensor) -> torch.Tensor:
    """z-buffer keys [N] (`_coverage`) -> face ids [N] (-1 none), in place: the keys' low words, sign-extended."""
    return keys.bitwise_left_shift_(32).bitwise_right_shift_(32)


def _coverage(
    tri: torch.Tensor,
    F: int,
    H: int,
    W: int,
    cull_backfaces: bool,
    out: torch.Tensor,
    chunk: int,
    no_hit: int = _NO_HIT,
) -> torch.Tensor:
    """The z-buffer over the row runs of every triangle, into out [N//F*H*W] long: per pixel the key
    (depth bits << 32 | face id) of the nearest face, `no_hit` where none (`_face_ids` turns it into face ids).

    tri [4,3,N]: pixel x, pixel y, depth and clip w of each corner of N triangles, F per image
    (triangle g belongs to image g // F). Each triangle is cut into the pixel rows of its
    bounding box and each row into the run of pixel centres inside it (plus SLACK), so
    candidates are nearly only covered pixels; an exact edge-function test settles each run's ends.
    The z-buffer is one `scatter_reduce` amin over int64 keys (depth bits, face id): the
    nearest face wins, ties go to the lower face id. Triangles go in groups of about chunk // 4
    rows, their candidates in groups of about `chunk` (`_scatter_runs`): every temporary of a group
    stays a few MB, within a core's cache (one pass over a view's 245k runs and 690k candidates
    streamed ~100 MB through memory, and two pool workers slowed each other down by 15-30 %).
    Written for TorchScript (`_compiled_covered_pixels`), which reads no globals: constants are arguments.
    Where the C kernel is built (render/native.py) it fills the same z-buffer instead, one pass.
    """
    if _native_coverage(tri, F, H, W, cull_backfaces, out, no_hit):
        return out
    fx, fy, fz, fw = tri[0], tri[1], tri[2], tri[3]
    area = (fx[1] - fx[0]) * (fy[2] - fy[0]) - (fx[2] - fx[0]) * (fy[1] - fy[0])  # [N]
    keep = (fw > 0).all(0) & (area.abs() > 1e-12)
    if cull_backfaces:
        keep &= area < 0  # counter-clockwise in NDC is clockwise in y-down pixels
    x0 = fx.amin(0).sub(0.5).ceil().clamp(0, W).long()
    x1 = fx.amax(0).sub(0.5).floor().clamp(-1, W - 1).long()
    y0 = fy.amin(0).sub(0.5).ceil().clamp(0, H).long()
    y1 = fy.amax(0).sub(0.5).floor().clamp(-1, H - 1).long()
    nrows = (y1 - y0 + 1).clamp(min=0) * (keep & (x1 >= x0))
    ids = torch.nonzero(nrows > 0).squeeze(1)  # triangles that reach a pixel row
    rows_of = nrows.index_select(0, ids)
    cum_rows = torch.cumsum(rows_of, 0)
    keys = out.fill_(no_hit)
    lo = 0
    while lo < len(ids):  # triangles in groups of about chunk // 4 rows: every temporary stays cache-sized
        hi = max(int(torch.searchsorted(cum_rows, cum_rows[lo] - rows_of[lo] + chunk // 4, right=True)), lo + 1)
        g = ids[lo:hi]
        tab = _face_table(fx[:, g], fy[:, g], fz[:, g], area[g], x0[g].to(fx.dtype), x1[g].to(fx.dtype))
        tri_of_run, r = _segments(rows_of[lo:hi])  # one entry per (triangle, row) [S]
        image = torch.div(g, F, rounding_mode="floor")
        face = (g - image * F).index_select(0, tri_of_run)  # [S] face id within its image
        row = y0.index_select(0, g).index_select(0, tri_of_run) + r
        c0, n, coef = _row_runs(tab.index_select(1, tri_of_run), row)
        start = (image * (H * W)).index_select(0, tri_of_run) + row * W + c0  # flat pixel of each run's first candidate
        _scatter_runs(keys, face, start, n, coef, chunk, no_hit)
        lo = hi
    return keys


def _scatter_runs(
    keys: torch.Tensor,
    face: torch.Tensor,
    start: torch.Tensor,
    n: torch.Tensor,
    coef: torch.Tensor,
    chunk: int,
    no_hit: int,
) -> None:
    """The z-buffer keys [H*W...] take the minimum with every candidate pixel of the runs: face [S],
    first pixel start [S], length n [S], depth at the first pixel and its step coef [2,S]; in groups
    of about `chunk` candidates (a run of one huge triangle may be far longer than its group)."""
    cum = torch.cumsum(n, 0)
    lo = 0
    while lo < len(n):
        hi = max(int(torch.searchsorted(cum, cum[lo] - n[lo] + chunk, right=True)), lo + 1)
        run, k = _segments(n[lo:hi])
        run += lo
        cf = coef.index_select(1, run)  # [2,N]
        depth = torch.addcmul(cf[0], cf[1], k.to(coef.dtype))
        key = ((_sortable(depth) << 32) | face.index_select(0, run)).masked_fill_(depth < -1, no_hit)
        keys.scatter_reduce_(0, start.index_select(0, run) + k, key, reduce="amin")
        lo = hi


def _face_planes(tri: torch.Tensor) -> torch.Tensor:
    """tri [4,3,N] corner pixel x/y, depth, clip w -> [14,N] screen-space planes of each triangle.

    Rows: the corner-0 origin (x, y) (2), then with dx, dy a pixel centre's offset from it, the
    perspective-weighted edge functions e_i / w_i = a_i dx + b_i dy + c_i as a (3), b (3), c (3),
    and depth z/w = za dx + zb dy + z_0 (3). Offsets from a corner keep float32 exact where
    absolute pixel coordinates would cancel. Differentiable; triangles that can never be hit
    (zero area, corner behind the eye) get finite planes so their zero gradients stay finite.
    """
    X, Y, Z, Wc = tri[0], tri[1], tri[2], tri[3]
    Xr, Yr = X - X[0], Y - Y[0]
    Xj, Yj, Xk, Yk = Xr.roll(-1, 0), Yr.roll(-1, 0), Xr.roll(-2, 0), Yr.roll(-2, 0)  # edge i runs j -> k
    a, b, c = Yj - Yk, Xk - Xj, Xj * Yk - Xk * Yj  # [3,N]; c = (twice the signed area, 0, 0)
    area = torch.where(c[0].abs() > 1e-12, c[0], torch.ones_like(c[0]))
    w = torch.where(Wc > 0, Wc, torch.ones_like(Wc))
    za, zb = (a * Z).sum(0) / area, (b * Z).sum(0) / area
    return torch.cat([X[0:1], Y[0:1], a / w, b / w, c / w, za[None], zb[None], Z[0:1]])


def screen_planes(tri: torch.Tensor, corner_values: torch.Tensor) -> torch.Tensor:
    """tri [4,3,N] (`face_corners`), corner_values [C,3,N] (channel, corner, triangle) -> planes
    [3C,N]: rows a (C), b (C), c (C) of value = a x + b y + c over pixel coordinates (x, y), the
    values interpolated linearly in screen space (`interpolate_screen`).

    Screen-space, not perspective-correct: over a triangle a few pixels wide the two differ by
    far less than a colour level (5.7e-4 at most on the ICT head at 1024^2 samples), and a pixel
    then gathers 3C numbers where barycentrics and a blend of corners take 14 + 3C."""
    X, Y = tri[0], tri[1]
    Xr, Yr = X - X[0], Y - Y[0]  # offsets from corner 0 keep the plane's slopes exact
    Xj, Yj, Xk, Yk = Xr.roll(-1, 0), Yr.roll(-1, 0), Xr.roll(-2, 0), Yr.roll(-2, 0)  # edge i runs j -> k
    area = Xj[0] * Yk[0] - Xk[0] * Yj[0]  # twice the signed area
    area = torch.where(area.abs() > 1e-12, area, torch.ones_like(area))
    a = (corner_values * (Yj - Yk)).sum(1) / area  # [C,N]
    b = (corner_values * (Xk - Xj)).sum(1) / area
    return torch.cat([a, b, corner_values[:, 0] - a * X[0] - b * Y[0]])


def interpolate_screen(planes: torch.Tensor, covered: "Covered") -> torch.Tensor:
    """planes [3C,F] (`screen_planes` of one image's faces), covered pixels of that image -> the
    values [C,P] (channel rows) at the pixel centres."""
    C = planes.shape[0] // 3
    W = covered.size[1]
    p = planes.index_select(1, covered.face)  # [3C,P]
    row = torch.div(covered.hit, W, rounding_mode="floor")
    x = (covered.hit - row * W).to(p.dtype).add_(0.5)
    return torch.addcmul(torch.addcmul(p[2 * C :], p[:C], x), p[C : 2 * C], row.to(p.dtype).add_(0.5))


def _barycentrics(
    tri: torch.Tensor, face_id: torch.Tensor, F: int, H: int, W: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Covered pixels hit [P] of face_id [N//F*H*W] long, with their perspective-correct
    barycentrics [3,P] and depth [P].

    tri [4,3,N] as in `_coverage` (differentiable). Each covered pixel evaluates its
    triangle's planes (`_face_planes`) at its centre.
    """
    hit = (face_id >= 0).nonzero().squeeze(1)  # [P] flat pixels of all images
    grow = torch.div(hit, W, rounding_mode="floor")  # row in the stack of images
    sx = (hit - grow * W).to(tri.dtype) + 0.5
    row = face_id.index_select(0, hit)
    if len(face_id) > H * W:  # rows of the planes of all images
        image = torch.div(grow, H, rounding_mode="floor")
        row += image * F
        grow -= image * H
    sy = grow.to(tri.dtype) + 0.5
    planes = _face_planes(tri)
    p = planes.index_select(1, row)  # [14,P]
    dx, dy = sx - p[0], sy - p[1]
    persp = torch.addcmul(torch.addcmul(p[8:11], p[2:5], dx), p[5:8], dy)  # [3,P]
    return hit, persp / persp.sum(0), torch.addcmul(torch.addcmul(p[13], p[11], dx), p[12], dy)


def _covered_pixels(
    clip_verts: torch.Tensor,
    faces: torch.Tensor,
    H: int,
    W: int,
    cull_backfaces: bool,
    face_id: torch.Tensor,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """clip_verts [B,V,4] -> face ids into face_id [B*H*W] (`_coverage`, all images one candidate
    set), then the covered pixels' `_barycentrics`."""
    F = faces.shape[0]
    tri = face_corners(clip_verts, faces, H, W).transpose(1, 2).reshape(4, 3, -1)  # triangle g of image g // F
    with torch.no_grad():
        _face_ids(_coverage(tri.detach(), F, H, W, cull_backfaces, face_id, chunk))
    return _barycentrics(tri, face_id, F, H, W)


def _covered_faces(
    clip_verts: torch.Tensor,
    faces: torch.Tensor,
    H: int,
    W: int,
    cull_backfaces: bool,
    keys: torch.Tensor,
    chunk: int,
    no_hit: int = _NO_HIT,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's clip_verts [1,V,4] -> its covered pixels hit [P], their faces [P] and the
    image's corners tri [4,3,F]: coverage without barycentrics. keys [H*W] is the z-buffer (left
    holding keys, not face ids: the faces are taken from the covered keys alone, two passes over
    the buffer fewer)."""
    tri = face_corners(clip_verts, faces, H, W)[:, 0]
    _coverage(tri, faces.shape[0], H, W, cull_backfaces, keys, chunk)
    found = _native_covered(keys, no_hit)
    if found is not None:
        return found[0], found[1], tri
    hit = (keys != no_hit).nonzero().squeeze(1)
    return hit, _face_ids(keys.index_select(0, hit)), tri


def _write_frames(
    bary: torch.Tensor, depth: torch.Tensor, hit: torch.Tensor, bary_hit: torch.Tensor, depth_hit: torch.Tensor
) -> None:
    """Frames bary [N,3] (0 on background) and depth [N] (1 on background), in place, from the
    covered pixels hit [P] and their bary_hit [3,P] and depth_hit [P]."""
    bary.zero_().index_copy_(0, hit, bary_hit.t())
    depth.fill_(1).index_copy_(0, hit, depth_hit)


@functools.cache
def _compiled_covered_pixels():
    """`_covered_pixels` compiled (`_compiled`)."""
    return _compiled(_covered_pixels)


@functools.cache
def _compiled_covered_faces():
    """`_covered_faces` compiled (`_compiled`)."""
    return _compiled(_covered_faces)


def _compiled(fn: Callable) -> Callable:
    """fn compiled by TorchScript, or fn itself where this torch cannot compile it.

    A compiled call runs its ~150 ops in C++ without the GIL: the batch pool's threads then
    rasterise side by side at full speed, where as Python they queued for the GIL between
    every two ops (two threads reached 1.4x one thread, compiled 2.0x), and a single view
    loses Python's per-op overhead too. Autograd records the compiled ops as usual. torch 2.x
    marks TorchScript deprecated (a FutureWarning, silenced here); without it, or without
    the source files it reads, the rasteriser stays correct and batches more slowly.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.script(fn)
    except Exception as exc:  # noqa: BLE001 - any compile failure leaves the Python function, which is correct
        log.warning("rasteriser runs uncompiled (TorchScript: %s); batches of views will be slower", exc)
        return fn


def rasterize(
    clip_verts: torch.Tensor,
    faces: torch.Tensor,
    size: tuple[int, int],
    cull_backfaces: bool = False,
    backend: str = "auto",
    frames: bool = True,
    each: Callable[[int, "Covered"], Any] | None = None,
    barycentrics: bool = True,
) -> Fragments | list:
    """clip_verts [B,V,4], faces [F,3] long, size (H, W) -> Fragments; with frames=False a list of
    B `Covered` (covered pixels only: no frames are written, and on CPU each worker reuses one
    z-buffer of H*W keys from call to call, so no fresh memory per call), or with `each` the list of
    each(b, covered) for b in 0..B-1, called as soon as image b is rasterised (on CPU on the pool
    worker that rasterised it, so per-image work such as shading runs in parallel too).

    barycentrics=False (with frames=False): coverage only, `Covered.bary` and `depth` are None
    (for callers that interpolate with `screen_planes`)."""
    if each is not None and frames:
        raise InputError("each= works on covered pixels: pass frames=False too")
    if not barycentrics and frames:
        raise InputError("barycentrics=False gives covered pixels only: pass frames=False too")
    if clip_verts.dim() != 3 or clip_verts.shape[-1] != 4:
        raise InputError(f"clip_verts must have shape [B,V,4], got {list(clip_verts.shape)}")
    H, W = int(size[0]), int(size[1])
    if not (1 <= H <= 4096 and 1 <= W <= 4096):
        raise InputError(f"raster size {H}x{W} is outside 1..4096")
    faces = faces.long().to(clip_verts.device)
    if backend == "auto":
        backend = "nvdiffrast" if clip_verts.is_cuda and _nvdiffrast() is not None else "torch"
    if backend == "nvdiffrast":
        if not clip_verts.is_cuda or _nvdiffrast() is None:
            raise InputError(
                "the nvdiffrast backend needs CUDA and the nvdiffrast package (not on PyPI: see docs/rendering.md)"
            )
        frags = _rasterize_nvdiffrast(clip_verts, faces, H, W, cull_backfaces)
    elif backend != "torch":
        raise InputError(f"unknown rasteriser backend '{backend}' (auto, torch, nvdiffrast)")
    elif not frames and not clip_verts.is_cuda:
        return _covered_torch(clip_verts, faces, H, W, cull_backfaces, each, barycentrics)
    else:
        frags = _rasterize_torch(clip_verts, faces, H, W, cull_backfaces)
    if frames:
        return frags
    images = frags.covered_images()
    if not barycentrics:
        tri = face_corners(clip_verts, faces, H, W)
        images = [Covered(c.hit, c.face, None, None, c.size, tri[:, b]) for b, c in enumerate(images)]
    return images if each is None else [each(b, c) for b, c in enumerate(images)]


def _rasterize_torch(clip_verts: torch.Tensor, faces: torch.Tensor, H: int, W: int, cull_backfaces: bool) -> Fragments:
    """This project's rasteriser: face ids without gradients, then barycentrics and depth
    differentiably for the covered pixels (`_covered_pixels`, compiled), written into frames.

    On CUDA, and for one image, all images are one flattened pass. CPU batches go image by
    image on a pool of torch.get_num_threads() threads: a compiled call holds no GIL, so the
    workers run side by side at full speed, and one image's working set stays in cache. Each
    worker writes its image's rows of face_id and, without gradients, of the frames too (with
    gradients the frames are written here, where autograd records it), so no batch-sized
    temporary passes through this thread. The workers run torch with one intra-op thread: a
    worker that opened OpenMP teams of its own would leave more OpenMP threads than cores in
    the process, and libgomp then stops spin-waiting, which made every later parallel op of
    the process (single views included) 2x slower.
    """
    covered_pixels = _compiled_covered_pixels()
    B, n = clip_verts.shape[0], H * W
    face_id = torch.empty(B * n, dtype=torch.long, device=clip_verts.device)
    bary, depth = clip_verts.new_empty(B * n, 3), clip_verts.new_empty(B * n)
    if B == 1 or clip_verts.is_cuda:
        _write_frames(bary, depth, *covered_pixels(clip_verts, faces, H, W, cull_backfaces, face_id, CHUNK))
        return Fragments(face_id.view(B, H, W), bary.view(B, H, W, 3), depth.view(B, H, W))
    grad = torch.is_grad_enabled()  # a thread-local mode: the workers take the caller's
    track = grad and clip_verts.requires_grad

    def rasterise_image(b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = slice(b * n, (b + 1) * n)
        with torch.set_grad_enabled(grad):
            hit, bary_hit, depth_hit = covered_pixels(
                clip_verts[b : b + 1], faces, H, W, cull_backfaces, face_id[rows], CHUNK
            )
            if not track:  # written here, in parallel; with gradients autograd records it below
                _write_frames(bary[rows], depth[rows], hit, bary_hit, depth_hit)
        return hit + b * n, bary_hit, depth_hit

    parts = list(_pool().map(rasterise_image, range(B)))
    if track:
        _write_frames(bary, depth, *(torch.cat(t, -1) for t in zip(*parts)))
    return Fragments(face_id.view(B, H, W), bary.view(B, H, W, 3), depth.view(B, H, W))


def _covered_torch(
    clip_verts: torch.Tensor, faces: torch.Tensor, H: int, W: int, cull: bool, each: Callable | None, barycentrics: bool
) -> list:
    """CPU, frames=False: each image on the pool (one image alone on this thread), its z-buffer the
    worker's own reused scratch; its covered pixels as `Covered`, or each(b, covered) of them."""
    covered_pixels, covered_faces = _compiled_covered_pixels(), _compiled_covered_faces()
    n, grad = H * W, torch.is_grad_enabled()

    def rasterise_image(b: int):
        keys = _scratch_keys(n)
        image = clip_verts[b : b + 1]
        with torch.set_grad_enabled(grad):
            if barycentrics:
                hit, bary, depth = covered_pixels(image, faces, H, W, cull, keys, CHUNK)
                covered = Covered(hit, keys.index_select(0, hit), bary.t(), depth, (H, W))
            else:
                with torch.no_grad():
                    hit, face, tri = covered_faces(image.detach(), faces, H, W, cull, keys, CHUNK)
                covered = Covered(hit, face, None, None, (H, W), tri)
            return covered if each is None else each(b, covered)

    if clip_verts.shape[0] == 1:
        return [rasterise_image(0)]
    return list(_pool().map(rasterise_image, range(clip_verts.shape[0])))


_SCRATCH = threading.local()


def _scratch_keys(n: int) -> torch.Tensor:
    """This thread's z-buffer of n int64 keys, kept from call to call (grown when a call needs more)."""
    keys = getattr(_SCRATCH, "keys", None)
    if keys is None or keys.numel() < n:
        keys = _SCRATCH.keys = torch.empty(n, dtype=torch.long)
    return keys[:n]


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """The CPU batch pool: torch.get_num_threads() workers, made on first use."""
    global _POOL
    if _POOL is None:
        threads = torch.get_num_threads()
        _POOL = ThreadPoolExecutor(
            max(1, threads), thread_name_prefix="faceedit-raster", initializer=_one_intra_op_thread, initargs=(threads,)
        )
    return _POOL


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


def interpolate(attrs: torch.Tensor, frags: Fragments, faces: torch.Tensor) -> torch.Tensor:
    """attrs [B,V,C] or [V,C] per vertex of `faces` [F,3] -> [B,H,W,C] (0 on background).

    Only covered pixels are interpolated (`interpolate_covered`); the result is differentiable
    with respect to attrs and the barycentrics."""
    B, H, W = frags.face_id.shape
    hit = frags.covered()
    out = interpolate_covered(attrs, frags, faces, hit)
    return out.new_zeros(B * H * W, out.shape[-1]).index_copy(0, hit, out).view(B, H, W, -1)


def interpolate_covered(attrs: torch.Tensor, frags: Fragments, faces: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """attrs [B,V,C] or [V,C] per vertex of `faces` [F,3] -> [P,C] at the covered pixels hit [P]
    (`Fragments.covered`): work in proportion to the head, a third of its frame or less."""
    B, H, W = frags.face_id.shape
    C = attrs.shape[-1]
    corners = faces.long().to(attrs.device).index_select(0, frags.face_id.reshape(-1).index_select(0, hit))  # [P,3]
    if attrs.dim() == 3:  # rows of the flattened [B*V,C]
        corners = corners + (hit // (H * W) * attrs.shape[1])[:, None]
        attrs = attrs.reshape(-1, C)
    return _weighted_corners(attrs, corners, frags.bary.reshape(-1, 3).index_select(0, hit))


def _weighted_corners(attrs: torch.Tensor, corners: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """attrs [N,C], corners [P,3] long rows of attrs, bary [P,3] -> [P,C]."""
    return blend_corners(attrs.index_select(0, corners.reshape(-1)).view(-1, 3, attrs.shape[-1]), bary)


def blend_corners(vals: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """vals [P,3,C] (each pixel's triangle's corner values), bary [P,3] -> [P,C]."""
    out = vals[:, 0] * bary[:, 0:1]  # corner by corner: 3x faster than a sum over the size-3 dim
    return out.addcmul_(vals[:, 1], bary[:, 1:2]).addcmul_(vals[:, 2], bary[:, 2:3])


def _nvdiffrast():
    try:
        import nvdiffrast.torch as dr
    except ImportError:
        return None
    return dr


_CONTEXTS: dict = {}


def _rasterize_nvdiffrast(clip: torch.Tensor, faces: torch.Tensor, H: int, W: int, cull: bool) -> Fragments:
    """nvdiffrast: rows are bottom-up there, and (u, v) weight vertices 0 and 1 of the triangle.

    nvdiffrast has no culling switch, and one triangle list serves every image of a batch; with
    culling each image is rasterised with its own front-facing triangles (`_front_facing`)."""
    dr = _nvdiffrast()
    ctx = _CONTEXTS.setdefault(clip.device, dr.RasterizeCudaContext(device=clip.device))
    if cull:
        parts = [
            _nvdiffrast_pass(dr, ctx, clip[b : b + 1], faces, H, W, _front_facing(clip[b], faces).nonzero()[:, 0])
            for b in range(clip.shape[0])
        ]
        rast, face_id = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    else:
        rast, face_id = _nvdiffrast_pass(dr, ctx, clip, faces, H, W, None)
    u, v, zw, _ = rast.unbind(-1)
    bary = torch.stack([u, v, 1 - u - v], -1) * (face_id >= 0)[..., None]
    return Fragments(face_id, bary, torch.where(face_id >= 0, zw, torch.ones_like(zw)))


def _nvdiffrast_pass(
    dr, ctx, clip: torch.Tensor, faces: torch.Tensor, H: int, W: int, ids: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One dr.rasterize call over faces[ids] (all faces when ids is None) -> rast [B,H,W,4] with
    rows top-down, and face_id [B,H,W] long into `faces` (-1 none)."""
    if ids is not None and len(ids) == 0:  # every triangle culled
        return clip.new_zeros(clip.shape[0], H, W, 4), torch.full((clip.shape[0], H, W), -1, device=clip.device)
    tri = (faces if ids is None else faces[ids]).int().contiguous()
    rast, _ = dr.rasterize(ctx, clip.contiguous(), tri, (H, W))
    rast = torch.flip(rast, dims=[1])
    face_id = rast[..., 3].long() - 1  # nvdiffrast stores triangle index + 1, 0 for none
    if ids is not None:
        face_id = torch.where(face_id >= 0, ids[face_id.clamp(min=0)], face_id)
    return rast, face_id


def _front_facing(clip: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """clip [V,4], faces [F,3] -> [F] bool: counter-clockwise in NDC, as the torch backend culls.
    A triangle with a corner behind the eye is kept: nvdiffrast clips it, so let it decide."""
    ndc = clip[:, :2] / clip[:, 3:]
    a, b, c = ndc[faces[:, 0]], ndc[faces[:, 1]], ndc[faces[:, 2]]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    return (area > 0) | (clip[faces, 3] <= 0).any(1)
