"""Next3D networks: StyleGAN2 ops and layers, mapping, the two StyleGAN2 backbones, the two
StyleUNets and the super-resolution, against the golden vectors (stages 01, 02, 03, 04, 07)
and against independent formulations of the ops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceedit_core.errors import InputError
from faceedit_core.next3d.layers import SynthesisBlock, modulated_conv2d, normalize_2nd_moment
from faceedit_core.next3d.mapping import MappingNetwork
from faceedit_core.next3d.ops import bias_act, conv2d_resample, downsample2d, setup_filter, upfirdn2d, upsample2d
from faceedit_core.next3d.stylegan2 import StyleGAN2Backbone, SynthesisNetwork
from faceedit_core.next3d.styleunet import StyleUNet
from faceedit_core.next3d.superres import SuperresolutionHybrid8XDC
from tests.helpers.next3d_golden import load_stage, load_state_dict, release_keys, sub_state_dict, two_threads

# README §2 of the golden set: the small configuration the official code was run with.
GOLDEN_KW = dict(
    channel_base=2048, channel_max=32, num_fp16_res=0, conv_clamp=None, fused_modconv_default="inference_only"
)
FULL_KW = dict(
    channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None, fused_modconv_default="inference_only"
)


def build_nets(kw: dict) -> dict[str, torch.nn.Module]:
    """The five networks of this package under their state-dict prefixes in TriPlaneGenerator."""
    return {
        "texture_backbone": StyleGAN2Backbone(512, 25, 512, 256, 32, **kw),
        "backbone": StyleGAN2Backbone(512, 25, 512, 256, 96, mapping_ws=28, **kw),
        "mouth_backbone": StyleUNet(
            512, 25, 512, 256, 32, cond_channels=32, in_size=64, final_size=4, num_cond_res=64, **kw
        ),
        "neural_blending": StyleUNet(
            512, 25, 512, 256, 32, cond_channels=32, in_size=256, final_size=32, num_cond_res=256, **kw
        ),
        "superresolution": SuperresolutionHybrid8XDC(
            32, 512, sr_num_fp16_res=4, sr_antialias=True, fused_modconv_default=kw["fused_modconv_default"]
        ),
    }


@pytest.fixture(scope="module")
def golden_nets(golden_next3d_dir):
    torch.manual_seed(0)
    sd = load_state_dict(golden_next3d_dir)
    nets = build_nets(GOLDEN_KW)
    for prefix, net in nets.items():
        net.load_state_dict(sub_state_dict(sd, prefix), strict=True)
        net.eval()
    nets["superresolution"].precision = "fp32"  # the official CPU numbers
    return nets


@pytest.fixture(autouse=True)
def _two_threads():
    with two_threads():
        yield


# ---------------------------------------------------------------- golden stages


@torch.no_grad()
def test_mapping_matches_golden_stage_01(golden_nets, golden_next3d_dir):
    stage = load_stage(golden_next3d_dir, "01")
    mapping = golden_nets["backbone"].mapping
    z, c = stage["z"], stage["c"]
    stage.assert_close("embed_out", mapping.embed(c))
    h = torch.cat([normalize_2nd_moment(z), normalize_2nd_moment(mapping.embed(c))], dim=1)
    stage.assert_close("fc0_out", mapping.fc0(h))
    stage.assert_close("fc1_out", mapping.fc1(mapping.fc0(h)))
    stage.assert_close("ws_psi1", mapping(z, c))
    cutoff = stage.meta["truncation_cutoff"]
    psi = stage.meta["truncation_psi"]
    ws = mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
    stage.assert_close("ws_psi0.7_cutoff14", ws)
    assert torch.equal(ws[:, cutoff:], mapping(z, c)[:, cutoff:])  # the texture rows stay untruncated
    stage.assert_close("ws_psi0.7_cutoffNone", mapping(z, c, truncation_psi=psi))


@torch.no_grad()
@pytest.mark.parametrize("number,prefix,name", [("02", "texture_backbone", "texture"), ("03", "backbone", "planes")])
def test_stylegan2_backbones_match_golden(golden_nets, golden_next3d_dir, number, prefix, name):
    stage = load_stage(golden_next3d_dir, number)
    stage.assert_close(name, golden_nets[prefix].synthesis(stage["ws"], noise_mode="const"))


@torch.no_grad()
def test_mouth_styleunet_matches_golden_stage_04(golden_nets, golden_next3d_dir):
    stage = load_stage(golden_next3d_dir, "04")
    out = golden_nets["mouth_backbone"].synthesis(stage["mouth.x_in"], stage["ws"], noise_mode="const")
    stage.assert_close("mouth.out", out)


@torch.no_grad()
def test_blending_styleunet_matches_golden_stage_04(golden_nets, golden_next3d_dir):
    stage = load_stage(golden_next3d_dir, "04")
    x_in = stage["blend.x_in_lowres"].repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    out = golden_nets["neural_blending"](x_in, stage["ws"], noise_mode="const")
    stage.assert_close("blend.out", out)


@torch.no_grad()
def test_superresolution_matches_golden_stage_07(golden_nets, golden_next3d_dir):
    stage = load_stage(golden_next3d_dir, "07")
    sr = golden_nets["superresolution"]
    rgb, x = sr.resize_inputs(stage["rgb"], stage["x"])
    stage.assert_close("block0.img_in", rgb)
    stage.assert_close("block0.x_in", x)
    ws3 = stage["ws"][:, -1:].repeat(1, 3, 1)
    stage.assert_close("block0.img_out", sr.block0(x, rgb, ws3, noise_mode="none")[1])
    stage.assert_close("image", sr(stage["rgb"], stage["x"], stage["ws"]))


@torch.no_grad()
def test_superresolution_clamp_case_matches_golden_stage_07(golden_nets, golden_next3d_dir):
    stage = load_stage(golden_next3d_dir, "07")
    sr = golden_nets["superresolution"]
    rgb, x = stage["rgb"] * 1024, stage["x"] * 1024
    r128, x128 = sr.resize_inputs(rgb, x)
    ws3 = stage["ws"][:, -1:].repeat(1, 3, 1)
    stage.assert_close("clamp.block0.img_out", sr.block0(x128, r128, ws3, noise_mode="none")[1])
    image = sr(rgb, x, stage["ws"])
    stage.assert_close("clamp.image", image)
    unclamped = SuperresolutionHybrid8XDC(32, sr_num_fp16_res=0)  # same weights, no clamp
    unclamped.load_state_dict(sr.state_dict())
    assert (unclamped.eval()(rgb, x, stage["ws"]) - image).abs().max() > 1.0  # the clamp was active


# ---------------------------------------------------------------- release layout


def test_full_configuration_has_the_release_names_and_shapes(golden_next3d_dir):
    release = release_keys(golden_next3d_dir.parent.parent)
    with torch.device("meta"):
        nets = build_nets(FULL_KW)
    for prefix, net in nets.items():
        ours = {f"{prefix}.{k}": tuple(v.shape) for k, v in net.state_dict().items()}
        theirs = {k: v for k, v in release.items() if k.startswith(prefix + ".")}
        assert ours == theirs, (prefix, sorted(set(ours) ^ set(theirs))[:10])
    assert sum(p.numel() for p in nets["texture_backbone"].parameters()) == pytest.approx(29.0e6, rel=0.02)
    assert sum(p.numel() for p in nets["neural_blending"].parameters()) == pytest.approx(44.5e6, rel=0.02)


# ---------------------------------------------------------------- ops


def _upfirdn_loops(
    x: np.ndarray, f: np.ndarray, up: int, down: int, pad: tuple[int, int, int, int], gain: float
) -> np.ndarray:
    """upfirdn by definition on one channel: zero insertion, padding, convolution, decimation."""
    h, w = x.shape
    u = np.zeros((h * up, w * up))
    u[::up, ::up] = x
    px0, px1, py0, py1 = pad
    u = np.pad(u, ((max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
    u = u[max(-py0, 0) : u.shape[0] - max(-py1, 0), max(-px0, 0) : u.shape[1] - max(-px1, 0)]
    k = f.shape[0]
    out = np.zeros((u.shape[0] - k + 1, u.shape[1] - k + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (u[i : i + k, j : j + k] * f[::-1, ::-1]).sum() * gain
    return out[::down, ::down]


@pytest.mark.parametrize(
    "up,down,pad", [(1, 1, (1, 2, 2, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (2, 1, 1, 2)), (1, 1, (-1, 2, 0, -1))]
)
def test_upfirdn2d_matches_its_definition(up, down, pad):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 7, 6, generator=g, dtype=torch.float64)
    f = torch.rand(4, 4, generator=g, dtype=torch.float64)
    gain = float(up * up)
    ours = upfirdn2d(x, f, up=up, down=down, padding=pad, gain=gain)
    for ch in range(2):
        ref = _upfirdn_loops(x[0, ch].numpy(), f.numpy(), up, down, pad, gain)
        np.testing.assert_allclose(ours[0, ch].numpy(), ref, rtol=1e-12, atol=1e-12)


def test_resampling_keeps_constant_images_constant_and_sizes_exact():
    f = setup_filter()
    assert torch.allclose(f.sum(), torch.tensor(1.0)) and f.shape == (4, 4)
    x = torch.full((1, 3, 8, 8), 2.5)
    up = upsample2d(x, f)
    down = downsample2d(x, f)
    assert up.shape == (1, 3, 16, 16) and down.shape == (1, 3, 4, 4)
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.tensor(2.5))  # interior, away from zero padding
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.tensor(2.5))


@pytest.mark.parametrize("up,down,flip", [(1, 1, True), (2, 1, True), (2, 1, False), (1, 2, True)])
def test_conv2d_resample_matches_the_generic_route(up, down, flip):
    """Fast routes (transposed conv then FIR; FIR then strided conv) against the generic one:
    zero-insertion + FIR, convolution, FIR + decimation, all padding applied up front."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64)
    f = setup_filter().to(torch.float64)
    ours = conv2d_resample(x, w, f, up=up, down=down, padding=1, flip_weight=flip)
    w_corr = w if flip else w.flip([2, 3])
    if up > 1:
        ref = torch.nn.functional.conv2d(upfirdn2d(x, f, up=up, padding=(3, 2, 3, 2), gain=up * up), w_corr)
    elif down > 1:
        ref = upfirdn2d(torch.nn.functional.conv2d(x, w_corr, padding=2), f, down=down)
    else:
        ref = torch.nn.functional.conv2d(x, w_corr, padding=1)
    assert ours.shape == (2, 5, 8 * up // down, 8 * up // down)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    with pytest.raises(InputError, match="up and down"):
        conv2d_resample(x, w, f, up=2, down=2)


def test_bias_act_adds_bias_activates_scales_and_clamps():
    x = torch.tensor([[-2.0, 1.0], [3.0, -0.5]]).reshape(1, 2, 2, 1)
    b = torch.tensor([0.5, -1.0])
    out = bias_act(x, b, act="lrelu", gain=2.0, clamp=3.0)
    pre = np.array([[-1.5, 1.5], [2.0, -1.5]])
    expect = np.clip(np.where(pre > 0, pre, 0.2 * pre) * 2.0, -3, 3)
    np.testing.assert_allclose(out.reshape(2, 2).numpy(), expect, rtol=1e-6)
    assert torch.equal(bias_act(x), x)
    with pytest.raises(InputError, match="activation"):
        bias_act(x, act="gelu")


def test_bias_act_is_differentiable_under_autograd():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    bias_act(x, b, act="lrelu", clamp=100.0).sum().backward()
    expect = torch.where(x.detach() > 0, 1.0, 0.2) * math.sqrt(2)
    torch.testing.assert_close(x.grad, expect)
    assert b.grad.shape == (3,)
    # a fresh x handed over (reuse_x) is overwritten only outside autograd; with a trainable bias
    # and a constant x the steps must still run out of place, or the backward pass breaks
    fresh = torch.randn(2, 3, 4, 4)
    out = bias_act(fresh, b, act="lrelu", gain=2.0, reuse_x=True)
    out.sum().backward()
    assert not torch.equal(out, fresh) and b.grad.abs().sum() > 0
    with torch.no_grad():
        kept = fresh.clone()
        out = bias_act(fresh, b, act="lrelu", reuse_x=True)
    assert out.data_ptr() == fresh.data_ptr() and not torch.equal(fresh, kept)  # in place, as promised


@pytest.mark.parametrize("up", [1, 2])
def test_fused_and_unfused_modulated_convolution_agree(up):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 8, 8, generator=g)
    weight = torch.randn(5, 6, 3, 3, generator=g)
    styles = torch.randn(2, 6, generator=g) + 1  # a different style per sample
    noise = torch.randn(8 * up, 8 * up, generator=g)
    f = setup_filter()
    kw = dict(noise=noise, up=up, padding=1, resample_filter=f, flip_weight=(up == 1))
    fused = modulated_conv2d(x, weight, styles, fused_modconv=True, **kw)
    unfused = modulated_conv2d(x, weight, styles, fused_modconv=False, **kw)
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)
    # Sample 1 alone gives sample 1 of the batch: the grouped convolution keeps samples apart.
    alone = modulated_conv2d(x[1:], weight, styles[1:], fused_modconv=True, **kw)
    torch.testing.assert_close(alone[0], fused[1], rtol=1e-5, atol=1e-5)
    # Demodulation makes the output invariant to a common scale of the styles.
    demod = modulated_conv2d(x, weight, styles * 10, fused_modconv=True, padding=1)
    torch.testing.assert_close(
        demod, modulated_conv2d(x, weight, styles, fused_modconv=True, padding=1), rtol=1e-4, atol=1e-5
    )


def test_float16_modulated_convolution_tracks_float32():
    """The fp16 path (released SR blocks on CUDA) normalises weights and styles; on CPU it is
    exercised directly, since the blocks themselves force float32 off CUDA."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 8, 16, 16, generator=g)
    w = torch.randn(4, 8, 3, 3, generator=g)
    s = torch.randn(2, 8, generator=g) * 30
    ref = modulated_conv2d(x, w, s, padding=1)
    half = modulated_conv2d(x.half(), w, s, padding=1)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (fp16 blocks only run on CUDA)")
def test_superresolution_fp16_blocks_on_cuda_track_float32():
    torch.manual_seed(5)
    sr = SuperresolutionHybrid8XDC(32).eval()
    rgb, x, ws = torch.randn(1, 3, 64, 64), torch.randn(1, 32, 64, 64), torch.randn(1, 14, 512)
    with torch.no_grad():
        sr.precision = "fp32"
        ref = sr(rgb, x, ws)
        sr.precision = "auto"  # float16 on CUDA, as released
        cuda = sr.cuda()(rgb.cuda(), x.cuda(), ws.cuda()).cpu()
    assert cuda.dtype == torch.float32
    assert (cuda - ref).abs().max() < 2e-2 * ref.abs().max()


@torch.no_grad()
def test_superresolution_bf16_blocks_track_the_golden_float32_image(golden_nets, golden_next3d_dir):
    """The CPU fast path (precision "bf16"): the image stays float32 and within
    a few percent of the official float32 one at its worst pixel (measured: 2.0 % max, 0.41 %
    mean of the peak; float16, the release's CUDA path, gives 0.25 % and 0.05 %)."""
    stage = load_stage(golden_next3d_dir, "07")
    sr = golden_nets["superresolution"]
    sr.precision = "bf16"
    try:
        image = sr(stage["rgb"], stage["x"], stage["ws"])
    finally:
        sr.precision = "fp32"
    assert image.dtype == torch.float32
    idx = stage["index_512"]
    diff = (image[..., idx][..., idx, :] - stage["image.sub"]).abs() / stage.max_abs("image")
    assert 1e-4 < diff.max() < 0.04 and diff.mean() < 0.008  # bf16 really ran, and stays close


def test_reduced_precision_policy():
    from faceedit_core.next3d import precision

    assert precision.reduced_dtype("auto", torch.device("cuda")) == torch.float16  # as released
    assert precision.reduced_dtype("auto", torch.device("cpu")) == torch.float32
    assert precision.reduced_dtype("fp32", torch.device("cuda")) == torch.float32
    assert precision.reduced_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(InputError, match="'fp64' is not one of"):
        precision.reduced_dtype("fp64", torch.device("cpu"))
    sr = SuperresolutionHybrid8XDC(8, 64, block_channels=(8, 4))
    sr.precision = "fp16"
    assert sr.block0.precision == sr.block1.precision == "fp16"
    with pytest.raises(InputError, match="super-resolution precision 'half'"):
        sr.precision = "half"


# ---------------------------------------------------------------- behaviour


def test_mapping_truncation_and_batch_independence():
    torch.manual_seed(6)
    m = MappingNetwork(16, 25, 32, num_ws=6).eval()
    m.w_avg.normal_()
    z, c = torch.randn(3, 16), torch.randn(3, 25)
    ws = m(z, c)
    assert ws.shape == (3, 6, 32) and torch.equal(ws[:, 0], ws[:, 5])
    trunc = m(z, c, truncation_psi=0.0, truncation_cutoff=2)
    assert torch.allclose(trunc[:, :2], m.w_avg.expand(3, 2, 32)) and torch.equal(trunc[:, 2:], ws[:, 2:])
    torch.testing.assert_close(m(z[1:2], c[1:2]), ws[1:2], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="z must have shape"):
        m(torch.randn(3, 15), c)
    with pytest.raises(InputError, match="c must have shape"):
        m(z, torch.randn(3, 24))


def test_synthesis_is_differentiable_in_training_mode():
    """Training (unfused modconv, autograd through the in-place-free path) gives ws gradients."""
    torch.manual_seed(7)
    net = SynthesisNetwork(32, 16, 4, channel_base=256, channel_max=16).train()
    ws = torch.randn(2, net.num_ws, 32, requires_grad=True)
    img = net(ws, noise_mode="random")
    assert img.shape == (2, 4, 16, 16)
    img.square().mean().backward()
    assert torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        a, b = net(ws.detach()), net(ws.detach())
    assert torch.equal(a, b)  # const noise is deterministic


def test_styleunet_uses_only_its_documented_ws_rows():
    torch.manual_seed(8)
    net = StyleUNet(
        8, 0, 32, 64, 4, cond_channels=4, in_size=32, final_size=8, num_cond_res=32, channel_base=256, channel_max=16
    ).eval()
    x = torch.randn(1, 4, 32, 32)
    ws = torch.randn(1, net.num_ws, 32)
    with torch.no_grad():
        out = net(x, ws)
        changed = ws.clone()
        changed[:, :3] += 5  # rows of b4 and b8's conv0, which the first run block (b16) does not read
        torch.testing.assert_close(net(x, changed), out)
        changed[:, 4] += 5  # b16's conv1
        assert not torch.allclose(net(x, changed), out)
        assert not torch.allclose(net(x * 2, ws), out)  # the image conditions the output
    assert out.shape == (1, 4, 64, 64)


def test_bad_inputs_raise_clear_errors():
    torch.manual_seed(9)
    net = SynthesisNetwork(32, 16, 4, channel_base=256, channel_max=16)
    with pytest.raises(InputError, match=r"ws must have shape \[B,6,32\]"):
        net(torch.randn(1, 5, 32))
    with pytest.raises(InputError, match="noise_mode"):
        net(torch.randn(1, 6, 32), noise_mode="loud")
    with pytest.raises(InputError, match="power of two"):
        SynthesisNetwork(32, 24, 4)
    unet = StyleUNet(
        8, 0, 32, 64, 4, cond_channels=4, in_size=32, final_size=8, num_cond_res=32, channel_base=256, channel_max=16
    )
    with pytest.raises(InputError, match=r"StyleUNet input must have shape \[B,4,32,32\]"):
        unet(torch.randn(1, 4, 16, 16), torch.randn(1, unet.num_ws, 32))
    sr = SuperresolutionHybrid8XDC(4, w_dim=8)
    with pytest.raises(InputError, match="rgb must have shape"):
        sr(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8), torch.randn(1, 1, 8))
    with pytest.raises(InputError, match="img_resolution a power of two >= 16, got 96"):
        SuperresolutionHybrid8XDC(4, img_resolution=96)
    block = SynthesisBlock(0, 4, 8, 4, 3)
    with pytest.raises(InputError, match="b4: ws has 3 rows, needs 2"):
        block(None, None, torch.randn(1, 3, 8))
