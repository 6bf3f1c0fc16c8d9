"""FLAME parameters: one container for shape, expression and pose, with validation and files.

All rotations are axis-angle vectors in radians (Rodrigues). The FLAME joints are, in order,
0 global (root), 1 neck, 2 jaw, 3 left eye (+x), 4 right eye.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceedit_core.errors import InputError
from faceedit_core.storage.atomic import atomic_write

# Largest magnitudes a sane edit can ask for: FLAME's coefficients are in standard deviations
# (the official add-on samples N(0,1)), rotations in radians, translation in metres.
LIMITS: dict[str, float] = {
    "shape": 10.0,
    "expression": 10.0,
    "global_pose": 2 * np.pi,
    "neck_pose": np.pi,
    "jaw_pose": np.pi / 2,
    "eye_pose": np.pi / 2,
    "transl": 10.0,
}
POSE_WIDTH: dict[str, int] = {"global_pose": 3, "neck_pose": 3, "jaw_pose": 3, "eye_pose": 6, "transl": 3}
FIELDS = ("shape", "expression", "global_pose", "neck_pose", "jaw_pose", "eye_pose", "transl")


@dataclass
class FlameParams:
    """A batch of FLAME parameters.

    shape [B,Ns], expression [B,Ne], global_pose [B,3], neck_pose [B,3], jaw_pose [B,3],
    eye_pose [B,6] (left eye then right eye), transl [B,3] (metres, added after skinning).
    """

    shape: torch.Tensor
    expression: torch.Tensor
    global_pose: torch.Tensor
    neck_pose: torch.Tensor
    jaw_pose: torch.Tensor
    eye_pose: torch.Tensor
    transl: torch.Tensor

    # ------------------------------------------------------------------ construction
    @classmethod
    def zeros(
        cls,
        batch: int = 1,
        n_shape: int = 100,
        n_exp: int = 50,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> "FlameParams":
        """The neutral head in rest pose: every coefficient zero."""
        if batch < 1:
            raise InputError(f"batch must be at least 1, got {batch}")
        z = lambda n: torch.zeros(batch, n, device=device, dtype=dtype)  # noqa: E731
        return cls(z(n_shape), z(n_exp), z(3), z(3), z(3), z(6), z(3))

    @classmethod
    def from_numpy(cls, arrays: dict, batch: int | None = None) -> "FlameParams":
        """Build from a mapping of arrays; absent pose fields are zero.

        `shape` and `expression` are required; 1-D arrays are taken as a batch of one.
        """
        for name in ("shape", "expression"):
            if name not in arrays:
                raise InputError(f"field '{name}' is missing (FLAME parameters need shape and expression)")
        tensors = {}
        for name in FIELDS:
            if name in arrays:
                value = np.asarray(arrays[name])
                if value.dtype.kind not in "fiu":
                    raise InputError(f"field '{name}' must be numeric, got dtype {value.dtype}")
                value = np.atleast_2d(value.astype(np.float32))
                tensors[name] = torch.from_numpy(np.ascontiguousarray(value))
        b = tensors["shape"].shape[0] if batch is None else batch
        for name, width in POSE_WIDTH.items():
            tensors.setdefault(name, torch.zeros(b, width))
        params = cls(**tensors)
        params.validate()
        return params

    @classmethod
    def from_emoca(cls, folder: str | os.PathLike, n_exp: int | None = None) -> "FlameParams":
        """Import an EMOCA/DECA output folder: shape.npy [100], exp.npy [50], pose.npy [6].

        DECA's 6-d pose is [global 3, jaw 3]; neck and eyes are zero. The 50 expression
        coefficients are the prefix of FLAME's 100 (zero-padded when n_exp > 50).
        """
        folder = Path(folder)
        missing = [n for n in ("shape.npy", "exp.npy", "pose.npy") if not (folder / n).is_file()]
        if missing:
            raise InputError(f"EMOCA folder {folder} lacks {', '.join(missing)}")
        shape = np.atleast_2d(np.load(folder / "shape.npy", allow_pickle=False))
        exp = np.atleast_2d(np.load(folder / "exp.npy", allow_pickle=False))
        pose = np.atleast_2d(np.load(folder / "pose.npy", allow_pickle=False))
        if pose.shape[-1] != 6:
            raise InputError(f"pose.npy must hold DECA's 6-d pose (global 3 + jaw 3), got shape {pose.shape}")
        params = cls.from_numpy(
            {"shape": shape, "expression": exp, "global_pose": pose[:, :3], "jaw_pose": pose[:, 3:]}
        )
        return params.padded(n_exp=n_exp) if n_exp else params

    # ------------------------------------------------------------------ checks
    @property
    def batch_size(self) -> int:
        return int(self.shape.shape[0])

    @property
    def n_shape(self) -> int:
        return int(self.shape.shape[1])

    @property
    def n_exp(self) -> int:
        return int(self.expression.shape[1])

    def validate(self, n_shape: int | None = None, n_exp: int | None = None) -> "FlameParams":
        """Check shapes, finiteness and magnitudes; raise InputError naming the field.

        n_shape / n_exp: the most coefficients the model has (fewer are fine: FLAME's
        components are ordered, so a shorter vector is a prefix).
        """
        batch = None
        for name in FIELDS:
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise InputError(f"field '{name}' must be a tensor, got {type(value).__name__}")
            if value.dim() != 2:
                raise InputError(f"field '{name}' must have shape [B, N], got {list(value.shape)}")
            if not value.is_floating_point():
                raise InputError(f"field '{name}' must be floating point, got {value.dtype}")
            if name in POSE_WIDTH and value.shape[1] != POSE_WIDTH[name]:
                raise InputError(f"field '{name}' must have {POSE_WIDTH[name]} values per item, got {value.shape[1]}")
            batch = value.shape[0] if batch is None else batch
            if value.shape[0] != batch:
                raise InputError(f"field '{name}' has batch {value.shape[0]}, expected {batch} like 'shape'")
        if batch == 0:
            raise InputError("FLAME parameters must hold at least one item (batch 0 given)")
        # one read-back for all fields: |x| peaks, NaN where a NaN is (amax propagates it), inf for Inf
        values = [getattr(self, name).detach() for name in FIELDS]
        peaks = torch.stack([v.abs().amax() if v.numel() else v.new_zeros(()) for v in values]).tolist()
        for name, peak in zip(FIELDS, peaks):
            if not math.isfinite(peak):
                raise InputError(f"field '{name}' contains NaN or Inf")
            if peak > LIMITS[name]:
                raise InputError(f"field '{name}' has magnitude {peak:.3g}, above the limit {LIMITS[name]:.3g}")
        if n_shape is not None and self.n_shape > n_shape:
            raise InputError(f"field 'shape' has {self.n_shape} coefficients, the model has {n_shape}")
        if n_exp is not None and self.n_exp > n_exp:
            raise InputError(f"field 'expression' has {self.n_exp} coefficients, the model has {n_exp}")
        return self

    # ------------------------------------------------------------------ tensors
    def full_pose(self) -> torch.Tensor:
        """[B,15]: [global, neck, jaw, left eye, right eye] axis-angle, ordered by joint index."""
        return torch.cat([self.global_pose, self.neck_pose, self.jaw_pose, self.eye_pose], dim=1)

    def _map(self, fn) -> "FlameParams":
        return FlameParams(**{name: fn(getattr(self, name)) for name in FIELDS})

    def to(self, device=None, dtype=None) -> "FlameParams":
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> "FlameParams":
        return self._map(torch.Tensor.detach)

    def clone(self) -> "FlameParams":
        return self._map(torch.Tensor.clone)

    def replace(self, **changes: torch.Tensor) -> "FlameParams":
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise InputError(f"unknown FLAME field(s) {sorted(unknown)}; known: {list(FIELDS)}")
        return FlameParams(**{name: changes.get(name, getattr(self, name)) for name in FIELDS})

    def index(self, i: int | slice) -> "FlameParams":
        """Items i (an int keeps a batch of one)."""
        sl = slice(i, i + 1) if isinstance(i, int) else i
        return self._map(lambda t: t[sl])

    @staticmethod
    def cat(items: list["FlameParams"]) -> "FlameParams":
        if not items:
            raise InputError("cannot concatenate an empty list of FLAME parameters")
        return FlameParams(**{name: torch.cat([getattr(p, name) for p in items]) for name in FIELDS})

    def padded(self, n_shape: int | None = None, n_exp: int | None = None) -> "FlameParams":
        """Zero-pad shape/expression to n_shape/n_exp coefficients (a shorter vector is a prefix).

        Truncating is refused unless the dropped coefficients are zero.
        """

        def fit(t: torch.Tensor, n: int | None, name: str) -> torch.Tensor:
            if n is None or t.shape[1] == n:
                return t
            if t.shape[1] < n:
                return torch.nn.functional.pad(t, (0, n - t.shape[1]))
            if t[:, n:].abs().max() > 0:
                raise InputError(f"field '{name}' has nonzero coefficients beyond the model's {n}")
            return t[:, :n]

        return self.replace(
            shape=fit(self.shape, n_shape, "shape"), expression=fit(self.expression, n_exp, "expression")
        )

    # ------------------------------------------------------------------ files
    def to_numpy(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).detach().cpu().numpy().astype(np.float32) for name in FIELDS}

    def to_json_dict(self) -> dict:
        return {
            "format": "faceedit.flame_params",
            "version": 1,
            **{name: value.tolist() for name, value in self.to_numpy().items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write `.npz` or `.json` atomically (a failure leaves any old file intact)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".json"):
            raise InputError(f"parameter file must end in .npz or .json, got '{path.name}'")

        def write(f):
            if suffix == ".npz":
                np.savez(f, **self.to_numpy())
            else:
                f.write(json.dumps(self.to_json_dict(), indent=1).encode())

        atomic_write(path, write)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FlameParams":
        """Read `.npz` (never with pickle) or `.json`, or an EMOCA output folder."""
        path = Path(path)
        if path.is_dir():
            return cls.from_emoca(path)
        if not path.is_file():
            raise InputError(f"parameter file {path} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files}
            except ValueError as exc:
                raise InputError(f"{path} is not a plain-array .npz file: {exc}") from exc
        elif suffix == ".json":
            try:
                arrays = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise InputError(f"{path} is not valid JSON: {exc}") from exc
            if not isinstance(arrays, dict):
                raise InputError(f"{path} must hold a JSON object of FLAME fields")
            arrays = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items() if k in FIELDS}
        else:
            raise InputError(f"parameter file must end in .npz or .json, got '{path.name}'")
        return cls.from_numpy(arrays)
