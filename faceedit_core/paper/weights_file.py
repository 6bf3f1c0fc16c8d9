"""Find and read a network's weights from a file we did not write, without running any code from it.

Accepted: safetensors; torch pickles (`torch.save` of a state dict, optionally wrapped in
{"state_dict": ...} and/or prefixed "module."), read with `torch.load(weights_only=True)`;
TorchScript archives (OpenAI's CLIP release ships one), whose `data.pkl` is unpickled with the
restricted unpickler: each scripted module becomes an inert record of its attributes and only
tensor storages are read from the archive. Its code/ folder is never looked at.

Nothing a file claims is allocated unchecked (docs/security.md): a zip archive's entries that are
read may not unpack to more than the archive's size (torch stores them uncompressed; a deflated
gigabyte of zeros is refused before it is inflated); every tensor must lie inside its storage with positive
strides (an `expand`-ed fp16 tensor of 2 bytes is refused before `.float()` would make it 2 GB),
and all tensors together may hold at most twice the file's size plus 1 MiB. Any failure is an
`InputError` or `UnsafeFileError` naming the file.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from faceedit_core.errors import InputError, MissingModelError, UnsafeFileError
from faceedit_core.storage.unpickle import (
    MAX_DEPTH,
    STORAGE_DTYPES,
    TORCH_UNREAD_ENTRIES,
    Budget,
    SafeUnpickler,
    StateRecord,
    check_loaded_tensor,
    check_zip_sizes,
    reading_errors,
)

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def find_weights(path: str | os.PathLike, folder: str, default_name: str, what: str) -> Path:
    """A weights file: `path` itself, or the first file in `path/folder` or `path` when it is a folder.

    Raises MissingModelError naming what to download and `<models dir>/<folder>/<default_name>`.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for d in (path / folder, path):
            hits = sorted(p for p in d.glob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file()) if d.is_dir() else []
            if hits:
                return hits[0]
        models_dir = path.parent if path.name == folder else path
    else:
        models_dir = path.parent.parent if path.parent.name == folder else path.parent
    raise MissingModelError(
        f"{what} not found at {path}: download {what} and put it at {models_dir / folder / default_name}"
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """{name: tensor} from a weights file; floating tensors come back as float32 on the CPU."""
    path = Path(path)
    with reading_errors(str(path)):
        size = path.stat().st_size
        budget = Budget.for_size(size)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        elif _is_torchscript(path):
            sd = _read_torchscript(path, size)
        else:
            if zipfile.is_zipfile(path):
                check_zip_sizes(path, size, str(path), TORCH_UNREAD_ENTRIES)
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # an unpickling error: the file asks for more than tensors
                raise UnsafeFileError(
                    f"{path}: not a plain tensor checkpoint that torch.load(weights_only=True) "
                    f"accepts ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
                ) from exc
            if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
                sd = sd["state_dict"]
        if not isinstance(sd, dict) or not sd:
            raise InputError(f"{path}: expected a dict of tensors (a state dict), found {type(sd).__name__}")
        sd = {str(k).removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
        for name, value in sd.items():  # before any copy: .float() of an expanded view is the bomb
            check_loaded_tensor(budget, value, f"tensor '{name[:80]}'")
        return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or n.endswith("/code/") or "/code/__torch__" in n for n in z.namelist())


class _ScriptUnpickler(SafeUnpickler):
    """SafeUnpickler that also accepts scripted-module records, storage types and archive storages."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, max_bytes: int):
        super().__init__(file, allow_torch=True, encoding="utf-8", max_bytes=max_bytes)
        self.archive, self.prefix = archive, prefix
        self._storages: dict[str, torch.storage.TypedStorage] = {}

    def _rebuild_parameter(self, data, requires_grad=False, hooks=None):
        if not isinstance(data, torch.Tensor) or hooks:
            raise UnsafeFileError("refusing a Parameter that is not a plain tensor (hooks)")
        return torch.nn.Parameter(data, requires_grad=bool(requires_grad))

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return self.record_class(f"{module}.{name}")
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return self._rebuild_parameter
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5):
            raise UnsafeFileError("unexpected persistent id in a TorchScript archive")
        kind, dtype, key, _location, _numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype) or not isinstance(key, str):
            raise UnsafeFileError(f"unexpected persistent id {str(pid)[:100]} in a TorchScript archive")
        if key not in self._storages:  # once per key: a pickle naming one record many times reads it once
            name = f"{self.prefix}/data/{key}"
            self.budget.charge(self.archive.getinfo(name).file_size, f"storage {key}")
            data = bytearray(self.archive.read(name))
            untyped = torch.UntypedStorage.from_buffer(data, dtype=torch.uint8) if data else torch.UntypedStorage(0)
            self._storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        storage = self._storages[key]
        if storage.dtype != dtype:
            raise UnsafeFileError(f"storage {key} is named with two dtypes in a TorchScript archive")
        return storage


def _read_torchscript(path: Path, size: int) -> dict[str, torch.Tensor]:
    check_zip_sizes(path, size, str(path), TORCH_UNREAD_ENTRIES)
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not names:
            raise InputError(f"{path}: a zip archive without data.pkl (not a TorchScript or torch checkpoint)")
        prefix = names[0].split("/")[0]
        with z.open(names[0]) as f:
            root = _ScriptUnpickler(f, z, prefix, max_bytes=Budget.for_size(size).limit).load()
    out: dict[str, torch.Tensor] = {}
    _flatten(root, "", out)
    return out


def _flatten(node, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    """Dotted names of the tensors in a tree of module records (attributes in their state dicts).

    A scripted module's state holds every attribute, so tensors that are neither parameters nor
    buffers (OpenAI's per-block attn_mask) come out too; the loaders drop the ones they know.
    """
    if depth > MAX_DEPTH:
        raise UnsafeFileError(f"scripted modules nested deeper than {MAX_DEPTH} levels")
    state = node.state if isinstance(node, StateRecord) else None
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            out[f"{prefix}{name}"] = value
        elif isinstance(value, StateRecord):
            _flatten(value, f"{prefix}{name}.", out, depth + 1)
