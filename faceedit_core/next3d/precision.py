"""Precision of the blocks the release marks `use_fp16` (Next3D's super-resolution).

The release runs them in float16 on CUDA and in float32 elsewhere (CPUs of its time had no fast
reduced type). On CPUs with AMX, oneDNN runs bfloat16 convolutions about 4-6x faster than
float32 ones; "auto" uses them there. Measured on the golden super-resolution (docs/next3d.md):
bfloat16 is within 2.0 % (max) / 0.41 % (mean) of the float32 image's peak, float16 within
0.25 % / 0.05 %.
"""

from __future__ import annotations

import torch

from ..errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def reduced_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of a `use_fp16` block for `precision` on `device`.

    "auto": float16 on CUDA, as released; bfloat16 on CPUs with AMX; float32 elsewhere.
    "fp32" reproduces the official CPU numbers; "bf16" and "fp16" force those types.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not one of {PRECISIONS}")
    if precision != "auto":
        return _DTYPES[precision]
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_amx() else torch.float32


def cpu_has_amx() -> bool:
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe() and torch.backends.mkldnn.is_available())
