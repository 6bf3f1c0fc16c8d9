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

from filelock import FileLock

from faceedit_core.errors import InputError
from faceedit_core.mappers import DualMappers, MapperConfig
from faceedit_core.storage import checkpoints

FORMATS = {"preview": "faceedit.emotion_mapper", "paper": "faceedit.dual_mappers"}
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_id(mapper_id: object) -> str:
    """mapper_id if it is a mapper name (letters, digits, '_', '-', '.'; 64 at most), else InputError."""
    if not isinstance(mapper_id, str) or not ID_PATTERN.match(mapper_id) or ".." in mapper_id:
        shown = mapper_id[:80] if isinstance(mapper_id, str) else type(mapper_id).__name__
        raise InputError(f"mapper id {shown!r} is not a mapper name (letters, digits, '_', '-', '.'; 64 at most)")
    return mapper_id


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
            if ID_PATTERN.match(stem.name) and any(stem.parent.glob(f"{stem.name}.*safetensors")):
                found[stem.name] = stem
        return found

    def exists(self, mapper_id: str) -> bool:
        return checkpoints.manifest_path(self.stem(mapper_id)).is_file()

    def lock(self, mapper_id: str) -> FileLock:
        """Held while a mapper is trained and saved, so two processes never train the same one twice."""
        return checkpoints.lock(self.stem(mapper_id))

    def manifest(self, mapper_id: str) -> dict:
        if not self.exists(mapper_id):
            raise InputError(f"unknown mapper id '{mapper_id}'")
        return self._checked(mapper_id, checkpoints.read_manifest(self.stem(mapper_id)))

    def _checked(self, mapper_id: str, manifest: dict) -> dict:
        if manifest.get("format") != self.format or not isinstance(manifest.get("mapper_config"), dict):
            raise InputError(
                f"mapper '{mapper_id}' is not a FaceEdit {self.tier}-tier mapper "
                f"(format {str(manifest.get('format'))[:40]!r}, expected {self.format!r})"
            )
        return manifest

    def save(self, mapper_id: str, mapper: DualMappers, manifest: dict) -> Path:
        """Write mapper + manifest (the format and the mapper's config are added)."""
        return checkpoints.save(
            self.stem(mapper_id),
            mapper.state_dict(),
            {**manifest, "format": self.format, "tier": self.tier, "mapper_config": mapper.config.to_dict()},
        )

    def load(self, mapper_id: str) -> tuple[DualMappers, dict]:
        """(mapper in eval mode on the CPU, manifest); InputError naming the id when it is not ours."""
        if not self.exists(mapper_id):
            raise InputError(f"unknown mapper id '{mapper_id}'")
        tensors, manifest = checkpoints.load(self.stem(mapper_id))
        self._checked(mapper_id, manifest)
        mapper = DualMappers(MapperConfig.from_dict(manifest["mapper_config"]))
        try:
            mapper.load_state_dict(tensors)
        except RuntimeError as exc:
            raise InputError(f"mapper '{mapper_id}': its weights do not match its config ({str(exc)[:200]})") from None
        return mapper.eval(), manifest
