"""StyleGAN2 'skip' generator: Next3D's UV neural texture (`texture_backbone`, 32 channels) and
static tri-plane (`backbone`, 96 channels), both at 256^2 from 14 ws.

Block `b{r}` uses ws rows `[k, k+num_conv+num_torgb)` where k counts the convs before it: rows
0,1 for b4, then 2k-5, 2k-4, 2k-3 for b(2^k); consecutive blocks share one row (torgb / conv0).
"""

from __future__ import annotations

import torch
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.next3d.layers import SynthesisBlock
from faceedit_core.next3d.mapping import MappingNetwork


def channels_per_resolution(resolutions: list[int], channel_base: int, channel_max: int) -> dict[int, int]:
    """StyleGAN2's channel schedule: `min(channel_base // r, channel_max)` for each resolution r."""
    return {r: min(channel_base // r, channel_max) for r in resolutions}


def block_ws(ws: torch.Tensor, blocks: list[SynthesisBlock]) -> list[torch.Tensor]:
    """Split `ws [B,L,w_dim]` into each block's overlapping window `[B,num_conv+num_torgb,w_dim]`."""
    out, idx = [], 0
    for block in blocks:
        out.append(ws.narrow(1, idx, block.num_conv + block.num_torgb))
        idx += block.num_conv
    return out


class SynthesisNetwork(nn.Module):
    """`ws [B,num_ws,w_dim] -> img [B,img_channels,R,R]` for R = img_resolution (blocks b4..bR)."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        fused_modconv_default: bool | str = "inference_only",
    ):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise InputError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        log2 = img_resolution.bit_length() - 1
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        self.channels = channels = channels_per_resolution(self.block_resolutions, channel_base, channel_max)
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim,
                res,
                img_channels,
                use_fp16=(res >= fp16_resolution),
                conv_clamp=conv_clamp,
                fused_modconv_default=fused_modconv_default,
            )
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(
        self, ws: torch.Tensor, noise_mode: str = "const", fused_modconv: bool | str | None = None
    ) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise InputError(f"ws must have shape [B,{self.num_ws},{self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        x = img = None
        for block, cur_ws in zip(self.blocks(), block_ws(ws, self.blocks())):
            x, img = block(x, img, cur_ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        return img


class StyleGAN2Backbone(nn.Module):
    """Mapping + synthesis under the state-dict names `mapping.*` and `synthesis.*`.

    `mapping_ws` is how many ws the mapping emits (Next3D's `backbone` emits 28: 14 for itself,
    14 for the texture); `num_ws` is what the synthesis consumes. The generator calls the two
    parts separately (one mapping drives several synthesis networks). A subclass swaps the
    synthesis network through `synthesis_class` (StyleUNet), keeping the names and the mapping.
    """

    synthesis_class = SynthesisNetwork

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_ws: int | None = None,
        mapping_layers: int = 2,
        **synthesis_kwargs,
    ):
        super().__init__()
        self.synthesis = self.synthesis_class(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, mapping_ws or self.num_ws, num_layers=mapping_layers)
