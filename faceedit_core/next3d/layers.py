"""StyleGAN2 layers with equalised learning rate: linear, conv, modulated conv, ToRGB, block.

Parameter and buffer names follow the released Next3D state dict (`weight`, `bias`,
`affine.*`, `noise_const`, `noise_strength`, `resample_filter`, `const`), so a released or
golden state dict loads with strict key matching. Stored weights are unit-variance; the
equalisation gains are applied at run time, as in StyleGAN2.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.next3d.ops import ACTIVATION_GAIN, bias_act, conv2d_resample, setup_filter, upsample2d
from faceedit_core.next3d.precision import reduced_dtype

NOISE_MODES = ("random", "const", "none")


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """`x [N,C]` scaled to unit mean square along dim 1."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def resolve_fused(fused_modconv: bool | str, training: bool) -> bool:
    """`"inference_only"` means fused in eval mode and unfused while training."""
    if fused_modconv == "inference_only":
        return not training
    return bool(fused_modconv)


class FullyConnectedLayer(nn.Module):
    """Equalised linear layer: `x [N,I] -> [N,O]`, weight gain lr/sqrt(I), bias gain lr."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype)
        if self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation, reuse_x=True)


class Conv2dLayer(nn.Module):
    """Equalised convolution `[N,I,H,W] -> [N,O,H/down,W/down]` with optional bias and activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        down: int = 1,
    ):
        super().__init__()
        self.activation, self.down = activation, down
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.register_buffer("resample_filter", setup_filter())
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w, self.resample_filter, down=self.down, padding=self.padding)
        return bias_act(x, b, act=self.activation, gain=ACTIVATION_GAIN[self.activation] * gain, reuse_x=True)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    """Style-modulated convolution.

    `x [N,I,H,W]`, `weight [O,I,k,k]`, `styles [N,I]`, `noise` broadcastable to the output
    `[N,O,H*up,W*up]`. Fused: one grouped convolution with per-sample weights (inference);
    unfused: scale activations instead (training, cheaper backward). Both give the same values
    up to rounding.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:  # keep fp16 activations in range
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N,O,I,k,k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N,O]
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(n, -1, 1, 1))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x
    if demodulate:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    w = w.reshape(-1, in_ch, kh, kw)
    if n > 1:  # batch 1 skips the reshapes: they would drop a channels-last layout (size-1 strides)
        x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample(x, w.to(x.dtype), resample_filter, up=up, padding=padding, groups=n, flip_weight=flip_weight)
    if n > 1:
        x = x.reshape(n, -1, *x.shape[2:])
    return x + noise.to(x.dtype) if noise is not None else x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling), noise, bias, lrelu: `[N,I,r/up,r/up] -> [N,O,r,r]`."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, resolution: int, conv_clamp: float | None, up: int = 1
    ):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.padding = 1
        self.register_buffer("resample_filter", setup_filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", fused_modconv: bool = True, gain: float = 1.0
    ) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise InputError(f"noise_mode {noise_mode!r} is not one of {NOISE_MODES}")
        styles = self.affine(w)
        noise = None
        if noise_mode == "random":
            noise = (
                torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
            )
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=(self.up == 1),
            fused_modconv=fused_modconv,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(
            x, self.bias.to(x.dtype), act="lrelu", gain=ACTIVATION_GAIN["lrelu"] * gain, clamp=clamp, reuse_x=True
        )


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation: features `[N,I,H,W]` -> image `[N,C,H,W]`."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp, reuse_x=True)


class SynthesisBlock(nn.Module):
    """One resolution of a StyleGAN2 'skip' generator.

    `forward(x [N,I,r/2,r/2] | None, img [N,C,r/2,r/2] | None, ws [N,num_conv+num_torgb,w_dim])
    -> (x [N,O,r,r], img [N,C,r,r] float32)`. The first block (`in_channels == 0`) starts from
    the learned `const`. Every block has a ToRGB ('skip' architecture). With `use_fp16` the block
    runs in `reduced_dtype(self.precision, device)`: float16 on CUDA and float32 elsewhere, as
    released ("auto"), or the type `precision` forces ("bf16": the CPU fast path); the RGB skip
    stays float32.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        use_fp16: bool = False,
        conv_clamp: float | None = None,
        fused_modconv_default: bool | str = True,
    ):
        super().__init__()
        self.in_channels, self.resolution, self.use_fp16 = in_channels, resolution, use_fp16
        self.fused_modconv_default = fused_modconv_default
        self.precision = "auto"  # of a use_fp16 block: see reduced_dtype
        self.register_buffer("resample_filter", setup_filter())
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str = "const",
        fused_modconv: bool | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if ws.shape[1] != self.num_conv + self.num_torgb:
            raise InputError(
                f"block b{self.resolution}: ws has {ws.shape[1]} rows, needs {self.num_conv + self.num_torgb}"
            )
        dtype = reduced_dtype(self.precision, ws.device) if self.use_fp16 else torch.float32
        fused = resolve_fused(self.fused_modconv_default if fused_modconv is None else fused_modconv, self.training)
        w_rows = ws.unbind(dim=1)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, w_rows[0], noise_mode=noise_mode, fused_modconv=fused)
        else:
            x = x.to(dtype)
            x = self.conv0(x, w_rows[0], noise_mode=noise_mode, fused_modconv=fused)
            x = self.conv1(x, w_rows[1], noise_mode=noise_mode, fused_modconv=fused)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, w_rows[self.num_conv], fused_modconv=fused).to(torch.float32)
        img = img + y if img is not None else y
        return x, img
