"""Trained paper-tier mapper sets: their files, their ids, and optimisation-free inference.

A mapper set is one `DualMappers` trained for one prompt (paper Sec. IV-A), stored as
`<id>.safetensors` + `<id>.json` (checkpoints.py; the manifest carries the prompt, PAE basis,
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

from . import checkpoints
from .errors import InputError
from .mappers import DualMappers, MapperConfig, apply_mappers
from .params import FlameParams

FORMAT = "faceedit.dual_mappers"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


def check_id(mapper_id: str) -> str:
    if not isinstance(mapper_id, str) or not ID_PATTERN.match(mapper_id) or ".." in mapper_id:
        raise InputError(f"mapper id {mapper_id!r} is not a mapper-set name (letters, digits, '_', '-', '.'; 64 at most)")
    return mapper_id


def save_mapper_set(stem: str | os.PathLike, mapper: DualMappers, prompt: str, info: dict) -> Path:
    """Write a mapper set; `info` (basis, alpha, weights, model hashes, summary) joins the manifest."""
    return checkpoints.save(stem, mapper.state_dict(), {**info, "format": FORMAT, "tier": "paper", "prompt": prompt,
                                                        "mapper_config": mapper.config.to_dict()})


def load_mapper_set(stem: str | os.PathLike) -> MapperSet:
    """Read a mapper set written by `save_mapper_set` (sha256 checked); eval mode, on the CPU."""
    tensors, manifest = checkpoints.load(stem)
    if manifest.get("format") != FORMAT:
        raise InputError(f"{Path(stem).with_suffix('.json')} is not a FaceEdit paper-tier mapper set "
                         f"(format {manifest.get('format')!r}, expected {FORMAT!r})")
    mapper = DualMappers(MapperConfig.from_dict(manifest["mapper_config"]))
    mapper.load_state_dict(tensors)
    return MapperSet(Path(stem).name, manifest["prompt"], mapper.eval(), manifest)


def find_mapper_sets(folder: str | os.PathLike) -> dict[str, Path]:
    """{id: stem} of the mapper sets in a folder (one `<id>.json` manifest of our format each)."""
    folder = Path(folder)
    found = {}
    for manifest in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if ID_PATTERN.match(manifest.stem) and manifest.with_suffix(".safetensors").is_file():
            found[manifest.stem] = manifest.with_suffix("")
    return found


def params_sha256(params: FlameParams) -> str:
    """A content hash of FLAME parameters (every field's float32 bytes, by name)."""
    h = hashlib.sha256()
    for name, arr in sorted(params.to_numpy().items()):
        h.update(name.encode() + np.ascontiguousarray(arr, np.float32).tobytes())
    return h.hexdigest()


def edit_latent(mapper_sets: list[tuple[DualMappers, float]], ws: torch.Tensor, params: FlameParams
                ) -> tuple[torch.Tensor, FlameParams]:
    """(ws [B,L,512], params [B]) -> (ws' [B,L,512], params' [B] with psi' = psi + sum s_i dpsi_i).

    Only the expression changes in params; the mappers see the unedited inputs (composition).
    """
    for mapper, _ in mapper_sets:
        if mapper.config.n_exp != params.n_exp:
            raise InputError(f"a mapper set for {mapper.config.n_exp} expression coefficients cannot edit "
                             f"params with {params.n_exp}")
    ws_out, psi_out = apply_mappers(mapper_sets, ws, params.expression)
    return ws_out, params.replace(expression=psi_out)
