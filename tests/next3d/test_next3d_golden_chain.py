"""The assembled Next3D generator against the golden vectors: stage 05 (neural-texture
rasterisation, mouth, plane assembly), 06 (rays, importance renderer, decoder) and 08 (mapping
then synthesis), in the golden configuration with the synthetic head template and mask.

The chain replays the recorded stand-in rasteriser outputs and random draws (README §5.5,
§5.6), so every tensor can be compared within README §6's tolerance; with this project's own
rasteriser the comparison is on the fragments (silhouette pixels)."""

from __future__ import annotations

import pytest
import torch

from faceedit_core.next3d import neural_raster as nr
from faceedit_core.next3d.configs import CONFIGS
from faceedit_core.next3d.generator import Next3DGenerator
from faceedit_core.next3d.renderer import (
    ImportanceRenderer,
    OSGDecoder,
    RenderSettings,
    Uniforms,
    camera_from_c,
    importance_depths,
    march_rays,
    sample_rays,
)
from faceedit_core.next3d.topology import Next3DTopology
from tests.helpers.next3d_golden import load_stage, load_state_dict, sub_state_dict, two_threads


@pytest.fixture(autouse=True)
def _two_threads():
    with two_threads():
        yield


@pytest.fixture(scope="module")
def golden(golden_next3d_dir):
    d = golden_next3d_dir
    topology = Next3DTopology.from_obj(d / "synthetic_head.obj", d / "synthetic_uv_face_eye_mask.png")
    g = Next3DGenerator.from_config("golden", topology)
    g.load_state_dict(load_state_dict(d), strict=True)
    g.superresolution.precision = "fp32"  # the official CPU numbers
    stages = {n: load_stage(d, n) for n in ("04", "05", "06", "08")}
    return g.eval(), topology, stages


def recorded_fragments(s5) -> nr.PlaneFragments:
    return nr.PlaneFragments.from_pytorch3d(
        [s5[f"view{k}.pix_to_face"] for k in range(4)], [s5[f"view{k}.bary_coords"] for k in range(4)]
    )


@pytest.fixture(scope="module")
def chain(golden):
    """Mapping, planes (replayed fragments) and one render, as in file 08."""
    g, _, st = golden
    s5, s6, s8 = st["05"], st["06"], st["08"]
    with two_threads(), torch.no_grad():
        ws = g.mapping(
            s8["z"],
            s8["c_cond"],
            truncation_psi=s8.meta["truncation_psi"],
            truncation_cutoff=s8.meta["truncation_cutoff"],
        )
        planes = g.planes(s8["ws"], s8["v"], fragments=recorded_fragments(s5), keep_parts=True)
        out = g.render_view(
            planes, s8["ws"], s8["c_render"], uniforms=Uniforms(s6["rand_stratified"], s6["rand_importance"])
        )
    return ws, planes, out


def test_topology_buffers_and_mask_from_the_synthetic_assets_equal_the_golden_ones(golden, golden_next3d_dir):
    g, topology, st = golden
    sd = load_state_dict(golden_next3d_dir)
    for name, value in topology.buffers().items():
        assert torch.equal(value, sd[name]), name
    assert torch.equal(topology.uv_mask, st["05"]["uv_face_mask_u8"].to(torch.float32) / 255)
    assert torch.equal(g.uv_mask, topology.uv_mask)


def test_view_transform_reproduces_the_recorded_raster_vertices_and_landmarks(golden):
    _, _, st = golden
    s5 = st["05"]
    s = nr.view_coords(s5["v"])
    for k in range(4):
        # the release hands (-s_x, s_y, 10 - s_z) to PyTorch3D (README §5.5 step 6)
        raster = torch.stack([-s[:, k, :5023, 0], s[:, k, :5023, 1], 10 - s[:, k, :5023, 2]], -1)
        torch.testing.assert_close(raster, s5[f"view{k}.raster_verts"], rtol=0, atol=1e-6)
        torch.testing.assert_close(nr.landmarks_2d(s[:, k, 5023:]), s5[f"view{k}.lm2d"], rtol=0, atol=1e-6)
    assert torch.equal(nr.mouth_box(nr.landmarks_2d(s[:, 0, 5023:])), s5["mouth_box"])


def test_stage_05_views_alphas_and_renderings(golden, chain):
    _, _, st = golden
    s5 = st["05"]
    parts = chain[1].parts
    views, alpha = parts["views"], parts["alpha"]
    for k in range(4):
        s5.assert_close(f"view{k}.uv_grid", views.uv_grid[:, k].permute(0, 3, 1, 2))
        s5.assert_close(f"view{k}.alpha_prefill", views.alpha_prefill[:, k])
        s5.assert_close(f"view{k}.alpha", alpha[:, k], rel=0)  # exact when the fragments are replayed
        s5.assert_close(f"view{k}.rendering", views.rendering[:, k])


def test_stage_05_mouth_blending_and_plane_assembly(golden, chain):
    _, _, st = golden
    s4, s5 = st["04"], st["05"]
    parts = chain[1].parts
    assert torch.equal(parts["mouth_box"], s5["mouth_box"])
    s4.assert_close("mouth.x_in", parts["mouth_in"])
    s4.assert_close("mouth.out", parts["mouth"])
    s5.assert_close("stitched", parts["stitched"])
    r0, r1, c0, c1 = s5.meta["stitched.mouth_region_rows_cols"]
    s5.assert_close("stitched.mouth_region", parts["stitched"][:, :, r0:r1, c0:c1])
    s5.assert_close("blend_out", parts["blend_out"])
    s5.assert_close("alpha_planes", parts["alpha_planes"], rel=0)
    s5.assert_close("feature_planes", parts["feature_planes"])
    s5.assert_close("blended_planes", chain[1].planes)
    # the side quirk: the side alpha is binary and ignores the -90 degree view
    side = parts["alpha_planes"][:, 1]
    assert set(side.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(side, (parts["alpha"][:, 1] > 0).float())
    assert not torch.equal(side, (parts["alpha"][:, 2] > 0).float())


def test_own_rasteriser_agrees_with_the_recorded_stand_in(golden):
    """This project's rasteriser instead of the replay: same faces except at silhouette pixels,
    barycentrics equal up to the float16 rounding of the recorded ones (and sliver triangles)."""
    g, topology, st = golden
    s5 = st["05"]
    ref = recorded_fragments(s5)
    s = nr.view_coords(s5["v"])
    own = nr.rasterize_views(s[:, :, :5023], topology.faces)
    for k in range(4):
        r, o = ref.pix_to_face[:, k], own.pix_to_face[:, k]
        covered = (r >= 0).sum()
        assert ((r >= 0) != (o >= 0)).sum() <= 0.002 * covered, k
        same = (r == o) & (r >= 0)
        assert same.sum() >= 0.99 * covered, k
        diff = (own.bary[:, k][same] - ref.bary[:, k][same]).abs()
        assert diff.quantile(0.999) < 2e-3 and diff.max() < 1e-2, (k, float(diff.max()))
    with torch.no_grad():
        ws = st["08"]["ws"]
        mine = g.planes(ws, s5["v"], keep_parts=True).parts["alpha_planes"]
    diff = (mine - s5["alpha_planes"]).abs()  # soft mask values move with the barycentrics; few flips
    assert diff.mean() < 1e-4 and (diff > 0.01).float().mean() < 1e-3


def test_stage_06_rays_and_renderer_on_synthetic_planes(golden):
    g, _, st = golden
    s6 = st["06"]
    cam2world, intrinsics = camera_from_c(s6["c"])
    origins, dirs = sample_rays(cam2world, intrinsics, s6.meta["neural_rendering_resolution"])
    s6.assert_close("ray_origins", origins)
    s6.assert_close("ray_directions", dirs)
    settings = RenderSettings.from_kwargs(s6.meta["rendering_kwargs"])
    assert settings == CONFIGS["golden"].render
    uniforms = Uniforms(s6["rand_stratified"], s6["rand_importance"])
    with torch.no_grad():
        feats, depth, wsum = ImportanceRenderer()(s6["planes"], g.decoder, origins, dirs, settings, uniforms)
        # the intermediate depths, through the same building blocks
        base = torch.linspace(settings.ray_start, settings.ray_end, settings.depth_resolution)
        coarse = base.reshape(1, 1, -1, 1) + s6["rand_stratified"] * ((settings.ray_end - settings.ray_start) / 47)
        s6.assert_close("depths_coarse", coarse)
        colors, dens = ImportanceRenderer.run_model(s6["planes"], g.decoder, origins, dirs, coarse, settings)
        _, _, weights = march_rays(colors, dens, coarse)
        s6.assert_close("depths_fine", importance_depths(coarse, weights, s6["rand_importance"]))
    s6.assert_close("feature_samples", feats)
    s6.assert_close("depth_samples", depth)
    s6.assert_close("weights_sum", wsum)


def test_stage_06_decoder_is_the_osg_decoder_of_the_state_dict(golden, golden_next3d_dir):
    g, _, _ = golden
    dec = OSGDecoder()
    dec.load_state_dict(sub_state_dict(load_state_dict(golden_next3d_dir), "decoder"))
    x = torch.randn(1, 5, 32)  # the mean of the three planes' features (sample_planes)
    sigma, rgb = dec(x)
    assert sigma.shape == (1, 5, 1) and rgb.shape == (1, 5, 32)
    assert rgb.min() > -0.001 and rgb.max() < 1.001
    torch.testing.assert_close(g.decoder(x)[1], rgb)


def test_stage_08_end_to_end(golden, chain):
    _, _, st = golden
    s6, s8 = st["06"], st["08"]
    ws, _, out = chain
    s8.assert_close("ws", ws)
    for name in ("image_raw", "image_depth", "feature_image", "image"):
        s8.assert_close(name, out[name])
    s6.assert_close("chain.weights_sum", out["weights_sum"].reshape(1, 1, -1).permute(0, 2, 1))
    assert out["image"].shape == (1, 3, 512, 512)
