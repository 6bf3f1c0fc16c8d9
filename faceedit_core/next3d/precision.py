"""Precision of the blocks the release marks `use_fp16` (Next3D's super-resolution).

The release runs them in float16 on CUDA and in float32 elsewhere; "auto" does the same, so the
CPU path is float32 and gives the official CPU numbers. "bf16" is the CPU fast path: on CPUs
with AMX (Xeon 4th generation and later) oneDNN runs bfloat16 convolutions 4-6x faster than
float32 ones and a view of the release-size generator costs half as much (docs/performance.md);
elsewhere bfloat16 is emulated and slower. Measured on the golden super-resolution
(docs/next3d.md): bfloat16 stays within 2.0 % (worst pixel) / 0.41 % (mean) of the float32
image's peak, float16 within 0.25 % / 0.05 %.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faceedit_core.errors import InputError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # torch-free, so `faceedit-server --help` imports no torch
_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def reduced_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of a `use_fp16` block for `precision` on `device`: "auto" is float16 on CUDA
    and float32 elsewhere, as released; "fp32", "bf16" and "fp16" force that type."""
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not one of {PRECISIONS}")
    if precision != "auto":
        return getattr(torch, _DTYPE_NAMES[precision])
    return torch.float16 if device.type == "cuda" else torch.float32
