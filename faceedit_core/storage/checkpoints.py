"""Our own checkpoint format: tensors in safetensors + a JSON manifest holding their sha256.

`save(stem, ...)` writes `<stem>.<sha12>.safetensors` (named by its content), then switches
`<stem>.json` to it with one atomic rename, then removes the stem's older weight files. A crash
at any point leaves either the old pair or the new pair, never a manifest without its weights.
Writers of one stem (threads or processes: the server and `faceedit train` training the same
prompt) are serialised by a file lock `<stem>.lock`. `load` checks the hash and names the file
that does not match; a reader racing a writer re-reads the manifest when the weights it named
were switched away meanwhile. Temporaries a killed writer left behind are removed by the next save.
`training_tensors` / `restore_training`: a training run's weights and optimiser state in that form
(both tiers' resumable training).
"""

from __future__ import annotations

import glob
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
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few KB of JSON; a bigger one is not ours
_LOAD_TRIES = 5  # re-reads of the manifest when a concurrent save switched it under a reader


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
    """The stem's weight files: `<stem>.<sha12>.safetensors` and the older `<stem>.safetensors`
    (never another stem's: `<stem>.best.safetensors` belongs to the stem `<stem>.best`)."""
    own = re.compile(rf"^{re.escape(stem.name)}(\.[0-9a-f]{{12}})?\.safetensors$")
    return [p for p in stem.parent.glob(f"{glob.escape(stem.name)}.*safetensors") if own.match(p.name)]


def _stale_temporaries(stem: Path) -> list[Path]:
    """Temporaries of this stem's files that a killed save left (atomic_write's `.<name>.<random>.tmp`
    and the older fixed `<name>.tmp`). Only called under the stem's lock: no live save owns them."""
    name = re.escape(stem.name)
    own = re.compile(
        rf"^(\.{name}(\.[0-9a-f]{{12}})?\.(safetensors|json)\.[A-Za-z0-9_]+|{name}\.(safetensors|json))\.tmp$"
    )
    found = [*stem.parent.glob(f".{glob.escape(stem.name)}*.tmp"), *stem.parent.glob(f"{glob.escape(stem.name)}*.tmp")]
    return [p for p in found if own.match(p.name)]


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
        for old in _weight_files(stem) + _stale_temporaries(stem):
            if old != weights:
                old.unlink(missing_ok=True)
    return manifest_path(stem)


def remove(stem: str | os.PathLike) -> None:
    """Delete checkpoint `stem` (its manifest, then its weight files); nothing when there is none."""
    stem = Path(stem)
    if not manifest_path(stem).is_file() and not _weight_files(stem):
        return
    with lock(stem):
        manifest_path(stem).unlink(missing_ok=True)
        for weights in _weight_files(stem):
            weights.unlink(missing_ok=True)


def read_manifest(stem: str | os.PathLike) -> dict:
    """The manifest of a checkpoint, checked to be a JSON object naming its weights file."""
    path = manifest_path(stem)
    if not path.is_file():
        raise InputError(f"checkpoint manifest {path.name} does not exist")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InputError(
            f"checkpoint manifest {path.name} is over {MAX_MANIFEST_BYTES} bytes (not a FaceEdit manifest)"
        )
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"checkpoint manifest {path.name} is not valid JSON ({type(exc).__name__})") from None
    name = manifest.get("weights_file") if isinstance(manifest, dict) else None
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors"):
        raise InputError(f"checkpoint manifest {path.name} does not name a weights file beside it")
    return manifest


def load(stem: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by `save`, verifying the weights' sha256.

    Takes no lock (a read-only models folder must load): when the weights the manifest named are
    gone or differ, a concurrent save may have switched the manifest meanwhile, so the manifest is
    read again; only a manifest that stays the same and still does not match is an error.
    """
    manifest = read_manifest(stem)
    for _ in range(_LOAD_TRIES):
        weights = Path(stem).parent / manifest["weights_file"]  # read_manifest checked it is a bare name
        try:
            data = weights.read_bytes()
        except OSError:
            data = b""
        if hashlib.sha256(data).hexdigest() == manifest.get("sha256"):
            try:
                return st.load(data), manifest
            except Exception as exc:  # a well-hashed file that is not safetensors (SafetensorError, ...)
                raise InputError(
                    f"checkpoint weights {weights.name} are not a safetensors file ({str(exc)[:200]})"
                ) from None
        again = read_manifest(stem)
        if again == manifest:
            break
        manifest = again
    raise InputError(
        f"checkpoint weights {weights.name} are missing or corrupt (sha256 does not match {manifest_path(stem).name})"
    )


def training_tensors(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """A training run's weights and optimiser moments as checkpoint tensors (`mapper.<name>`,
    `opt.<param id>.<state>`); the optimiser's param groups go in the manifest (JSON)."""
    tensors = {f"mapper.{k}": v for k, v in model.state_dict().items()}
    for pid, state in opt.state_dict()["state"].items():
        tensors |= {f"opt.{pid}.{name}": torch.as_tensor(value) for name, value in state.items()}
    return tensors


def restore_training(
    tensors: dict[str, torch.Tensor], model: torch.nn.Module, opt: torch.optim.Optimizer, param_groups: list
) -> None:
    """Load `training_tensors` back into model and opt (moments on the model's device, steps on CPU)."""
    device = next(model.parameters()).device
    model.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("mapper.")})
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, pid, entry = name.split(".", 2)
            state.setdefault(int(pid), {})[entry] = value if entry == "step" else value.to(device)
    opt.load_state_dict({"state": state, "param_groups": param_groups})
