"""Next3DGenerator behaviour on the tiny configuration (demo head topology), the release layout
on the meta device, and the hole fill / mouth box helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceedit_core.errors import InputError
from faceedit_core.flame.default_head import load_procedural_flame
from faceedit_core.next3d import neural_raster as nr
from faceedit_core.next3d.configs import CONFIGS, Next3DConfig, get_config
from faceedit_core.next3d.generator import Next3DGenerator, flame_inputs, prepare_vertices
from faceedit_core.next3d.renderer import Uniforms
from faceedit_core.next3d.topology import Next3DTopology, dense_faces
from faceedit_core.params import FlameParams
from faceedit_core.render.cameras import orbit
from tests.helpers.next3d_golden import release_keys
from tests.helpers.paths import SHARED_DIR


@pytest.fixture(scope="module")
def layer():
    return load_procedural_flame()


@pytest.fixture(scope="module")
def tiny(layer):
    return Next3DGenerator.from_config("tiny", Next3DTopology.from_flame_layer(layer))


@pytest.fixture(scope="module")
def head(layer, tiny):
    """ws [1,28,512], verts [1,V+68,3] of a slightly smiling demo head."""
    torch.manual_seed(0)
    params = FlameParams.zeros(1, layer.n_shape, layer.n_exp)
    params = params.replace(expression=torch.randn(1, layer.n_exp) * 0.3)
    with torch.no_grad():
        ws = tiny.mapping(torch.randn(1, 512), orbit([0], [0]).eg3d_c(), truncation_psi=0.7, truncation_cutoff=14)
    return ws, flame_inputs(layer, params)


@pytest.fixture(scope="module")
def head_planes(tiny, head):
    with torch.no_grad():
        return tiny.planes(*head, keep_parts=True)


def draws(n_cams: int, g: Next3DGenerator, seed: int = 1) -> Uniforms:
    gen = torch.Generator().manual_seed(seed)
    r, s = g.neural_rendering_resolution, g.render_settings
    return Uniforms(
        torch.rand(n_cams, r * r, s.depth_resolution, 1, generator=gen),
        torch.rand(n_cams * r * r, s.depth_resolution_importance, generator=gen),
    )


def test_tiny_generator_renders_a_head_in_range(tiny, head, head_planes):
    ws, verts = head
    planes = head_planes
    with torch.no_grad():
        out = tiny.render_view(planes, ws, orbit([20], [5]).eg3d_c(), uniforms=draws(1, tiny))
    cfg = tiny.config
    P, O = cfg.plane_resolution, cfg.output_resolution  # noqa: E741  (plane and output sizes)
    assert (P, cfg.mouth_resolution, O) == (32, 16, 64)  # the sizes are configuration data
    assert planes.planes.shape == (1, 3, 32, P, P) and planes.parts["mouth_in"].shape == (1, 32, 16, 16)
    assert out["image"].shape == (1, 3, O, O) and out["image_raw"].shape == (1, 3, 16, 16)
    assert out["image_depth"].shape == (1, 1, 16, 16)
    s = tiny.render_settings
    assert s.ray_start <= out["image_depth"].min() and out["image_depth"].max() <= s.ray_end + (s.ray_end - s.ray_start)
    assert out["image_raw"].abs().max() <= 1.002 and torch.isfinite(out["image"]).all()
    alpha = planes.parts["alpha_planes"]
    assert 0.05 < alpha[:, 0].mean() < 0.6  # the face covers part of the front plane
    box = planes.parts["mouth_box"][0].tolist()
    assert (
        box[1] - box[0] == box[3] - box[2] > 2 and 0.4 * P < (box[2] + box[3]) / 2 < 0.6 * P
    )  # mouth near the centre line


def test_turntable_computes_the_planes_once_and_matches_single_views(tiny, head, head_planes):
    ws, verts = head
    calls = {"texture": 0, "static": 0, "blend": 0}
    hooks = [
        tiny.texture_backbone.synthesis.register_forward_hook(
            lambda *a: calls.__setitem__("texture", calls["texture"] + 1)
        ),
        tiny.backbone.synthesis.register_forward_hook(lambda *a: calls.__setitem__("static", calls["static"] + 1)),
        tiny.neural_blending.synthesis.register_forward_hook(lambda *a: calls.__setitem__("blend", calls["blend"] + 1)),
    ]
    cams = orbit([-40, 40], [0, 10]).eg3d_c()
    u = draws(2, tiny)
    try:
        with torch.no_grad():
            turn = tiny.turntable(ws, verts, cams, uniforms=u)
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"texture": 1, "static": 1, "blend": 1}
    assert turn["image"].shape == (2, 3, 64, 64)
    with torch.no_grad():
        single = tiny.render_view(
            head_planes, ws, cams[1:2], uniforms=Uniforms(u.stratified[1:2], u.importance[256:512])
        )
    torch.testing.assert_close(turn["image"][1:2], single["image"], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(turn["image"][0], turn["image"][1])  # the views differ


def test_a_batch_of_heads_gives_each_head_its_own_planes(tiny, layer, head):
    params = FlameParams.zeros(2, layer.n_shape, layer.n_exp).replace(jaw_pose=torch.tensor([[0.0, 0, 0], [0.3, 0, 0]]))
    verts = flame_inputs(layer, params)
    ws = torch.cat([head[0], head[0].flip(-1)])
    with torch.no_grad():
        both = tiny.planes(ws, verts).planes
        second = tiny.planes(ws[1:], verts[1:]).planes
    scale = second.abs().max()
    assert (both[1:] - second).abs().max() <= 1e-5 * scale  # batch rounding only
    assert (both[0] - both[1]).abs().max() > 0.1 * scale


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_generator_is_differentiable_with_respect_to_ws_and_vertices(tiny, head, precision):
    """Also with the bfloat16 super-resolution (`faceedit train --sr-precision bf16`)."""
    ws, verts = head
    ws = ws.clone().requires_grad_(True)
    verts = verts.clone().requires_grad_(True)
    tiny.superresolution.precision = precision
    try:
        out = tiny.synthesis(ws, orbit([10], [0]).eg3d_c(), verts, uniforms=draws(1, tiny))
    finally:
        tiny.superresolution.precision = "auto"
    assert out["image"].dtype == torch.float32
    (out["image"].square().mean() + out["image_raw"].mean()).backward()
    assert torch.isfinite(ws.grad).all() and ws.grad[:, :14].abs().sum() > 0 and ws.grad[:, 14:].abs().sum() > 0
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0


def test_flame_inputs_zero_the_global_rotation_and_translation(layer):
    params = FlameParams.zeros(2, layer.n_shape, layer.n_exp)
    params = params.replace(jaw_pose=torch.tensor([[0.2, 0, 0], [0.1, 0, 0]]))
    turned = params.replace(global_pose=torch.tensor([[0, 0.5, 0], [0.3, 0, 0]]), transl=torch.ones(2, 3))
    a, b = flame_inputs(layer, params), flame_inputs(layer, turned)
    assert a.shape == (2, layer.n_verts + 68, 3)
    torch.testing.assert_close(a, b)
    out = layer(params)
    assert torch.equal(prepare_vertices(out), torch.cat([out.vertices, out.landmarks], 1))
    assert torch.equal(prepare_vertices((out.vertices, out.landmarks)), a)
    with pytest.raises(InputError, match="landmarks must have shape"):
        prepare_vertices((out.vertices, out.landmarks[:, :51]))


def test_bad_inputs_raise_clear_errors(tiny, head):
    ws, verts = head
    with pytest.raises(InputError, match=r"ws must have shape \[B,28,512\]"):
        tiny.planes(ws[:, :14], verts)
    with pytest.raises(InputError, match="V\\+68"):
        tiny.planes(ws, verts[:, :100])
    with pytest.raises(InputError, match="NaN"):
        tiny.planes(ws, verts * float("nan"))
    with pytest.raises(InputError, match="fragments must have"):
        tiny.planes(
            ws,
            verts,
            fragments=nr.PlaneFragments(torch.zeros(1, 4, 8, 8, dtype=torch.long), torch.zeros(1, 4, 8, 8, 3)),
        )
    with pytest.raises(InputError, match="mouth box"):
        tiny.planes(ws, verts * 3)  # centimetres would put the lips off the plane
    with pytest.raises(InputError, match=r"c must have shape \[N,25\]"):
        tiny.render_view(torch.zeros(1, 3, 32, 8, 8), ws, torch.zeros(1, 16))
    with pytest.raises(InputError, match="stratified uniforms"):
        tiny.render_view(
            torch.zeros(1, 3, 32, 8, 8), ws, orbit([0], [0]).eg3d_c(), uniforms=Uniforms(torch.rand(1, 3, 3, 1), None)
        )
    with pytest.raises(InputError, match="unknown Next3D configuration"):
        get_config("huge")


def test_fill_holes_fills_enclosed_holes_and_respects_the_254_threshold():
    alpha = torch.zeros(1, 1, 12, 12)
    alpha[..., 2:10, 2:10] = 1.0  # the face: 255 > 254 stops the fill
    alpha[..., 4:6, 4:6] = 0.0  # an enclosed hole -> 1
    alpha[..., 0:2, 6] = 0.3  # a soft notch connected to the outside: kept
    alpha[..., 7, 2:5] = 0.8  # soft face pixels reachable from the outside: kept
    out = nr.fill_holes(alpha)
    assert torch.equal(out[..., 4:6, 4:6], torch.ones(1, 1, 2, 2))
    assert torch.equal(out[..., 0, 0], alpha[..., 0, 0]) and torch.allclose(out[..., 0:2, 6], alpha[..., 0:2, 6])
    assert torch.allclose(out[..., 7, 2:5], torch.tensor(0.8))
    assert torch.equal(out[..., 3, 3], torch.tensor([[1.0]]))
    # a ring at 254.5/255 stops the fill: everything inside it becomes 1
    ring = torch.zeros(1, 1, 12, 12)
    ring[..., 2:10, 2:10] = 254.5 / 255
    ring[..., 3:9, 3:9] = 0.5
    filled = nr.fill_holes(ring)
    assert torch.equal(filled[..., 3:9, 3:9], torch.ones(1, 1, 6, 6))
    ring[..., 2:10, 2:10] = 254 / 255  # at the threshold the fill passes, the inside keeps its value
    ring[..., 3:9, 3:9] = 0.5
    assert torch.allclose(nr.fill_holes(ring)[..., 3:9, 3:9], torch.tensor(0.5))


def test_flood_region_is_four_connected_and_matches_a_reference_fill():
    rng = np.random.default_rng(0)
    values = (rng.random((40, 40)) > 0.7) * 255.0  # 30 % walls
    values[0, 0] = 0
    ours = nr.flood_region(values.astype(np.float32), 254)
    ref = np.zeros_like(ours)  # breadth-first search, 4 neighbours
    todo = [(0, 0)]
    ref[0, 0] = True
    while todo:
        r, c = todo.pop()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < 40 and 0 <= cc < 40 and not ref[rr, cc] and values[rr, cc] <= 254:
                ref[rr, cc] = True
                todo.append((rr, cc))
    assert np.array_equal(ours, ref) and ours.sum() > 20


def test_dense_faces_is_the_release_grid():
    d = dense_faces()
    assert d.shape == (122990, 3)
    assert d[0].tolist() == [1282, 1538, 1283] and d[1].tolist() == [1283, 1538, 1539]
    assert int(d.min()) == 5 * 256 + 2 and int(d.max()) == 250 * 256 + 253


def test_config_round_trip_carries_the_sizes_and_old_manifests_get_the_release_sizes():
    tiny = CONFIGS["tiny"]
    assert Next3DConfig.from_dict(tiny.to_dict()) == tiny
    sizes = ("plane_resolution", "mouth_resolution", "output_resolution")
    old = {k: v for k, v in tiny.to_dict().items() if k not in sizes}
    assert tuple(getattr(Next3DConfig.from_dict(old), k) for k in sizes) == (256, 64, 512)
    assert tuple(getattr(CONFIGS["full"], k) for k in sizes) == (256, 64, 512)
    for bad, field in (
        (dict(plane_resolution=48), "plane_resolution"),
        (dict(plane_resolution=512), "plane_resolution"),
        (dict(mouth_resolution=64), "mouth_resolution"),
        (dict(output_resolution=8), "output_resolution"),
    ):
        with pytest.raises(InputError, match=field):
            tiny.with_(**bad).validate()


# ---------------------------------------------------------------- the release layout


def test_full_configuration_has_exactly_the_release_state_dict():
    release = release_keys(SHARED_DIR)
    n_faces, n_uvs = release["faces"][1], release["uvcoords"][1]
    g = torch.Generator().manual_seed(0)  # FLAME's template sizes: 9976 faces, 5118 uvs
    topo = Next3DTopology(
        torch.randint(0, 5023, (n_faces, 3), generator=g),
        torch.rand(n_uvs, 2, generator=g),
        torch.randint(0, n_uvs, (n_faces, 3), generator=g),
        None,
    )
    with torch.device("meta"):
        full = Next3DGenerator("full", topo)
    ours = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert len(ours) == 674
    assert ours == release, sorted(set(ours) ^ set(release))[:10]
    assert list(ours) == list(release)  # the same order, too
    assert sum(p.numel() for p in full.parameters()) == pytest.approx(174e6, rel=0.02)
    assert CONFIGS["full"].neural_rendering_resolution == 64 and CONFIGS["full"].render.depth_resolution == 48


def test_ws_halves_render_the_same_image_and_leave_an_unedited_half_out_of_autograd(tiny, head):
    """Training passes (ws[:, :14], ws[:, 14:] + dw): the same image as the [B,28,512] tensor, and
    with Next3D frozen the static tri-plane backbone (which reads only ws[:, :14]) records no graph."""
    from faceedit_core.next3d.generator import split_ws

    ws, verts = head
    c = orbit([10.0], [0.0]).eg3d_c()
    with torch.no_grad():
        whole = tiny.synthesis(ws, c, verts, uniforms=draws(1, tiny))["image"]
        halves = tiny.synthesis(split_ws(ws), c, verts, uniforms=draws(1, tiny))["image"]
    assert torch.equal(whole, halves)
    flags = [p.requires_grad for p in tiny.parameters()]
    seen = {}
    hooks = [
        net.synthesis.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.requires_grad))
        for name, net in (("static", tiny.backbone), ("texture", tiny.texture_backbone))
    ]
    try:
        tiny.requires_grad_(False)
        dw = torch.zeros(1, 14, 512, requires_grad=True)
        image = tiny.synthesis((ws[:, :14], ws[:, 14:] + dw), c, verts, uniforms=draws(1, tiny))["image"]
        image.square().mean().backward()
        assert seen == {"static": False, "texture": True} and dw.grad.abs().sum() > 0
        tiny.synthesis(ws + torch.zeros_like(ws, requires_grad=True), c, verts, uniforms=draws(1, tiny))
        assert seen["static"]  # one [B,28,512] tensor that requires grad pulls the static backbone in
    finally:
        for h in hooks:
            h.remove()
        for p, flag in zip(tiny.parameters(), flags):
            p.requires_grad_(flag)
    with pytest.raises(InputError, match=r"ws\[:, 14:\]"):
        tiny.synthesis((ws[:, :14], ws[:, :13]), c, verts)
