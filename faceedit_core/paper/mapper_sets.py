"""Trained paper-tier mapper sets: their files, their ids, and optimisation-free inference.

A mapper set is one `DualMappers` trained for one prompt (paper Sec. IV-A), stored as
`<id>.json` + its weights (storage/mapper_store.py; the manifest carries the prompt, PAE basis,
alpha, loss weights, model hashes). Inference is a forward pass (paper Sec. IX):
w' = w + s * dw, psi' = psi + s * dpsi, and several sets compose by summing their residuals, each
computed from the unedited (w, psi) (Sec. XI, e.g. Close Eyes + Frown Brow).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceedit_core.errors import InputError
from faceedit_core.mappers import DualMappers
from faceedit_core.params import FlameParams
from faceedit_core.storage.mapper_store import MapperStore


@dataclass
class MapperSet:
    """A trained mapper set: `id` (its file stem), the prompt it was trained for, the network."""

    id: str
    prompt: str
    mapper: DualMappers
    manifest: dict


def slug(prompt: str) -> str:
    """A file stem for a prompt: 'A person who is smiling' -> 'a-person-who-is-smiling'."""
    s = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:64].strip("-")
    if not s:
        raise InputError(f"prompt {prompt!r} has no letters or digits to name its mapper file")
    return s


def save_mapper_set(stem: str | os.PathLike, mapper: DualMappers, prompt: str, info: dict) -> Path:
    """Write a mapper set; `info` (basis, alpha, weights, model hashes, summary) joins the manifest."""
    stem = Path(stem)
    return MapperStore(stem.parent, "paper").save(stem.name, mapper, {**info, "prompt": prompt})


def load_mapper_set(stem: str | os.PathLike) -> MapperSet:
    """Read a mapper set written by `save_mapper_set` (format and sha256 checked); eval mode, on the CPU."""
    stem = Path(stem)
    mapper, manifest = MapperStore(stem.parent, "paper").load(stem.name)
    return MapperSet(stem.name, str(manifest.get("prompt", "")), mapper, manifest)


def find_mapper_sets(folder: str | os.PathLike) -> dict[str, Path]:
    """{id: stem} of the mapper sets in a folder."""
    return MapperStore(folder, "paper").ids()


def params_sha256(params: FlameParams) -> str:
    """A content hash of FLAME parameters (every field's float32 bytes, by name)."""
    h = hashlib.sha256()
    for name, arr in sorted(params.to_numpy().items()):
        h.update(name.encode() + np.ascontiguousarray(arr, np.float32).tobytes())
    return h.hexdigest()


def edit_latent(
    mapper_sets: list[tuple[DualMappers, float]], ws: torch.Tensor, params: FlameParams
) -> tuple[torch.Tensor, FlameParams]:
    """(ws [B,L,512], params [B]) -> (ws' [B,L,512], params' [B] with psi' = psi + sum s_i dpsi_i).

    A set trained on the first k expression coefficients (k = its n_exp, 50 by default: EMOCA's
    and Next3D's width) reads and edits psi[:, :k]; the coefficients beyond stay as given. Only the
    expression changes in params; every set sees the unedited inputs (composition).
    """
    for mapper, _ in mapper_sets:
        if mapper.config.n_exp > params.n_exp:
            raise InputError(
                f"a mapper set for {mapper.config.n_exp} expression coefficients cannot edit params with {params.n_exp}"
            )
    psi = params.expression
    ws_out, psi_out = ws, psi
    for mapper, intensity in mapper_sets:
        k = mapper.config.n_exp
        dws, dpsi = mapper(ws, psi[:, :k])
        psi_out = psi_out + intensity * torch.nn.functional.pad(dpsi, (0, psi.shape[1] - k))
        if dws is not None:
            ws_out = ws_out + intensity * dws
    return ws_out, params.replace(expression=psi_out)
