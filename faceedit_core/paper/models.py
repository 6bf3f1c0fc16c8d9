"""The paper tier's networks, loaded from the user's model folder (`--models DIR`).

Editing and rendering need FLAME (+ DECA's landmark embedding) and Next3D; training also needs
CLIP and ArcFace. Each is loaded only when asked for; a missing file raises MissingModelError
naming the file and the folder it goes in (assets.MODEL_SLOTS). Every file's sha256 is kept, so
checkpoints and mapper sets record exactly which models they were trained with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from faceedit_core.errors import MissingModelError
from faceedit_core.flame.layer import FlameLayer
from faceedit_core.storage.home import sha256_file
from faceedit_core.storage.models_dir import MODEL_SLOTS, ModelsDir

EDIT_SLOTS = ("flame", "landmarks", "next3d")
TRAIN_SLOTS = EDIT_SLOTS + ("clip", "arcface")


def require(models_dir: ModelsDir, keys: tuple[str, ...]) -> dict[str, Path]:
    """{slot: file} for `keys`, or one MissingModelError listing every missing file and its folder."""
    found, missing = {}, []
    for key in keys:
        path = models_dir.find(key)
        if path is None:
            slot = next(s for s in MODEL_SLOTS if s.key == key)
            missing.append(f"{slot.what} -> put it in {models_dir.path / slot.folder}/ (from {slot.where})")
        else:
            found[key] = path
    if missing:
        raise MissingModelError(f"model folder {models_dir.path} lacks: " + "; ".join(missing))
    return found


@dataclass
class PaperModels:
    """flame (FlameLayer), generator (Next3DGenerator), clip / arcface (None unless loaded),
    hashes {slot: sha256 of its file} (or a description for models built in memory)."""

    flame: FlameLayer
    generator: object
    clip: object | None = None
    arcface: object | None = None
    hashes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_models_dir(
        cls, path: str | os.PathLike, device: str = "cpu", guidance: bool = False, sr_precision: str = "auto"
    ) -> "PaperModels":
        """Load FLAME and Next3D (and CLIP + ArcFace when `guidance`) from a model folder;
        `sr_precision` of Next3D's super-resolution (next3d.precision.reduced_dtype)."""
        from faceedit_core.next3d.generator import Next3DGenerator

        md = ModelsDir(path)
        files = require(md, TRAIN_SLOTS if guidance else EDIT_SLOTS)
        flame = FlameLayer.from_files(files["flame"], files["landmarks"]).to(device)
        # frozen: FaceEdit never trains Next3D (the mappers learn through it, paper Sec. III-C)
        generator = Next3DGenerator.from_checkpoint(files["next3d"]).to(device).eval().requires_grad_(False)
        generator.superresolution.precision = sr_precision
        models = cls(flame, generator, hashes={k: sha256_file(p) for k, p in files.items()})
        if guidance:
            models.load_guidance(md, device)
        return models

    def load_guidance(self, models_dir: ModelsDir, device: str = "cpu") -> "PaperModels":
        """Load CLIP and ArcFace from the folder (training needs them, editing does not)."""
        from faceedit_core.paper.arcface import load_arcface
        from faceedit_core.paper.clip_model import load_clip

        files = require(models_dir, ("clip", "arcface"))
        self.clip = load_clip(files["clip"], device=device)
        self.arcface = load_arcface(files["arcface"], device=device)
        self.hashes.update({k: sha256_file(p) for k, p in files.items()})
        return self
