"""StyleUNet: a StyleGAN2 synthesis network whose coarse blocks are fed by an image encoder.

Next3D uses two: `mouth_backbone` (32-ch 64^2 mouth crop -> 32-ch 256^2 mouth plane; encoder
at 64..8, injections before b8..b64) and `neural_blending` (32-ch 256^2 front plane -> 32-ch
256^2; encoder at 256..64, injections before b64..b256).

Wiring (state-dict names as the release): `encoder.{i}` (fromrgb 1x1 without bias, conv1 3x3
lrelu, conv2 3x3 lrelu with 2x down; the image is FIR-downsampled before every block but the
first), `fusion.{j}` (3x3 linear convs; j=0 takes the coarsest encoder feature, j>0 the
concatenation of the running features and encoder feature j), and blocks `b4..b{R}` of which
only `b{2*final_size}..b{R}` run. Unused modules (b4 for the mouth, b4..b32 for blending, the
last fusion) are kept so the released state dict loads strictly.
"""

from __future__ import annotations

import torch
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.next3d.layers import Conv2dLayer
from faceedit_core.next3d.ops import downsample2d, setup_filter
from faceedit_core.next3d.stylegan2 import StyleGAN2Backbone, SynthesisNetwork, block_ws


class EncoderResBlock(nn.Module):
    """`(img [N,Cc,r,r], skip [N,I,r,r] | None) -> (img, feat [N,O,r/2,r/2])`; img is first
    FIR-downsampled 2x when `downsample`."""

    def __init__(self, img_channels: int, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, bias=False)
        self.conv1 = Conv2dLayer(in_channels, in_channels, 3, activation="lrelu")
        self.conv2 = Conv2dLayer(in_channels, out_channels, 3, activation="lrelu", down=2)
        self.register_buffer("resample_filter", setup_filter())

    def forward(self, img: torch.Tensor, skip: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.downsample:
            img = downsample2d(img, self.resample_filter)
        feat = self.fromrgb(img)
        if skip is not None:
            feat = feat + skip
        return img, self.conv2(self.conv1(feat))


class StyleUNetSynthesis(SynthesisNetwork):
    """`(x_in [B,cond_channels,in_size,in_size], ws [B,num_ws,w_dim]) -> img [B,img_channels,R,R]`."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        cond_channels: int,
        in_size: int,
        final_size: int,
        num_cond_res: int,
        **block_kwargs,
    ):
        super().__init__(w_dim, img_resolution, img_channels, **block_kwargs)
        if not (4 <= final_size < in_size <= img_resolution):
            raise InputError(
                f"StyleUNet needs 4 <= final_size ({final_size}) < in_size ({in_size}) "
                f"<= img_resolution ({img_resolution})"
            )
        self.cond_channels, self.in_size, self.final_size, self.num_cond_res = (
            cond_channels,
            in_size,
            final_size,
            num_cond_res,
        )
        channels = self.channels
        self.encoder_res = [in_size >> i for i in range((in_size // final_size).bit_length())]
        self.encoder = nn.ModuleList(
            EncoderResBlock(cond_channels, channels[r], channels[r // 2], downsample=(r < in_size))
            for r in self.encoder_res[:-1]
        )
        self.fusion = nn.ModuleList(
            Conv2dLayer(channels[r] * (2 if r > final_size else 1), channels[r], 3) for r in reversed(self.encoder_res)
        )

    def forward(
        self, x_in: torch.Tensor, ws: torch.Tensor, noise_mode: str = "const", fused_modconv: bool | str | None = None
    ) -> torch.Tensor:
        expected = (self.cond_channels, self.in_size, self.in_size)
        if x_in.ndim != 4 or tuple(x_in.shape[1:]) != expected:
            raise InputError(
                f"StyleUNet input must have shape [B,{','.join(map(str, expected))}], got {list(x_in.shape)}"
            )
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise InputError(f"ws must have shape [B,{self.num_ws},{self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        feats, feat = [], None
        for enc in self.encoder:
            x_in, feat = enc(x_in, feat)
            feats.append(feat)
        feats.reverse()  # coarse to fine
        start = self.block_resolutions.index(2 * self.final_size)
        blocks = self.blocks()
        x = img = None
        for j, (block, cur_ws) in enumerate(zip(blocks[start:], block_ws(ws, blocks)[start:])):
            if self.final_size * 2**j < self.num_cond_res:
                x = self.fusion[0](feats[0]) if j == 0 else self.fusion[j](torch.cat([x, feats[j]], dim=1))
            x, img = block(x, img, cur_ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        return img


class StyleUNet(StyleGAN2Backbone):
    """Conditional backbone with the release's `mapping.*` (unused in Next3D's forward pass:
    the generator feeds ws from the main mapping) and `synthesis.*` (a StyleUNetSynthesis, which
    takes `cond_channels`, `in_size`, `final_size` and `num_cond_res` by keyword)."""

    synthesis_class = StyleUNetSynthesis

    def forward(self, x_in: torch.Tensor, ws: torch.Tensor, **synthesis_kwargs) -> torch.Tensor:
        return self.synthesis(x_in, ws, **synthesis_kwargs)
