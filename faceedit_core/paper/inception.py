"""Inception-v3 pool features for FID and KID, from weights the user supplies; and the two distances.

`load_inception(path)` reads a state dict in torchvision's Inception3 key layout (through
weights_file.read_state_dict: tensors only, no code runs) and builds torchvision's network for it
(its classes; the weights come from the file only, nothing is downloaded):
- the FID network (1008 classes: the TensorFlow 2015-12-05 graph as ported for FID, e.g.
  pytorch-fid's `pt_inception-2015-12-05-*.pth`): its Mixed_5b-5d, 6b-6e and 7b average pools
  exclude the padding from the mean, and Mixed_7c's pool branch takes a 3x3 max instead, as the
  TensorFlow graph computes them; images in [-1,1] go in as they are;
- torchvision's ImageNet network (1000 classes, `inception_v3_google-*.pth`): ImageNet's mean/std.
Either way images are resized (bilinear) to 299 x 299 and the 2048 values after the global
average pool are the features. FID scores are comparable with published ones only with the FID
network.

`fid(f1, f2)` (Frechet distance of Gaussians fitted to the features, float64) and
`kid(f1, f2)` (unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3, averaged over
random subsets: 100 subsets of at most 1,000, the defaults of the KID paper's and StyleGAN's code).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.paper.weights_file import read_state_dict

FEATURES = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _fid_blocks():
    """torchvision's Inception blocks with the TensorFlow graph's pooling (same parameters)."""
    from torchvision.models import inception as tv

    class FIDInceptionA(tv.InceptionA):
        def _forward(self, x):
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            pool = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
            return [self.branch1x1(x), b5, b3, pool]

    class FIDInceptionC(tv.InceptionC):
        def _forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = self.branch7x7dbl_1(x)
            for name in ("branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"):
                d = getattr(self, name)(d)
            pool = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
            return [self.branch1x1(x), b7, d, pool]

    class FIDInceptionE(tv.InceptionE):
        def __init__(self, in_channels: int, pool: str):
            super().__init__(in_channels)
            self.pool_kind = pool

        def _forward(self, x):
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
            if self.pool_kind == "max":
                pooled = F.max_pool2d(x, 3, stride=1, padding=1)
            else:
                pooled = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
            return [self.branch1x1(x), b3, d, self.branch_pool(pooled)]

    return FIDInceptionA, FIDInceptionC, FIDInceptionE


class InceptionFeatures(nn.Module):
    """Frozen Inception-v3: images [B,3,H,W] in [-1,1] -> pool features [B,2048]."""

    def __init__(self, net: nn.Module, fid_variant: bool, size: int = 299, source: str = ""):
        super().__init__()
        self.net, self.fid_variant, self.size, self.source = net.eval().requires_grad_(False), fid_variant, size, source
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "InceptionFeatures":
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"images must be [B,3,H,W], got {tuple(images.shape)}")
        x = F.interpolate(images.float(), size=(self.size, self.size), mode="bilinear", align_corners=False)
        if not self.fid_variant:
            x = ((x + 1) / 2 - self.mean) / self.std
        n = self.net
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3"):
            x = getattr(n, name)(x)
        x = n.maxpool2(x)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = getattr(n, name)(x)
        for name in ("Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(n, name)(x)
        return torch.flatten(n.avgpool(x), 1).double()


def build_inception(fid_variant: bool) -> nn.Module:
    """torchvision's Inception3 (no weights initialised: they come from a file), FID pools when asked."""
    from torchvision.models.inception import Inception3

    net = Inception3(num_classes=1008 if fid_variant else 1000, aux_logits=False, init_weights=False)
    if fid_variant:
        A, C, E = _fid_blocks()
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
        net.Mixed_6b, net.Mixed_6c = C(768, 128), C(768, 160)
        net.Mixed_6d, net.Mixed_6e = C(768, 160), C(768, 192)
        net.Mixed_7b, net.Mixed_7c = E(1280, "avg"), E(2048, "max")
    return net


def load_inception(path: str | os.PathLike, device: str | torch.device = "cpu", size: int = 299) -> InceptionFeatures:
    """Inception-v3 weights in torchvision's layout -> InceptionFeatures (FID network when fc has 1008 rows)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(
            f"Inception weights {path} do not exist (pytorch-fid's pt_inception-2015-12-05-*.pth, "
            "or torchvision's inception_v3_google-*.pth)"
        )
    sd = {k: v for k, v in read_state_dict(path).items() if not k.startswith("AuxLogits.")}
    fc = sd.get("fc.weight")
    if fc is None or fc.shape[0] not in (1000, 1008) or "Conv2d_1a_3x3.conv.weight" not in sd:
        raise InputError(
            f"{path.name}: not Inception-v3 weights in torchvision's layout (Conv2d_1a_3x3.conv.weight and "
            f"fc.weight with 1008 (FID) or 1000 (ImageNet) rows expected)"
        )
    net = build_inception(fc.shape[0] == 1008)
    expected = net.state_dict()
    for k in expected:
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = expected[k]
    missing = sorted(set(expected) - set(sd))
    wrong = sorted(k for k in set(sd) & set(expected) if sd[k].shape != expected[k].shape)
    unexpected = sorted(set(sd) - set(expected))
    if missing or wrong or unexpected:
        raise InputError(
            f"{path.name}: does not fit Inception-v3: missing {missing[:4]}, wrong shape {wrong[:4]}, "
            f"unexpected {unexpected[:4]}"
        )
    net.load_state_dict(sd)
    return InceptionFeatures(net, fc.shape[0] == 1008, size, str(path)).to(device)


def random_inception_file(path: str | os.PathLike, fid_variant: bool = True, seed: int = 0) -> Path:
    """A random-weight Inception-v3 state dict in torchvision's layout (tests)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_inception(fid_variant)
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name.endswith("conv.weight"):
                    p.normal_(0, (2 / p[0].numel()) ** 0.5)
                elif name == "fc.weight":
                    p.normal_(0, 0.01)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


# ----------------------------------------------------------------------------- distances
def fid(f1: torch.Tensor | np.ndarray, f2: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to features f1 [N1,D] and f2 [N2,D] (N >= 2 each):
    |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2).

    The last trace is the nuclear norm of A^T B (S1 = A A^T, S2 = B B^T, A and B the centred
    features / sqrt(N - 1)), exact for any rank; it is computed in the smaller of the feature
    space and the sample space."""
    a, b = _f64(f1), _f64(f2)
    if a.shape[0] < 2 or b.shape[0] < 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"FID needs two feature sets of >= 2 rows and one width, got {a.shape} and {b.shape}")
    mu1, mu2 = a.mean(0), b.mean(0)
    A = (a - mu1) / np.sqrt(a.shape[0] - 1)
    B = (b - mu2) / np.sqrt(b.shape[0] - 1)
    if min(a.shape[0], b.shape[0]) < a.shape[1]:
        cross = np.linalg.svd(A @ B.T, compute_uv=False).sum()  # (A^T B) in the sample space: [N1,N2]
    else:
        s1, s2 = A.T @ A, B.T @ B
        w, v = np.linalg.eigh(s1)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)).sum()
    trace = (A * A).sum() + (B * B).sum()
    return float(((mu1 - mu2) ** 2).sum() + trace - 2 * cross)


def kid(
    f1: torch.Tensor | np.ndarray,
    f2: torch.Tensor | np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance -> (mean, std over subsets): unbiased MMD^2 of subsets of
    m = min(N1, N2, max_subset_size) rows drawn without replacement, kernel (x.y / d + 1)^3."""
    a, b = _f64(f1), _f64(f2)
    m = min(a.shape[0], b.shape[0], max_subset_size)
    if m < 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"KID needs two feature sets of >= 2 rows and one width, got {a.shape} and {b.shape}")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        same = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(same - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def _f64(f) -> np.ndarray:
    arr = f.detach().cpu().double().numpy() if isinstance(f, torch.Tensor) else np.asarray(f, np.float64)
    if arr.ndim != 2 or not np.isfinite(arr).all():
        raise InputError(f"features must be a finite [N,D] array, got shape {arr.shape}")
    return arr
