"""The embedded default head: built on first use, cached under FACEEDIT_HOME/models/demo_head.

The demo head is built on first use and stored as plain `.npz` files with a JSON manifest of
sha256 hashes; a file that no longer matches its hash (or an older generator) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from faceedit_core.flame.io import (
    FlameModel,
    LandmarkEmbedding,
    load_flame_model,
    load_landmark_embedding,
    save_flame_model,
    save_landmark_embedding,
)
from faceedit_core.flame.procedural import GENERATOR_VERSION, build_demo_head
from faceedit_core.flame.procedural_expressions import COMPONENTS, ExpressionComponent
from faceedit_core.storage.atomic import atomic_write_text
from faceedit_core.storage.home import faceedit_home, sha256_file

DEMO_FILES = ("flame.npz", "landmarks.npz")


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
    for path in sorted(Path(__file__).parent.glob("procedural*.py")):
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
        manifest = {
            "generator": generator_fingerprint(),
            "content_hash": head.content_hash(),
            "files": {name: sha256_file(folder / name) for name in DEMO_FILES},
            "components": [c.__dict__ for c in COMPONENTS],
        }
        atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1))
    model = load_flame_model(folder / "flame.npz")
    model.meta["source"] = "faceedit demo head"
    return DemoHeadFiles(
        model, load_landmark_embedding(folder / "landmarks.npz"), COMPONENTS, manifest["content_hash"], folder
    )


def load_demo_flame(device: str = "cpu"):
    """The demo head as a FlameLayer on `device`."""
    from faceedit_core.flame.layer import FlameLayer

    head = demo_head()
    return FlameLayer(head.model, head.landmarks).to(device)
