"""Our own checkpoint format: tensors in safetensors + a JSON manifest holding their sha256.

Both files are written to temporary names and renamed, manifest last, so a crash never leaves
a manifest that points at a half-written tensor file. `load` checks the hash and names the
file that does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import InputError


def _paths(stem: str | os.PathLike) -> tuple[Path, Path]:
    stem = Path(stem)
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save(stem: str | os.PathLike, tensors: dict[str, torch.Tensor], manifest: dict) -> Path:
    """Write `<stem>.safetensors` and `<stem>.json`; returns the manifest path."""
    weights_path, manifest_path = _paths(stem)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_weights = weights_path.with_suffix(".safetensors.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp_weights))
    digest = hashlib.sha256(tmp_weights.read_bytes()).hexdigest()
    os.replace(tmp_weights, weights_path)
    tmp_manifest = manifest_path.with_suffix(".json.tmp")
    tmp_manifest.write_text(json.dumps({**manifest, "weights_file": weights_path.name, "sha256": digest}, indent=1))
    os.replace(tmp_manifest, manifest_path)
    return manifest_path


def load(stem: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by `save`, verifying the weights' sha256."""
    weights_path, manifest_path = _paths(stem)
    if not manifest_path.is_file():
        raise InputError(f"checkpoint manifest {manifest_path} does not exist")
    manifest = json.loads(manifest_path.read_text())
    data = weights_path.read_bytes() if weights_path.is_file() else b""
    if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        raise InputError(f"checkpoint weights {weights_path} are missing or corrupt (sha256 does not match {manifest_path.name})")
    return load_file(str(weights_path)), manifest
