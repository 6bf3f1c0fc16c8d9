"""EG3D's 8x hybrid super-resolution (`SuperresolutionHybrid8XDC`), used unchanged by Next3D.

`(rgb [B,3,r,r], x [B,C,r,r], ws [B,L,512]) -> image [B,3,O,O]` (O = img_resolution, 512 in the
release): both inputs are resized to (O/4)^2 (bilinear, antialiased), then two StyleGAN2 blocks
(C -> 256 channels at (O/2)^2, 256 -> 128 at O^2) add detail; the RGB skip path carries
`rgb`. Only the last w row is used (3 times per block). With `sr_num_fp16_res > 0` the blocks
clamp at +-256 and run in float16 on CUDA, float32 elsewhere, as released (`precision` "auto");
"bf16" is the CPU fast path (precision.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.next3d.layers import SynthesisBlock
from faceedit_core.next3d.precision import PRECISIONS


class SuperresolutionHybrid8XDC(nn.Module):
    def __init__(
        self,
        channels: int,
        img_resolution: int = 512,
        sr_num_fp16_res: int = 4,
        sr_antialias: bool = True,
        fused_modconv_default: bool | str = "inference_only",
        w_dim: int = 512,
        block_channels: tuple[int, int] = (256, 128),
    ):
        super().__init__()
        if img_resolution < 16 or img_resolution & (img_resolution - 1):
            raise InputError(
                f"SuperresolutionHybrid8XDC needs img_resolution a power of two >= 16, got {img_resolution}"
            )
        self.input_resolution = img_resolution // 4
        use_fp16 = sr_num_fp16_res > 0
        clamp = 256 if use_fp16 else None
        self.sr_antialias = sr_antialias
        c0, c1 = block_channels  # the release: 256, 128 (test-sized configurations use fewer)
        self.block0 = SynthesisBlock(
            channels,
            c0,
            w_dim,
            img_resolution // 2,
            3,
            use_fp16=use_fp16,
            conv_clamp=clamp,
            fused_modconv_default=fused_modconv_default,
        )
        self.block1 = SynthesisBlock(
            c0,
            c1,
            w_dim,
            img_resolution,
            3,
            use_fp16=use_fp16,
            conv_clamp=clamp,
            fused_modconv_default=fused_modconv_default,
        )

    @property
    def precision(self) -> str:
        return self.block0.precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise InputError(f"super-resolution precision {value!r} is not one of {PRECISIONS}")
        self.block0.precision = self.block1.precision = value

    def resize_inputs(self, rgb: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both `[B,C,r,r]` -> `[B,C,O/4,O/4]` (unchanged when already that size; 128 in the release)."""
        if x.shape[-1] == self.input_resolution:
            return rgb, x
        size = (self.input_resolution, self.input_resolution)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=self.sr_antialias)
        rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=self.sr_antialias)
        return rgb, x

    def forward(
        self,
        rgb: torch.Tensor,
        x: torch.Tensor,
        ws: torch.Tensor,
        noise_mode: str = "none",
        fused_modconv: bool | str | None = None,
    ) -> torch.Tensor:
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise InputError(f"rgb must have shape [B,3,H,W], got {list(rgb.shape)}")
        if x.ndim != 4 or x.shape[0] != rgb.shape[0] or x.shape[-2:] != rgb.shape[-2:]:
            raise InputError(f"x must have shape [{rgb.shape[0]},C,{rgb.shape[2]},{rgb.shape[3]}], got {list(x.shape)}")
        ws = ws[:, -1:, :].repeat(1, 3, 1)
        rgb, x = self.resize_inputs(rgb, x)
        # channels-last: oneDNN's convolutions, above all the transposed ones of the upsampling
        # layers, run 1.5-3x faster in it on CPU (golden stage 07 still holds at 1e-5)
        x = x.contiguous(memory_format=torch.channels_last)
        x, rgb = self.block0(x, rgb, ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        x, rgb = self.block1(x, rgb, ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        return rgb
