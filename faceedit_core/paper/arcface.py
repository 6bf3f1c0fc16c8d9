"""ArcFace identity networks (paper Eq. 10) in the two checkpoint layouts users have, and the
identity loss L_id = 1 - cos(R(I_edit), R(I_init)).

Layouts (module and key names follow the checkpoints; the code is ours, written from them):
  "ir_se"   IR-SE of the TreB1eN/InsightFace_Pytorch lineage (pSp/e4e/StyleCLIP's model_ir_se50.pth):
            input_layer = [Conv3x3(3,64), BN, PReLU]; body.N = bottleneck units, each
            shortcut_layer (MaxPool(1, stride) when channels stay, else [Conv1x1 stride, BN]) +
            res_layer = [BN, Conv3x3, PReLU, Conv3x3 stride, BN, SE(fc1, fc2; reduction 16)];
            the first unit of every stage has stride 2; output_layer = [BN2d, Dropout, Flatten,
            Linear(C*7*7, 512), BN1d]; output L2-normalised. "ir" is the same without SE.
            IR-SE50: stages of [3, 4, 14, 3] units, widths 64, 128, 256, 512.
  "iresnet" insightface arcface_torch iresnet50/100 ([3, 4, 14, 3] / [3, 13, 30, 3] IBasicBlocks:
            bn1, conv1, bn2, prelu, conv2 (stride), bn3, downsample = [Conv1x1 stride, BN]);
            conv1, bn1, prelu stem; bn2, Dropout, Flatten, fc, features (BN1d); raw output.
Stage counts and widths are read from the file, so any depth of either layout loads. Both take
112x112 RGB in [-1,1]. Face crop (StyleCLIP's IDLoss on FFHQ-aligned images, the paper's
lineage): average-pool to 256x256, crop rows 35:223 and columns 32:220, average-pool to 112x112.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.paper.weights_file import find_weights, read_state_dict

CROP_POOL = 256
CROP_ROWS, CROP_COLS = (35, 223), (32, 220)
INPUT_SIZE = 112
KNOWN_DEPTHS = {
    "ir_se50": ("ir_se", (3, 4, 14, 3)),
    "ir50": ("ir", (3, 4, 14, 3)),
    "ir_se100": ("ir_se", (3, 13, 30, 3)),
    "ir_se152": ("ir_se", (3, 8, 36, 3)),
    "iresnet50": ("iresnet", (3, 4, 14, 3)),
    "iresnet100": ("iresnet", (3, 13, 30, 3)),
}
LAYOUT_KEYS = {
    "ir_se": "input_layer.*, body.N.{shortcut_layer,res_layer}.*, output_layer.* (model_ir_se50.pth)",
    "ir": "input_layer.*, body.N.{shortcut_layer,res_layer}.*, output_layer.* without SE",
    "iresnet": "conv1, bn1, prelu, layer1-4.N.{bn1,conv1,bn2,prelu,conv2,bn3,downsample}, bn2, fc, features",
}


@dataclass(frozen=True)
class ArcFaceConfig:
    layout: str  # "ir_se", "ir" or "iresnet"
    blocks: tuple[int, ...] = (3, 4, 14, 3)  # units per stage (the first of each has stride 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)  # channels per stage
    stem: int = 64  # channels of the input layer
    embed_dim: int = 512


# ---------------------------------------------------------------------------------- IR-SE
class SEModule(nn.Module):
    """Squeeze-excitation with 1x1 convolutions fc1 (C -> C/r) and fc2 (C/r -> C), no biases."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BottleneckIR(nn.Module):
    """One body unit: shortcut_layer(x) + res_layer(x)."""

    def __init__(self, c_in: int, c_out: int, stride: int, se: bool):
        super().__init__()
        self.shortcut_layer = (
            nn.MaxPool2d(1, stride)
            if c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )
        res = [
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.res_layer = nn.Sequential(*res, *([SEModule(c_out)] if se else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut_layer(x) + self.res_layer(x)


class IRSEBackbone(nn.Module):
    """images [B,3,112,112] in [-1,1] -> embeddings [B,E] (TreB1eN key layout)."""

    def __init__(self, cfg: ArcFaceConfig):
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, cfg.stem, 3, 1, 1, bias=False), nn.BatchNorm2d(cfg.stem), nn.PReLU(cfg.stem)
        )
        units, c_in = [], cfg.stem
        for n, width in zip(cfg.blocks, cfg.widths):
            for i in range(n):
                units.append(BottleneckIR(c_in, width, 2 if i == 0 else 1, cfg.layout == "ir_se"))
                c_in = width
        self.body = nn.Sequential(*units)
        side = INPUT_SIZE // 2 ** len(cfg.blocks)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Dropout(),
            nn.Flatten(),
            nn.Linear(c_in * side * side, cfg.embed_dim),
            nn.BatchNorm1d(cfg.embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


# -------------------------------------------------------------------------------- iresnet
class IBasicBlock(nn.Module):
    """bn1 -> conv1 -> bn2 -> prelu -> conv2 (stride) -> bn3, plus the (downsampled) input."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.prelu = nn.PReLU(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNetBackbone(nn.Module):
    """images [B,3,112,112] in [-1,1] -> embeddings [B,E] (insightface arcface_torch key layout)."""

    def __init__(self, cfg: ArcFaceConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(3, cfg.stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cfg.stem)
        self.prelu = nn.PReLU(cfg.stem)
        c_in = cfg.stem
        for k, (n, width) in enumerate(zip(cfg.blocks, cfg.widths), start=1):
            blocks = [IBasicBlock(c_in if i == 0 else width, width, 2 if i == 0 else 1) for i in range(n)]
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
            c_in = width
        self.n_stages = len(cfg.blocks)
        self.bn2 = nn.BatchNorm2d(c_in)
        side = INPUT_SIZE // 2 ** len(cfg.blocks)
        self.fc = nn.Linear(c_in * side * side, cfg.embed_dim)
        self.features = nn.BatchNorm1d(cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        for k in range(1, self.n_stages + 1):
            x = getattr(self, f"layer{k}")(x)
        return self.features(self.fc(torch.flatten(self.bn2(x), 1)))


def build_backbone(cfg: ArcFaceConfig) -> nn.Module:
    if cfg.layout not in LAYOUT_KEYS:
        raise InputError(f"ArcFace layout must be one of {sorted(LAYOUT_KEYS)}, got {cfg.layout!r}")
    return IResNetBackbone(cfg) if cfg.layout == "iresnet" else IRSEBackbone(cfg)


# ------------------------------------------------------------------------------- identity
class IdentityNet(nn.Module):
    """A frozen ArcFace backbone with the face crop; images [B,3,H,W] RGB in [-1,1]."""

    def __init__(self, backbone: nn.Module, cfg: ArcFaceConfig, source: str = ""):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.config = cfg
        self.layout = cfg.layout
        self.source = source

    def train(self, mode: bool = True) -> "IdentityNet":
        return super().train(False)  # BN statistics and dropout stay in inference mode

    @staticmethod
    def crop(images: torch.Tensor) -> torch.Tensor:
        """images [B,3,H,W] -> face crop [B,3,112,112] (pool to 256, crop [35:223, 32:220], pool to 112)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"images must be [B,3,H,W], got {tuple(images.shape)}")
        x = images if images.shape[-2:] == (CROP_POOL, CROP_POOL) else F.adaptive_avg_pool2d(images, CROP_POOL)
        x = x[:, :, CROP_ROWS[0] : CROP_ROWS[1], CROP_COLS[0] : CROP_COLS[1]]
        return F.adaptive_avg_pool2d(x, INPUT_SIZE)

    def embed(self, images: torch.Tensor, crop: bool = True) -> torch.Tensor:
        """images [B,3,H,W] in [-1,1] -> unit-norm identity embeddings [B,E] (E = 512).

        crop=False takes images that are already 112x112 ArcFace-aligned faces.
        """
        x = self.crop(images.float()) if crop else images.float()
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise InputError(f"uncropped images must be 112x112 faces, got {tuple(x.shape[-2:])}")
        return F.normalize(self.backbone(x), dim=-1)

    def similarity(self, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity [B] of the identities of two image batches [B,3,H,W]."""
        return (self.embed(images_a) * self.embed(images_b)).sum(-1)


def identity_loss(net: IdentityNet, images_edit: torch.Tensor, images_init: torch.Tensor) -> torch.Tensor:
    """L_id = mean over the batch of 1 - cos(R(edit), R(init)); the initial images are a fixed target."""
    with torch.no_grad():
        target = net.embed(images_init)
    return (1 - (net.embed(images_edit) * target).sum(-1)).mean()


# ---------------------------------------------------------------------------------- files
def infer_arcface_config(sd: dict[str, torch.Tensor], file: Path | str = "weights") -> ArcFaceConfig:
    """The layout, stage counts and widths of an ArcFace state dict, from its key names and shapes."""
    if "input_layer.0.weight" in sd:
        units = sorted({int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.", k))})
        depths = [sd[f"body.{i}.res_layer.1.weight"].shape[0] for i in units]
        blocks, widths = [], []
        for d in depths:  # a stage is a run of units of one width
            if widths and widths[-1] == d:
                blocks[-1] += 1
            else:
                blocks.append(1)
                widths.append(int(d))
        layout = "ir_se" if "body.0.res_layer.5.fc1.weight" in sd else "ir"
        embed = sd["output_layer.3.weight"].shape[0] if "output_layer.3.weight" in sd else 512
        stem = sd["input_layer.0.weight"].shape[0]
    elif "conv1.weight" in sd and "layer1.0.conv1.weight" in sd:
        layout, blocks, widths = "iresnet", [], []
        for k in range(1, 10):
            ids = {int(m.group(1)) for key in sd if (m := re.match(rf"layer{k}\.(\d+)\.", key))}
            if not ids:
                break
            blocks.append(len(ids))
            widths.append(int(sd[f"layer{k}.0.conv1.weight"].shape[0]))
        embed = sd["fc.weight"].shape[0] if "fc.weight" in sd else 512
        stem = sd["conv1.weight"].shape[0]
    else:
        raise InputError(
            f"{file}: not an ArcFace checkpoint in a known layout; expected the IR-SE50 keys "
            f"{LAYOUT_KEYS['ir_se']} or the insightface iresnet keys {LAYOUT_KEYS['iresnet']}; "
            f"found keys {sorted(sd)[:5]}"
        )
    return ArcFaceConfig(layout, tuple(blocks), tuple(widths), int(stem), int(embed))


def load_arcface(path: str | os.PathLike, layout: str | None = None, device: str | torch.device = "cpu") -> IdentityNet:
    """A frozen IdentityNet from a user checkpoint (a file, or a models folder holding arcface/<file>).

    layout: None (from the file), a layout ("ir_se", "ir", "iresnet") or a named depth
    ("ir_se50", "iresnet50", "iresnet100"); a file of another layout or depth is refused.
    """
    file = find_weights(
        path,
        "arcface",
        "model_ir_se50.pth",
        "ArcFace weights (model_ir_se50.pth from pSp/StyleCLIP, or insightface iresnet50/100 backbone.pth)",
    )
    sd = read_state_dict(file)
    cfg = infer_arcface_config(sd, file)
    if layout is not None:
        want_layout, want_blocks = KNOWN_DEPTHS.get(layout, (layout, None))
        if want_layout not in LAYOUT_KEYS:
            raise InputError(f"layout must be one of {sorted(LAYOUT_KEYS) + sorted(KNOWN_DEPTHS)}, got {layout!r}")
        if cfg.layout != want_layout or (want_blocks is not None and cfg.blocks != want_blocks):
            raise InputError(
                f"{file}: expected an ArcFace '{layout}' checkpoint (keys {LAYOUT_KEYS[want_layout]}"
                + (f", stages {list(want_blocks)}" if want_blocks else "")
                + f"), found layout '{cfg.layout}' with stages {list(cfg.blocks)}"
            )
    net = build_backbone(cfg)
    expected = net.state_dict()
    for k in expected:  # checkpoints from torch < 0.4.1 have no BN step counters; they are unused here
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = expected[k]
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(
        f"{k} {tuple(sd[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in set(sd) & set(expected)
        if sd[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong:
        raise InputError(
            f"{file}: does not fit the ArcFace '{cfg.layout}' layout (keys {LAYOUT_KEYS[cfg.layout]}; "
            f"stages {list(cfg.blocks)}, widths {list(cfg.widths)}): missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}, wrong shape {wrong[:3]}"
        )
    net.load_state_dict({k: sd[k] for k in expected})
    return IdentityNet(net, cfg, str(file)).to(device)


TINY_ARCFACE = {
    "blocks": (1, 2, 1, 1),
    "widths": (16, 32, 48, 64),
    "stem": 16,
    "embed_dim": 512,
}  # SE needs >= 16 channels


def tiny_arcface_file(directory: str | os.PathLike, layout: str = "ir_se", seed: int = 0) -> Path:
    """Write a random-weight ArcFace with few, narrow blocks in `layout`'s key layout; returns its path."""
    torch.manual_seed(seed)
    net = build_backbone(ArcFaceConfig(layout, **TINY_ARCFACE))
    with torch.no_grad():  # non-trivial BN statistics, as a trained file has
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"tiny_arcface_{layout}.pth"
    torch.save(net.state_dict(), path)
    return path
