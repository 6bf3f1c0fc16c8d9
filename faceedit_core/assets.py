"""Where models live: the generated demo head cache and the user's paper-tier model folder.

`FACEEDIT_HOME` (default `~/.cache/faceedit`) holds everything FaceEdit generates or converts.
The demo head is built on first use and stored as plain `.npz` files with a JSON manifest of
sha256 hashes; a file that no longer matches its hash (or an older generator) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .flame.io import (FlameModel, LandmarkEmbedding, atomic_savez, load_flame_model, load_landmark_embedding,
                       save_flame_model, save_landmark_embedding)
from .flame.procedural import GENERATOR_VERSION, build_demo_head
from .flame.procedural_expressions import COMPONENTS, ExpressionComponent

DEMO_FILES = ("flame.npz", "landmarks.npz")


def faceedit_home() -> Path:
    return Path(os.environ.get("FACEEDIT_HOME", Path.home() / ".cache" / "faceedit")).expanduser()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class DemoHeadFiles:
    """The cached demo head: model and landmark files, the content hash, the components."""

    model: FlameModel
    landmarks: LandmarkEmbedding
    components: tuple[ExpressionComponent, ...]
    content_hash: str
    folder: Path


def generator_fingerprint() -> str:
    """GENERATOR_VERSION plus a hash of the generator's source: any change rebuilds the cache."""
    h = hashlib.sha256(str(GENERATOR_VERSION).encode())
    for path in sorted((Path(__file__).parent / "flame").glob("procedural*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _demo_dir() -> Path:
    return faceedit_home() / "models" / "demo_head"


def _cache_valid(folder: Path) -> dict | None:
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("generator") != generator_fingerprint():
        return None
    for name in DEMO_FILES:
        path = folder / name
        if not path.is_file() or sha256_file(path) != manifest.get("files", {}).get(name):
            return None
    return manifest


def demo_head(progress=None) -> DemoHeadFiles:
    """The demo head, from the cache when valid, otherwise built (about a second) and cached."""
    folder = _demo_dir()
    manifest = _cache_valid(folder)
    if manifest is None:
        if progress:
            progress({"stage": "build demo head", "step": 0, "total": 1})
        head = build_demo_head()
        folder.mkdir(parents=True, exist_ok=True)
        save_flame_model(head.model, folder / "flame.npz")
        save_landmark_embedding(head.landmarks, folder / "landmarks.npz")
        manifest = {"generator": generator_fingerprint(), "content_hash": head.content_hash(),
                    "files": {name: sha256_file(folder / name) for name in DEMO_FILES},
                    "components": [c.__dict__ for c in COMPONENTS]}
        tmp = folder / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, folder / "manifest.json")
    model = load_flame_model(folder / "flame.npz")
    model.meta["source"] = "faceedit demo head"
    return DemoHeadFiles(model, load_landmark_embedding(folder / "landmarks.npz"), COMPONENTS,
                         manifest["content_hash"], folder)


def load_demo_flame(device: str = "cpu"):
    """The demo head as a FlameLayer on `device`."""
    from .flame.layer import FlameLayer
    head = demo_head()
    return FlameLayer(head.model, head.landmarks).to(device)


# ---------------------------------------------------------------------------- paper tier files
@dataclass(frozen=True)
class ModelSlot:
    key: str
    folder: str
    patterns: tuple[str, ...]
    what: str
    where: str


MODEL_SLOTS = (
    ModelSlot("flame", "flame", ("generic_model.pkl", "flame2023*.pkl", "FLAME*.pkl", "*.npz"),
              "FLAME 2020 generic_model.pkl or FLAME 2023", "the FLAME website (flame.is.tue.mpg.de), registration required"),
    ModelSlot("landmarks", "flame", ("landmark_embedding.npy",), "DECA's landmark_embedding.npy", "the DECA repository's data/ folder"),
    ModelSlot("next3d", "next3d", ("*.pkl", "*.safetensors"), "the Next3D checkpoint next3d_ffhq_512.pkl", "the Next3D project page"),
    ModelSlot("clip", "clip", ("*.pt", "*.bin", "*.safetensors"), "CLIP ViT-B/32 weights (open_clip or OpenAI)", "open_clip's model list or OpenAI's CLIP release"),
    ModelSlot("arcface", "arcface", ("*.pth", "*.pt"), "ArcFace IR-SE50 (model_ir_se50.pth) or insightface iresnet50/100", "the pSp/StyleCLIP or insightface releases"),
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
            lines.append(f"  {slot.key:10s} " + (f"found {found}" if found else
                         f"MISSING: put {slot.what} in {self.path / slot.folder}/ (from {slot.where})"))
        return "\n".join(lines)
