"""One store for the trained mappers of both tiers: `<folder>/<id>.json` + its weights.

Preview-tier Emotion Mappers live in FACEEDIT_HOME/mappers/preview/, paper-tier mapper sets in
the models folder's mappers/. Both are checkpoints (checkpoints.py) whose manifest carries a
`format` and the `mapper_config`; `load` checks both before building the network. Ids are
checked against one pattern before they touch the file system, and errors name the id, never
the server's folders (clients see these messages).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from filelock import FileLock

from faceedit_core.errors import InputError
from faceedit_core.mappers import ConditionedMapper, ConditionedMapperConfig, DualMappers, MapperConfig
from faceedit_core.storage import checkpoints

# preview: the Emotion Mapper conditioned on an AU target (mappers.ConditionedMapper), one per head
# (and optional per-target fine-tunes); paper: Dual Mappers, one set per prompt
FORMATS = {"preview": "faceedit.conditioned_emotion_mapper", "paper": "faceedit.dual_mappers"}
NETWORKS = {"preview": (ConditionedMapperConfig, ConditionedMapper), "paper": (MapperConfig, DualMappers)}
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_id(mapper_id: object) -> str:
    """mapper_id if it is a mapper name (letters, digits, '_', '-', '.'; 64 at most), else InputError."""
    if not isinstance(mapper_id, str) or not ID_PATTERN.match(mapper_id) or ".." in mapper_id:
        shown = mapper_id[:80] if isinstance(mapper_id, str) else type(mapper_id).__name__
        raise InputError(f"mapper id {shown!r} is not a mapper name (letters, digits, '_', '-', '.'; 64 at most)")
    return mapper_id


def _complete(stem: Path) -> bool:
    """A manifest `<stem>.json` with a weights file `<stem>.*safetensors` beside it."""
    return checkpoints.manifest_path(stem).is_file() and any(stem.parent.glob(f"{stem.name}.*safetensors"))


MAX_CONFIG_NUMBER = 4096  # any number in a stored mapper config (widths, layers, levels)
MAX_CONFIG_LIST = 64  # any list in a stored mapper config (ws levels)


def _checked_config(mapper_id: str, config_cls: type, stored: dict):
    """The network config a manifest stores, its numbers capped before any network is built from it
    (a manifest saying hidden=20000 would otherwise allocate 1.5 GB before its weights are compared)."""

    def number_ok(v) -> bool:
        return isinstance(v, bool) or (isinstance(v, (int, float)) and abs(v) <= MAX_CONFIG_NUMBER)

    for key, value in stored.items():
        items = value if isinstance(value, list) else [value]
        if not isinstance(key, str) or len(items) > MAX_CONFIG_LIST or not all(number_ok(v) for v in items):
            raise InputError(
                f"mapper '{mapper_id}': config value {str(key)[:40]!r} is not a number or list of numbers "
                f"within {MAX_CONFIG_NUMBER} (at most {MAX_CONFIG_LIST} long)"
            )
    try:
        return config_cls.from_dict(stored)
    except (TypeError, ValueError) as exc:
        raise InputError(f"mapper '{mapper_id}': its config does not fit this version ({str(exc)[:200]})") from None


class MapperStore:
    """The mappers of one tier in one folder."""

    def __init__(self, folder: str | os.PathLike, tier: str):
        if tier not in FORMATS:
            raise InputError(f"tier must be one of {sorted(FORMATS)}, got {tier!r}")
        self.folder, self.tier, self.format = Path(folder), tier, FORMATS[tier]

    def stem(self, mapper_id: str) -> Path:
        return self.folder / check_id(mapper_id)

    def ids(self) -> dict[str, Path]:
        """{id: stem} of every mapper in the folder (a manifest whose weights file is present)."""
        found = {}
        for manifest in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            stem = manifest.with_name(manifest.name[: -len(".json")])
            if ID_PATTERN.match(stem.name) and _complete(stem):
                found[stem.name] = stem
        return found

    def known(self, mapper_id: str) -> Path:
        """The stem of a mapper this store holds (a manifest and its weights); else InputError
        'unknown mapper id', the same whatever is or is not in the folder under that name."""
        stem = self.stem(mapper_id)
        if not _complete(stem):
            raise InputError(f"unknown mapper id '{mapper_id}'")
        return stem

    def exists(self, mapper_id: str) -> bool:
        return checkpoints.manifest_path(self.stem(mapper_id)).is_file()

    def lock(self, mapper_id: str) -> FileLock:
        """Held while a mapper is trained and saved, so two processes never train the same one twice."""
        return checkpoints.lock(self.stem(mapper_id))

    def manifest(self, mapper_id: str) -> dict:
        return self._checked(mapper_id, checkpoints.read_manifest(self.known(mapper_id)))

    def _checked(self, mapper_id: str, manifest: dict) -> dict:
        if manifest.get("format") != self.format or not isinstance(manifest.get("mapper_config"), dict):
            raise InputError(
                f"mapper '{mapper_id}' is not a FaceEdit {self.tier}-tier mapper "
                f"(format {str(manifest.get('format'))[:40]!r}, expected {self.format!r})"
            )
        return manifest

    def save(self, mapper_id: str, mapper: DualMappers | ConditionedMapper, manifest: dict) -> Path:
        """Write mapper + manifest (the format and the mapper's config are added)."""
        return checkpoints.save(
            self.stem(mapper_id),
            mapper.state_dict(),
            {**manifest, "format": self.format, "tier": self.tier, "mapper_config": mapper.config.to_dict()},
        )

    def load(self, mapper_id: str) -> tuple[DualMappers | ConditionedMapper, dict]:
        """(mapper in eval mode on the CPU, manifest); InputError naming the id when it is not ours."""
        tensors, manifest = checkpoints.load(self.known(mapper_id))
        self._checked(mapper_id, manifest)
        config_cls, network_cls = NETWORKS[self.tier]
        config = _checked_config(mapper_id, config_cls, manifest["mapper_config"])
        with torch.device("meta"):  # the layout the config asks for, allocating nothing
            layout = {k: tuple(v.shape) for k, v in network_cls(config).state_dict().items()}
        stored = {k: tuple(v.shape) for k, v in tensors.items()}
        if layout != stored:  # checked before the network is built: its size is then the file's
            name = next(k for k in sorted(layout.keys() | stored.keys()) if layout.get(k) != stored.get(k))
            raise InputError(
                f"mapper '{mapper_id}': its weights do not match its config "
                f"({name}: config {layout.get(name)}, weights {stored.get(name)})"
            )
        mapper = network_cls(config)
        try:
            mapper.load_state_dict(tensors)
        except RuntimeError as exc:
            raise InputError(f"mapper '{mapper_id}': its weights do not match its config ({str(exc)[:200]})") from None
        return mapper.eval(), manifest
