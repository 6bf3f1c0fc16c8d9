"""Our own checkpoint format: tensors in safetensors + a JSON manifest holding their sha256.

`save(stem, ...)` writes `<stem>.<sha12>.safetensors` (named by its content), then switches
`<stem>.json` to it with one atomic rename, then removes the stem's older weight files. A crash
at any point leaves either the old pair or the new pair, never a manifest without its weights.
Writers of one stem (threads or processes: the server and `faceedit train` training the same
prompt) are serialised by a file lock `<stem>.lock`. `load` checks the hash and names the file
that does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import torch
from filelock import FileLock
from safetensors import torch as st

from faceedit_core.errors import InputError
from faceedit_core.storage.atomic import atomic_write_bytes, atomic_write_text

_WEIGHTS_NAME = re.compile(r"^(?P<stem>.+?)(\.[0-9a-f]{12})?\.safetensors$")


def manifest_path(stem: str | os.PathLike) -> Path:
    return Path(f"{stem}.json")


def stem_of(path: str | os.PathLike) -> Path:
    """The checkpoint stem of a path a user may give: `<stem>`, `<stem>.json`, `<stem>.safetensors`
    or the weights file `<stem>.<sha12>.safetensors`."""
    path = Path(path)
    if path.name.endswith(".json"):
        return path.with_name(path.name[: -len(".json")])
    m = _WEIGHTS_NAME.match(path.name)
    return path.with_name(m["stem"]) if m else path


def weights_path(stem: str | os.PathLike) -> Path:
    """The weights file the manifest of `stem` names."""
    return Path(stem).parent / read_manifest(stem)["weights_file"]


def lock(stem: str | os.PathLike) -> FileLock:
    """The cross-process lock of one checkpoint stem (re-entrant within a process)."""
    path = Path(f"{stem}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), is_singleton=True)


def _weight_files(stem: Path) -> list[Path]:
    return [
        p
        for p in stem.parent.glob(f"{stem.name}.*safetensors")
        if p.name == f"{stem.name}.safetensors" or p.name[len(stem.name) + 1 : -len(".safetensors")].isalnum()
    ]


def save(stem: str | os.PathLike, tensors: dict[str, torch.Tensor], manifest: dict) -> Path:
    """Write the weights and switch `<stem>.json` to them in one rename; returns the manifest path."""
    stem = Path(stem)
    blob = st.save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    digest = hashlib.sha256(blob).hexdigest()
    weights = stem.parent / f"{stem.name}.{digest[:12]}.safetensors"
    with lock(stem):
        atomic_write_bytes(weights, blob)
        atomic_write_text(
            manifest_path(stem), json.dumps({**manifest, "weights_file": weights.name, "sha256": digest}, indent=1)
        )
        for old in _weight_files(stem):
            if old != weights:
                old.unlink(missing_ok=True)
    return manifest_path(stem)


def read_manifest(stem: str | os.PathLike) -> dict:
    """The manifest of a checkpoint, checked to be a JSON object naming its weights file."""
    path = manifest_path(stem)
    if not path.is_file():
        raise InputError(f"checkpoint manifest {path.name} does not exist")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"checkpoint manifest {path.name} is not valid JSON ({exc})") from None
    name = manifest.get("weights_file") if isinstance(manifest, dict) else None
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors"):
        raise InputError(f"checkpoint manifest {path.name} does not name a weights file beside it")
    return manifest


def load(stem: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by `save`, verifying the weights' sha256."""
    manifest = read_manifest(stem)
    weights = Path(stem).parent / manifest["weights_file"]  # read_manifest checked it is a bare name
    data = weights.read_bytes() if weights.is_file() else b""
    if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        raise InputError(
            f"checkpoint weights {weights.name} are missing or corrupt "
            f"(sha256 does not match {manifest_path(stem).name})"
        )
    return st.load(data), manifest
