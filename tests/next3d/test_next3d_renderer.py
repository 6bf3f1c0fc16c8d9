"""The volume renderer's fast formulations against the release's own: tri-plane sampling as one
weighted bag per point (vs grid_sample per plane, then the mean) and compositing by sample
shares (vs sorting colours and averaging neighbours)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from faceedit_core.errors import InputError
from faceedit_core.next3d.renderer import (
    PLANE_AXES,
    ImportanceRenderer,
    OSGDecoder,
    RenderSettings,
    Uniforms,
    importance_depths,
    interval_weights,
    march_rays,
    plane_table,
    sample_planes,
)


def release_sample_mean(planes: torch.Tensor, points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """The release: grid_sample each plane at its two coordinates, then the decoder's mean."""
    N, P, C, H, W = planes.shape
    coords = (2 / box_warp) * points
    grid = torch.stack([coords[..., list(ax)] for ax in PLANE_AXES], 1)  # [N,3,M,2]
    out = F.grid_sample(
        planes.reshape(N * P, C, H, W),
        grid.reshape(N * P, 1, -1, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    return out.permute(0, 3, 2, 1).reshape(N, P, -1, C).mean(1)


def release_march(colors, densities, depths):
    """MipRayMarcher2 as released: midpoint colours, densities and depths."""
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    alpha = 1 - torch.exp(-(F.softplus(densities_mid - 1) * deltas))
    shifted = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2)
    weights = alpha * torch.cumprod(shifted, -2)[:, :, :-1]
    composite = torch.sum(weights * colors_mid, -2)
    depth = torch.sum(weights * depths_mid, -2) / weights.sum(2)
    depth = torch.clamp(torch.nan_to_num(depth, float("inf")), torch.min(depths), torch.max(depths))
    return composite * 2 - 1, depth, weights


@pytest.fixture
def planes_and_points():
    gen = torch.Generator().manual_seed(3)
    planes = torch.randn(2, 3, 8, 16, 16, generator=gen)
    # inside, beyond the box (zero padding) and exactly on texel centres and the border
    points = torch.rand(2, 500, 3, generator=gen) * 1.3 - 0.65
    points[:, :20] = torch.tensor([-0.5, 0.5, 0.5 - 1 / 32])
    return planes, points


def test_sampling_equals_grid_sample_of_each_plane_then_the_mean(planes_and_points):
    planes, points = planes_and_points
    for box_warp in (1.0, 1.3):
        ours = sample_planes(planes, points, box_warp)
        assert ours.shape == (2, 500, 8)
        torch.testing.assert_close(ours, release_sample_mean(planes, points, box_warp), rtol=0, atol=2e-6)
    outside = torch.full((2, 4, 3), 0.75)  # every corner beyond the planes
    assert sample_planes(planes, outside, 1.0).abs().max() == 0


def test_sampling_gradients_reach_the_planes_as_grid_sample_does(planes_and_points):
    planes, points = planes_and_points
    target = torch.randn(2, 500, 8)
    grads = []
    for fn in (sample_planes, release_sample_mean):
        p = planes.clone().requires_grad_(True)
        (fn(p, points, 1.0) * target).sum().backward()
        grads.append(p.grad)
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=2e-6)


def test_plane_table_is_channels_last_rows_and_checks_its_layout():
    planes = torch.arange(2 * 3 * 4 * 5 * 5, dtype=torch.float32).view(2, 3, 4, 5, 5)
    table = plane_table(planes)
    assert table.shape == (2 * 3 * 25, 4)
    assert torch.equal(table[((1 * 3 + 2) * 5 + 3) * 5 + 4], planes[1, 2, :, 3, 4])
    with pytest.raises(InputError, match=r"\[N,3,C,S,S\]"):
        plane_table(torch.zeros(1, 3, 4, 5, 6))


def test_marching_by_sample_shares_equals_the_midpoint_rule():
    gen = torch.Generator().manual_seed(4)
    colors = torch.rand(2, 30, 12, 5, generator=gen)
    densities = torch.randn(2, 30, 12, 1, generator=gen) * 3
    depths = torch.sort(torch.rand(2, 30, 12, 1, generator=gen) + 2, dim=-2).values
    for ours, ref in zip(march_rays(colors, densities, depths), release_march(colors, densities, depths)):
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(interval_weights(densities, depths), release_march(colors, densities, depths)[2])


def test_importance_renderer_composites_unsorted_samples_as_the_release_sorts_them():
    """Coarse + fine samples merged: our shares scattered back to sample order give what the
    release gets by sorting colours, densities and depths and marching."""
    torch.manual_seed(5)
    planes = torch.randn(1, 3, 32, 16, 16)
    decoder = OSGDecoder().eval()
    settings = RenderSettings(depth_resolution=10, depth_resolution_importance=7)
    origins = torch.tensor([0.0, 0.0, 2.7]).expand(1, 36, 3)
    dirs = F.normalize(torch.randn(1, 36, 3) * 0.05 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    uniforms = Uniforms(torch.rand(1, 36, 10, 1), torch.rand(36, 7))
    renderer = ImportanceRenderer()
    with torch.no_grad():
        rgb, depth, wsum = renderer(planes, decoder, origins, dirs, settings, uniforms)
        # the release's order of work, from the same samples
        base = torch.linspace(settings.ray_start, settings.ray_end, 10).reshape(1, 1, 10, 1)
        coarse = base + uniforms.stratified * ((settings.ray_end - settings.ray_start) / 9)
        c0, d0 = renderer.run_model(planes, decoder, origins, dirs, coarse, settings)
        fine = importance_depths(coarse, release_march(c0, d0, coarse)[2], uniforms.importance)
        c1, d1 = renderer.run_model(planes, decoder, origins, dirs, fine, settings)
        all_depths = torch.cat([coarse, fine], -2)
        _, order = torch.sort(all_depths, dim=-2)
        ref = release_march(
            torch.gather(torch.cat([c0, c1], -2), -2, order.expand(-1, -1, -1, 32)),
            torch.gather(torch.cat([d0, d1], -2), -2, order),
            torch.gather(all_depths, -2, order),
        )
    torch.testing.assert_close(rgb, ref[0], rtol=0, atol=2e-6)
    torch.testing.assert_close(depth, ref[1], rtol=0, atol=2e-6)
    torch.testing.assert_close(wsum, ref[2].sum(2), rtol=0, atol=2e-6)
