"""EG3D-style volume rendering of Next3D's tri-planes (golden README §5.6).

- `sample_rays(cam2world [N,4,4], intrinsics [N,3,3], resolution)`: one ray per pixel centre.
- `sample_planes(planes [N,3,C,S,S], points [N,M,3], box_warp)`: the mean [N,M,C] of the
  bilinear features of the three planes at (x, y), (x, z) and (z, y) of 2 * points / box_warp
  (Next3D's third plane differs from EG3D's (z, x)); zeros outside, as grid_sample with
  align_corners=False. The release samples each plane with grid_sample and averages in its
  decoder; here the 12 taps of a point (3 planes x 4 corners, weights / 3) are one weighted
  bag of a channels-last table (`F.embedding_bag`), which reads each texel's C features at once.
- `OSGDecoder`: (mean) plane features -> FC 64 -> softplus -> FC 1+C: sigma, features.
- `march_rays`: EG3D's MipRayMarcher2 (midpoint quadrature, softplus(sigma - 1)). The
  midpoint colour sum sum_i w_i (c_i + c_i+1) / 2 is taken as sum_j c_j e_j with each sample's
  share e_j = (w_j-1 + w_j) / 2 (`sample_shares`), so merged coarse and fine samples are
  composited where they lie, without sorting their colours.
- `ImportanceRenderer`: stratified coarse samples, inverse-CDF importance samples, both
  merged and marched. Both random draws can be supplied (`Uniforms`), so a run is
  reproducible and matches recorded vectors; otherwise they are drawn with torch.rand.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.next3d.layers import FullyConnectedLayer

RGB_PAD = 0.001  # features = sigmoid * (1 + 2 pad) - pad


@dataclass(frozen=True)
class RenderSettings:
    """The release's rendering_kwargs that the forward pass reads."""

    depth_resolution: int = 48
    depth_resolution_importance: int = 48
    ray_start: float = 2.25
    ray_end: float = 3.3
    box_warp: float = 1.0
    clamp_mode: str = "softplus"
    white_back: bool = False

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> "RenderSettings":
        if kwargs.get("ray_start") == "auto" or kwargs.get("disparity_space_sampling"):
            raise InputError("rendering_kwargs: only fixed ray_start/ray_end depth sampling is supported")
        names = cls.__dataclass_fields__
        return cls(**{k: kwargs[k] for k in names if k in kwargs})

    def validate(self) -> None:
        if self.depth_resolution < 2 or self.depth_resolution_importance < 0:
            raise InputError("depth_resolution must be >= 2 and depth_resolution_importance >= 0")
        if not 0 < self.ray_start < self.ray_end:
            raise InputError(f"need 0 < ray_start ({self.ray_start}) < ray_end ({self.ray_end})")
        if self.clamp_mode != "softplus":
            raise InputError(f"clamp_mode {self.clamp_mode!r}: only 'softplus' is supported")


@dataclass
class Uniforms:
    """Externally supplied U[0,1) draws: stratified [N,M,Dc,1] and importance [N*M,Di]."""

    stratified: torch.Tensor | None = None
    importance: torch.Tensor | None = None


def sample_rays(
    cam2world: torch.Tensor, intrinsics: torch.Tensor, resolution: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> ray origins [N,R*R,3] and unit directions [N,R*R,3]; ray m = row * R + col."""
    N, R = cam2world.shape[0], int(resolution)
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
    cx, cy, sk = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None], intrinsics[:, 0, 1, None]
    idx = torch.arange(R, dtype=torch.float32, device=cam2world.device) * (1.0 / R) + (0.5 / R)
    v, u = torch.meshgrid(idx, idx, indexing="ij")
    u, v = u.reshape(1, -1).expand(N, -1), v.reshape(1, -1).expand(N, -1)
    x_lift = (u - cx + cy * sk / fy - sk * v / fy) / fx
    y_lift = (v - cy) / fy
    ones = torch.ones_like(u)
    cam_points = torch.stack([x_lift, y_lift, ones, ones], -1)  # [N,M,4]
    world = torch.bmm(cam2world, cam_points.permute(0, 2, 1)).permute(0, 2, 1)[..., :3]
    origins = cam2world[:, :3, 3]
    dirs = F.normalize(world - origins[:, None], dim=2)
    return origins[:, None].expand(-1, dirs.shape[1], -1), dirs


PLANE_AXES = ((0, 1), (0, 2), (2, 1))  # plane 0 at (x, y), plane 1 at (x, z), plane 2 at (z, y)
_U_AXIS, _V_AXIS = [a for a, _ in PLANE_AXES], [b for _, b in PLANE_AXES]


def plane_table(planes: torch.Tensor) -> torch.Tensor:
    """planes [N,3,C,S,S] -> rows [N*3*S*S, C]: texel (n, k, y, x) at row ((n*3 + k)*S + y)*S + x."""
    N, P, C, H, W = planes.shape
    if P != 3 or H != W:
        raise InputError(f"planes must have shape [N,3,C,S,S], got {list(planes.shape)}")
    return planes.permute(0, 1, 3, 4, 2).reshape(N * P * H * W, C)


def sample_planes(planes: torch.Tensor, points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """planes [N,3,C,S,S], points [N,M,3] -> mean over the three planes of bilinear features [N,M,C].

    grid_sample's bilinear rule (align_corners=False, zero padding): pixel coordinate
    p = ((2 points / box_warp + 1) S - 1) / 2, corners floor(p) and floor(p) + 1 weighted
    floor(p) + 1 - p and p - floor(p), out-of-range corners weigh 0.
    """
    N, M, _ = points.shape
    S = planes.shape[-1]
    table = plane_table(planes)
    p = ((2 / box_warp) * points + 1) * (S / 2) - 0.5  # pixel coordinates of x, y, z [N,M,3]
    i0 = p.floor()
    w0, w1 = (i0 + 1) - p, p - i0
    i0 = i0.long()
    w0 = w0 * ((i0 >= 0) & (i0 < S))
    w1 = w1 * ((i0 >= -1) & (i0 < S - 1))
    idx = torch.stack([i0.clamp(0, S - 1), (i0 + 1).clamp(0, S - 1)], -1)  # [N,M,3,2] low/high corner
    wts = torch.stack([w0, w1], -1)
    u_axis, v_axis = (torch.tensor(a, device=points.device) for a in (_U_AXIS, _V_AXIS))
    plane0 = (torch.arange(N, device=points.device)[:, None] * 3 + torch.arange(3, device=points.device)) * (S * S)
    rows_v = idx.index_select(2, v_axis).mul_(S).add_(plane0[:, None, :, None])  # [N,M,3 planes,2]
    rows = rows_v.unsqueeze(-1) + idx.index_select(2, u_axis).unsqueeze(-2)  # [N,M,3,2 (v),2 (u)]
    taps = wts.index_select(2, v_axis).unsqueeze(-1) * wts.index_select(2, u_axis).unsqueeze(-2) / 3
    feats = F.embedding_bag(rows.reshape(N * M, 12), table, mode="sum", per_sample_weights=taps.reshape(N * M, 12))
    return feats.view(N, M, -1)


class OSGDecoder(nn.Module):
    """Mean plane features [N,M,C] (`sample_planes`) -> (sigma [N,M,1] raw density,
    rgb [N,M,out] in (-0.001, 1.001))."""

    def __init__(self, n_features: int = 32, hidden: int = 64, out_features: int = 32, lr_multiplier: float = 1.0):
        super().__init__()
        self.net = nn.Sequential(
            FullyConnectedLayer(n_features, hidden, lr_multiplier=lr_multiplier),
            nn.Softplus(),
            FullyConnectedLayer(hidden, 1 + out_features, lr_multiplier=lr_multiplier),
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        N, M, C = features.shape
        x = self.net(features.reshape(N * M, C)).view(N, M, -1)
        rgb = torch.sigmoid(x[..., 1:]) * (1 + 2 * RGB_PAD) - RGB_PAD
        return x[..., 0:1], rgb


def interval_weights(densities: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """densities, depths [N,M,D,1] (depth-sorted) -> weight of each interval [N,M,D-1,1]:
    alpha = 1 - exp(-softplus(sigma_mid - 1) * delta) times the transmittance before it."""
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
    alpha = 1 - torch.exp(-(F.softplus(densities_mid - 1) * deltas))
    shifted = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2)
    return alpha * torch.cumprod(shifted, -2)[:, :, :-1]


def sample_shares(weights: torch.Tensor) -> torch.Tensor:
    """Interval weights [N,M,D-1,1] -> each sample's share of the midpoint rule [N,M,D,1]:
    sum_i w_i (c_i + c_i+1) / 2 = sum_j c_j (w_j-1 + w_j) / 2."""
    pad = torch.zeros_like(weights[:, :, :1])
    return (torch.cat([pad, weights], -2) + torch.cat([weights, pad], -2)) / 2


def march_rays(
    colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor, white_back: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """colors [N,M,D,C], densities / depths [N,M,D,1] (depth-sorted) -> (composite [N,M,C] in
    about [-1,1], depth [N,M,1], weights [N,M,D-1,1]). Quadrature at interval midpoints."""
    weights = interval_weights(densities, depths)
    return _composite([colors], [sample_shares(weights)], weights, depths, white_back)


def _composite(
    colors: list[torch.Tensor],
    shares: list[torch.Tensor],
    weights: torch.Tensor,
    depths: torch.Tensor,
    white_back: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Colour groups [N,M,Dk,C] with their samples' shares [N,M,Dk,1]; interval weights and
    the sorted depths they belong to -> (composite [N,M,C], depth [N,M,1], weights)."""
    composite = sum((s.transpose(-1, -2) @ c).squeeze(-2) for c, s in zip(colors, shares))
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    depth = torch.sum(weights * depths_mid, -2) / weights.sum(2)
    depth = torch.clamp(torch.nan_to_num(depth, float("inf")), torch.min(depths), torch.max(depths))
    if white_back:
        composite = composite + 1 - weights.sum(2)
    return composite * 2 - 1, depth, weights


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, u: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Inverse-CDF samples: bins [R,n+1], weights [R,n], uniforms u [R,k] -> depths [R,k]."""
    n = weights.shape[1]
    weights = weights + eps
    pdf = weights / torch.sum(weights, -1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    u = u.contiguous()
    k = torch.searchsorted(cdf, u, right=True)
    below, above = torch.clamp_min(k - 1, 0), torch.clamp_max(k, n)
    idx = torch.stack([below, above], -1).view(len(u), -1)
    cdf_g = torch.gather(cdf, 1, idx).view(*u.shape, 2)
    bins_g = torch.gather(bins, 1, idx).view(*u.shape, 2)
    denom = cdf_g[..., 1] - cdf_g[..., 0]
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bins_g[..., 0] + (u - cdf_g[..., 0]) / denom * (bins_g[..., 1] - bins_g[..., 0])


@torch.no_grad()
def importance_depths(depths: torch.Tensor, weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Coarse depths [N,M,D,1] and weights [N,M,D-1,1], uniforms [N*M,k] -> fine depths [N,M,k,1]."""
    N, M, D, _ = depths.shape
    z = depths.reshape(N * M, D)
    w = F.max_pool1d(weights.reshape(N * M, 1, -1).float(), 2, 1, padding=1)
    w = F.avg_pool1d(w, 2, 1)[:, 0] + 0.01
    mids = 0.5 * (z[:, :-1] + z[:, 1:])
    return sample_pdf(mids, w[:, 1:-1], u).reshape(N, M, -1, 1)


class ImportanceRenderer(nn.Module):
    """`(planes [N,3,C,H,W], decoder, origins [N,M,3], dirs [N,M,3], settings, uniforms)` ->
    (features [N,M,C'], depth [N,M,1], weight sum [N,M,1])."""

    def forward(
        self,
        planes: torch.Tensor,
        decoder: OSGDecoder,
        origins: torch.Tensor,
        dirs: torch.Tensor,
        settings: RenderSettings,
        uniforms: Uniforms | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        settings.validate()
        uniforms = uniforms or Uniforms()
        N, M, _ = origins.shape
        dc, di = settings.depth_resolution, settings.depth_resolution_importance
        base = torch.linspace(settings.ray_start, settings.ray_end, dc, device=origins.device)
        r = _uniforms(uniforms.stratified, (N, M, dc, 1), origins, "stratified")
        depths = base.reshape(1, 1, dc, 1).repeat(N, M, 1, 1)
        depths = depths + r * ((settings.ray_end - settings.ray_start) / (dc - 1))
        colors, densities = self.run_model(planes, decoder, origins, dirs, depths, settings)
        if di == 0:
            rgb, depth, weights = march_rays(colors, densities, depths, settings.white_back)
            return rgb, depth, weights.sum(2)
        u = _uniforms(uniforms.importance, (N * M, di), origins, "importance")
        fine = importance_depths(depths, interval_weights(densities, depths), u)
        colors_f, densities_f = self.run_model(planes, decoder, origins, dirs, fine, settings)
        all_depths = torch.cat([depths, fine], dim=-2)
        all_depths, order = torch.sort(all_depths, dim=-2)
        weights = interval_weights(torch.gather(torch.cat([densities, densities_f], -2), -2, order), all_depths)
        shares = torch.zeros_like(all_depths).scatter(-2, order, sample_shares(weights))  # back to sample order
        rgb, depth, weights = _composite(
            [colors, colors_f], [shares[:, :, :dc], shares[:, :, dc:]], weights, all_depths, settings.white_back
        )
        return rgb, depth, weights.sum(2)

    @staticmethod
    def run_model(planes, decoder, origins, dirs, depths, settings):
        """Decode the samples at `depths [N,M,D,1]` -> colors [N,M,D,C'], densities [N,M,D,1]."""
        N, M, D, _ = depths.shape
        points = (origins.unsqueeze(-2) + depths * dirs.unsqueeze(-2)).reshape(N, -1, 3)
        sigma, rgb = decoder(sample_planes(planes, points, settings.box_warp))
        return rgb.reshape(N, M, D, -1), sigma.reshape(N, M, D, 1)


def _uniforms(given: torch.Tensor | None, shape: tuple, like: torch.Tensor, name: str) -> torch.Tensor:
    if given is None:
        return torch.rand(shape, device=like.device, dtype=like.dtype)
    if tuple(given.shape) != tuple(shape):
        raise InputError(f"{name} uniforms must have shape {list(shape)}, got {list(given.shape)}")
    return given.to(device=like.device, dtype=like.dtype)


def camera_from_c(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """c [N,25] -> cam2world [N,4,4], intrinsics [N,3,3]."""
    if c.dim() != 2 or c.shape[1] != 25:
        raise InputError(f"c must have shape [N,25] (16 cam2world + 9 intrinsics), got {list(c.shape)}")
    if not torch.isfinite(c).all():
        raise InputError("c contains NaN or Inf")
    return c[:, :16].reshape(-1, 4, 4), c[:, 16:25].reshape(-1, 3, 3)
