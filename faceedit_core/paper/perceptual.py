"""A perceptual distance for GAN inversion: LPIPS over VGG16 features, from weights the user supplies.

`load_perceptual(vgg_file, lpips_file=None)` builds VGG16's convolutional part in torchvision's key
layout (`features.<index>.weight/bias`, the 13 convolutions at indices 0, 2, 5, 7, 10, 12, 14, 17,
19, 21, 24, 26, 28; ReLU after each, 2x2 max pooling after the 2nd, 4th, 7th, 10th; torchvision's
`vgg16-397923af.pth` or any state dict with those keys), reading the widths from the weights'
shapes (so a narrow test network loads through the same code). The file is read by
weights_file.read_state_dict: tensors only, no code from it runs.

LPIPS (Zhang et al. 2018), as its VGG variant computes it: images in [-1,1] are shifted and scaled
per channel (shift -0.030, -0.088, -0.188; scale 0.458, 0.448, 0.450), the features after the
ReLUs closing the five stages (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) are unit-normalised
along channels, their squared differences are weighted per channel by the learned 1x1 linear
layers (`lin<k>.model.1.weight` [1,C_k,1,1] from the LPIPS release's vgg.pth, when given; else
every channel weighs 1, LPIPS's uncalibrated "baseline"), averaged over the pixels and summed over
the five stages. Images larger than 256 px are area-downsampled to 256 first, as the StyleGAN2 and
EG3D-lineage projectors do before their VGG loss.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.paper.weights_file import read_state_dict

CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
POOL_AFTER = (2, 7, 14, 21)  # feature indices of the convolutions followed by max pooling (after their ReLU)
TAP_AFTER = (2, 7, 14, 21, 28)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
MAX_SIZE = 256


class Perceptual(nn.Module):
    """Frozen LPIPS-VGG16: forward(a [B,3,H,W], b [B,3,H,W] in [-1,1]) -> distance [B]."""

    def __init__(self, convs: list[nn.Conv2d], lins: list[torch.Tensor] | None, source: str = ""):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.calibrated = lins is not None
        widths = [convs[CONV_INDICES.index(i)].out_channels for i in TAP_AFTER]
        lins = lins if lins is not None else [torch.ones(1, c, 1, 1) for c in widths]
        for k, w in enumerate(lins):
            self.register_buffer(f"lin{k}", w.float().reshape(1, -1, 1, 1))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.source = source
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "Perceptual":
        return super().train(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """images [B,3,H,W] in [-1,1] -> the five stage outputs."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"images must be [B,3,H,W], got {tuple(x.shape)}")
        if x.shape[-1] > MAX_SIZE or x.shape[-2] > MAX_SIZE:
            x = F.interpolate(x, size=(MAX_SIZE, MAX_SIZE), mode="area")
        x = (x.float() - self.shift) / self.scale
        taps = []
        for index, conv in zip(CONV_INDICES, self.convs):
            x = F.relu(conv(x))
            if index in TAP_AFTER:
                taps.append(x)
            if index in POOL_AFTER:
                x = F.max_pool2d(x, 2, 2)
        return taps

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:
            raise InputError(f"images {tuple(a.shape)} and {tuple(b.shape)} must have one shape")
        total = 0
        for k, (fa, fb) in enumerate(zip(self.features(a), self.features(b))):
            fa = fa / (fa.square().sum(1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + ((fa - fb).square() * getattr(self, f"lin{k}")).sum(1).mean((1, 2))
        return total


def load_perceptual(
    vgg_file: str | os.PathLike, lpips_file: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> Perceptual:
    """VGG16 weights (torchvision layout) and, optionally, LPIPS's linear layers -> Perceptual."""
    vgg_file = Path(vgg_file).expanduser()
    if not vgg_file.is_file():
        raise InputError(f"perceptual network weights {vgg_file} do not exist (VGG16 in torchvision's layout)")
    sd = read_state_dict(vgg_file)
    sd = {k.removeprefix("net."): v for k, v in sd.items()}
    convs, width = [], 3
    for i in CONV_INDICES:
        w, b = sd.get(f"features.{i}.weight"), sd.get(f"features.{i}.bias")
        if w is None or b is None or w.ndim != 4 or w.shape[1:] != (width, 3, 3) or b.shape != (w.shape[0],):
            raise InputError(
                f"{vgg_file.name}: not VGG16 weights in torchvision's layout (features.{i}.weight "
                f"[C,{width},3,3] and features.{i}.bias [C] expected, got "
                f"{None if w is None else list(w.shape)})"
            )
        conv = nn.Conv2d(width, w.shape[0], 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(b)
        convs.append(conv)
        width = w.shape[0]
    lins = None
    if lpips_file is not None:
        lpips_file = Path(lpips_file).expanduser()
        if not lpips_file.is_file():
            raise InputError(f"LPIPS linear-layer weights {lpips_file} do not exist")
        lsd = read_state_dict(lpips_file)
        lins = []
        for k, i in enumerate(TAP_AFTER):
            c = convs[CONV_INDICES.index(i)].out_channels
            w = next((v for key, v in lsd.items() if re.fullmatch(rf"(.*\.)?lin{k}(\.model\.1)?\.weight", key)), None)
            if w is None or w.numel() != c or (w < 0).any():
                raise InputError(
                    f"{lpips_file.name}: LPIPS weights need lin{k}.model.1.weight with {c} non-negative values"
                )
            lins.append(w)
    return Perceptual(convs, lins, source=str(vgg_file)).to(device)


def tiny_perceptual_files(directory: str | os.PathLike, seed: int = 0) -> tuple[Path, Path]:
    """A narrow random VGG16 (widths 4-16) in torchvision's key layout and LPIPS linear layers, for tests."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    widths = (4, 4, 8, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16)
    sd, c_in = {}, 3
    for i, c in zip(CONV_INDICES, widths):
        sd[f"features.{i}.weight"] = torch.randn(c, c_in, 3, 3, generator=g) * (2 / (9 * c_in)) ** 0.5
        sd[f"features.{i}.bias"] = torch.zeros(c)
        c_in = c
    lins = {
        f"lin{k}.model.1.weight": torch.rand(1, widths[CONV_INDICES.index(i)], 1, 1, generator=g)
        for k, i in enumerate(TAP_AFTER)
    }
    vgg, lp = directory / "vgg16_tiny.pth", directory / "lpips_vgg_tiny.pth"
    torch.save(sd, vgg)
    torch.save(lins, lp)
    return vgg, lp
