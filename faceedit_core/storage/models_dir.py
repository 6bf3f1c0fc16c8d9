"""The user's model folder (`--models DIR`): which files are there, which are missing and where to get them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSlot:
    key: str
    folder: str
    patterns: tuple[str, ...]
    what: str
    where: str


MODEL_SLOTS = (
    ModelSlot(
        "flame",
        "flame",
        ("generic_model.pkl", "flame2023*.pkl", "FLAME*.pkl", "*.npz"),
        "FLAME 2020 generic_model.pkl or FLAME 2023",
        "the FLAME website (flame.is.tue.mpg.de), registration required",
    ),
    ModelSlot(
        "landmarks",
        "flame",
        ("landmark_embedding.npy",),
        "DECA's landmark_embedding.npy",
        "the DECA repository's data/ folder",
    ),
    ModelSlot(
        "next3d", "next3d", ("*.pkl", "*.json"), "the Next3D checkpoint next3d_ffhq_512.pkl", "the Next3D project page"
    ),
    ModelSlot(
        "clip",
        "clip",
        ("*.pt", "*.bin", "*.safetensors"),
        "CLIP ViT-B/32 weights (open_clip or OpenAI)",
        "open_clip's model list or OpenAI's CLIP release",
    ),
    ModelSlot(
        "arcface",
        "arcface",
        ("*.pth", "*.pt"),
        "ArcFace IR-SE50 (model_ir_se50.pth) or insightface iresnet50/100",
        "the pSp/StyleCLIP or insightface releases",
    ),
)


class ModelsDir:
    """The user's paper-tier model folder (`faceedit-server --models DIR`)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    def find(self, key: str) -> Path | None:
        slot = next(s for s in MODEL_SLOTS if s.key == key)
        for pattern in slot.patterns:
            hits = sorted((self.path / slot.folder).glob(pattern))
            if hits:
                return hits[0]
        return None

    def present(self) -> dict[str, str | None]:
        return {slot.key: (str(p) if (p := self.find(slot.key)) else None) for slot in MODEL_SLOTS}

    def describe(self) -> str:
        """One line per slot: the file found, or what to download and where to put it."""
        lines = [f"model folder {self.path}:"]
        for slot in MODEL_SLOTS:
            found = self.find(slot.key)
            lines.append(
                f"  {slot.key:10s} "
                + (
                    f"found {found}"
                    if found
                    else f"MISSING: put {slot.what} in {self.path / slot.folder}/ (from {slot.where})"
                )
            )
        return "\n".join(lines)
