"""Low-level StyleGAN2 operations in plain PyTorch (CPU and CUDA alike).

These are the reference formulations of StyleGAN2-ADA's `bias_act`, `upfirdn2d` and
`conv2d_resample`, written so the order of floating-point operations is the one the released
Next3D weights were produced with: the golden vectors match bit for bit on CPU in float32.

Conventions: images are NCHW; a FIR filter is a 2-D float32 tensor `[k,k]` prepared by
`setup_filter` (normalised to unit DC gain); padding is `(x0, x1, y0, y1)`, negative crops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from faceedit_core.errors import InputError

LRELU_SLOPE = 0.2
ACTIVATION_GAIN = {"linear": 1.0, "lrelu": math.sqrt(2.0)}


def setup_filter(taps: list[float] | tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """Outer product of 1-D `taps`, normalised to sum 1 -> `[k,k]` float32."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
    reuse_x: bool = False,
) -> torch.Tensor:
    """Add bias `b [C]` along dim 1, apply `act`, scale by `gain`, clamp to +-`clamp`.

    `x [N,C,...]`; `gain` defaults to the activation's natural gain (sqrt 2 for lrelu).
    `reuse_x`: the caller hands over a fresh tensor (a layer's own convolution output) that
    may be overwritten outside autograd, so even the bias is added in place.
    """
    if act not in ACTIVATION_GAIN:
        raise InputError(f"activation {act!r} is not one of {sorted(ACTIVATION_GAIN)}")
    # Outside autograd the steps run in place on a fresh tensor (same values, a third of the
    # memory traffic and no new allocation); under autograd they must not overwrite saved results.
    inplace = not (torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad)))
    if b is None:
        x = x.clone() if (act != "linear" or gain not in (None, 1) or clamp is not None) and not reuse_x else x
    else:
        b = b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
        x = x.add_(b) if inplace and reuse_x else x + b
    if act == "lrelu":
        x = F.leaky_relu_(x, LRELU_SLOPE) if inplace else F.leaky_relu(x, LRELU_SLOPE)
    gain = float(ACTIVATION_GAIN[act] if gain is None else gain)
    if gain != 1:
        x = x.mul_(gain) if inplace else x * gain
    if clamp is not None:
        x = x.clamp_(-float(clamp), float(clamp)) if inplace else x.clamp(-float(clamp), float(clamp))
    return x


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative crops), FIR-filter with `f [k,k]`, decimate.

    `x [N,C,H,W]` -> `[N,C,H',W']`. The filter is applied as a convolution (flipped kernel),
    scaled by `gain` (so `gain = up**2` keeps the DC level after zero insertion).
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    kernel = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    if px0 == px1 >= 0 and py0 == py1 >= 0:  # the convolution pads by itself (no padded copy)
        x = F.conv2d(x, kernel, padding=[py0, px0], groups=c)
    else:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
        x = F.conv2d(x, kernel, groups=c)
    return x[:, :, ::down, ::down]


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """`[N,C,H,W]` -> `[N,C,H*up,W*up]`, FIR interpolation with `f`."""
    k = f.shape[-1]
    p0, p1 = (k + up - 1) // 2, (k - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """`[N,C,H,W]` -> `[N,C,H/down,W/down]`, FIR low-pass then decimation."""
    k = f.shape[-1]
    p0, p1 = (k - down + 1) // 2, (k - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
    flip_weight: bool = True,
) -> torch.Tensor:
    """Convolution `w [O,I/groups,k,k]` of `x [N,I,H,W]` with optional 2x up- or downsampling.

    up=2: stride-2 transposed convolution, then FIR filtering with gain 4 (output 2H).
    down=2: FIR filtering, then stride-2 convolution (output H/2). `padding` is with respect
    to the upsampled image; `flip_weight=False` means true convolution instead of correlation.
    """
    if up > 1 and down > 1:
        raise InputError("conv2d_resample: up and down together are not supported")
    if (up > 1 or down > 1) and f is None:
        raise InputError("conv2d_resample: resampling needs a FIR filter f")
    out_ch, in_per_group, kh, kw = w.shape
    px0 = px1 = py0 = py1 = int(padding)
    if up > 1:
        fk = f.shape[-1]
        px0 += (fk + up - 1) // 2 - (kw - 1)
        px1 += (fk - up) // 2 - (kw - up)
        py0 += (fk + up - 1) // 2 - (kh - 1)
        py1 += (fk - up) // 2 - (kh - up)
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
            wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
        if flip_weight:  # the transposed convolution flips by itself: compensate
            wt = wt.flip([2, 3])
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = F.conv_transpose2d(x, wt, stride=up, padding=[pyt, pxt], groups=groups)
        return upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up * up)
    if not flip_weight:
        w = w.flip([2, 3])
    if down > 1:
        fk = f.shape[-1]
        px0 += (fk - down + 1) // 2
        px1 += (fk - down) // 2
        py0 += (fk - down + 1) // 2
        py1 += (fk - down) // 2
        x = upfirdn2d(x, f, padding=(px0, px1, py0, py1))
        return F.conv2d(x, w, stride=down, groups=groups)
    return F.conv2d(x, w, padding=[py0, px0], groups=groups)
