"""Reading the Next3D golden vectors (`../shared/golden/next3d/`, README there).

- `load_state_dict(dir)`: the small generator's state dict, decoded (int8 code x 2^e from the
  `exp2:<name>` metadata, int32 -> int64), float32 otherwise.
- `load_stage(dir, "02")`: one stage file as a `Stage` (tensors with float16 inputs cast to
  float32, and the JSON metadata); `Stage.assert_close(name, actual)` compares a full tensor or,
  for names in `full_shapes`, its `.sub` grid and `.stats` (mean/RMS relative, min/max absolute).
- `sub_state_dict(sd, prefix)`: the entries under `prefix.`, renamed without it.
- `release_keys(shared_dir)`: the release's state-dict names and shapes (reference key list).
- `two_threads()`: a context at 2 torch threads, the thread count the vectors were recorded at.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

REL_TOL = 1e-5  # README §6: max|diff| <= 1e-5 * max|ref| + 1e-6 for the same op order, fp32 CPU
ABS_TOL = 1e-6


def load_state_dict(golden_dir: Path) -> dict[str, torch.Tensor]:
    out = {}
    with safe_open(str(golden_dir / "state_dict.safetensors"), "pt") as f:
        meta = f.metadata()
        for name in f.keys():
            t = f.get_tensor(name)
            if t.dtype == torch.int8:
                t = t.to(torch.float32) * (2.0 ** int(meta[f"exp2:{name}"]))
            elif t.dtype in (torch.int16, torch.int32):
                t = t.to(torch.int64)
            out[name] = t
    return out


def release_keys(shared_dir: Path) -> dict[str, tuple[int, ...]]:
    """`reference/next3d_full_state_dict_keys.txt` -> {name: shape}, in file order (skips when absent)."""
    path = shared_dir / "reference" / "next3d_full_state_dict_keys.txt"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    keys = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, shape = line.split("\t")[:2]
            keys[name] = tuple(int(v) for v in re.findall(r"\d+", shape))
    return keys


@contextmanager
def two_threads():
    """The golden values were recorded at 2 threads (README §6)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sub_state_dict(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}


def reduce_like_golden(full: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`full [...,S,S]` -> (`sub [...,n,n]` on the grid `index [n]`, `stats [L,4]` float64)."""
    sub = full.index_select(-2, index).index_select(-1, index)
    flat = full.detach().to(torch.float64).reshape(-1, full.shape[-2] * full.shape[-1])
    stats = torch.stack([flat.mean(1), flat.square().mean(1).sqrt(), flat.min(1).values, flat.max(1).values], dim=1)
    return sub, stats


@dataclass
class Stage:
    tensors: dict[str, torch.Tensor]
    meta: dict[str, object]

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    @property
    def full_shapes(self) -> dict[str, list[int]]:
        return self.meta.get("full_shapes", {})

    def max_abs(self, name: str) -> float:
        """Largest |value| of the reference tensor (from `.stats` min/max when reduced)."""
        if name in self.full_shapes:
            s = self.tensors[name + ".stats"]
            return float(torch.maximum(s[:, 2].abs(), s[:, 3].abs()).max())
        return float(self.tensors[name].abs().max())

    def assert_close(self, name: str, actual: torch.Tensor, rel: float = REL_TOL) -> float:
        """Assert `actual` matches reference `name` within rel*max|ref| + 1e-6; returns max diff."""
        actual = actual.detach().cpu().to(torch.float32)
        tol = rel * self.max_abs(name) + ABS_TOL
        if name in self.full_shapes:
            assert list(actual.shape) == self.full_shapes[name], (name, list(actual.shape))
            size = actual.shape[-1]
            sub, stats = reduce_like_golden(actual, self.tensors[f"index_{size}"])
            ref_sub, ref_stats = self.tensors[name + ".sub"], self.tensors[name + ".stats"]
            diff = float((sub - ref_sub).abs().max())
            assert diff <= tol, f"{name}.sub: max diff {diff:.3g} > {tol:.3g}"
            scale = ref_stats[:, 1].abs().max()  # RMS scale of the tensor
            mean_rms_diff = float(((stats[:, :2] - ref_stats[:, :2]).abs() / scale).max())
            assert mean_rms_diff <= max(rel, 1e-5), f"{name}.stats mean/RMS: rel diff {mean_rms_diff:.3g}"
            minmax_diff = float((stats[:, 2:] - ref_stats[:, 2:]).abs().max())
            assert minmax_diff <= tol, f"{name}.stats min/max: diff {minmax_diff:.3g} > {tol:.3g}"
            return max(diff, minmax_diff)
        ref = self.tensors[name]
        assert actual.shape == ref.shape, (name, list(actual.shape), list(ref.shape))
        diff = float((actual - ref.to(torch.float32)).abs().max())
        assert diff <= tol, f"{name}: max diff {diff:.3g} > {tol:.3g}"
        return diff


def load_stage(golden_dir: Path, number: str) -> Stage:
    (path,) = sorted(golden_dir.glob(f"{number}_*.safetensors"))
    tensors = {}
    with safe_open(str(path), "pt") as f:
        raw_meta = f.metadata() or {}
        for name in f.keys():
            t = f.get_tensor(name)
            if t.dtype == torch.float16:
                t = t.to(torch.float32)
            elif t.dtype in (torch.int16, torch.int32):
                t = t.to(torch.int64)
            tensors[name] = t
    meta = {}
    for key, value in raw_meta.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return Stage(tensors, meta)
