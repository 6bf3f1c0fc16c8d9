"""The embedded default head (the ICT Face Model, MIT) and the small procedural test head.

- `demo_head(parameterisation=None) -> DefaultHead`: the default everywhere (`faceedit head`,
  `edit`, `render`, `demo`, the server without arguments, the add-on's Add Demo Head): the ICT
  Face Model Light converted into FLAME's layout (`flame/ict.py`, docs/ict_head.md), read from
  the package's data/ict/ (nothing generated, nothing written). Served parameterisation:
  "semantic" (52 ARKit shapes with _L/_R, what an animator reads and an ARKit export needs);
  "pca" (50 entangled components, FLAME's stand-in) is for tests and the evaluation.
- `procedural_head() -> DefaultHead`: the procedural mannequin (9,554 vertices, 16 one-AU
  components), built on first use (about a second) and cached under
  FACEEDIT_HOME/models/demo_head/ with a sha256 manifest (a changed file or generator is rebuilt).
  Kept as the small fast fixture of tests and as the FLAME-sized stand-in topology of the Next3D
  tests (docs/demo_head.md says where it earns its place).

The ICT head loads in well under a second and is kept per process (its arrays are shared by every
caller: copy before changing one in place); the procedural head is read from its cache each call.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from faceedit_core.flame.ict import IctHead, load_ict_head
from faceedit_core.flame.ict_asset import DATA_DIR, asset_paths
from faceedit_core.flame.io import (
    FlameModel,
    LandmarkEmbedding,
    load_flame_model,
    load_landmark_embedding,
    save_flame_model,
    save_landmark_embedding,
)
from faceedit_core.flame.procedural import GENERATOR_VERSION, build_demo_head
from faceedit_core.flame.procedural_expressions import COMPONENTS
from faceedit_core.storage.atomic import atomic_write_text
from faceedit_core.storage.home import faceedit_home, sha256_file

DEFAULT_PARAMETERISATION = "semantic"
ICT_LOADER_VERSION = 1  # bump when load_ict_head gives other arrays for the same asset: mappers retrain
DEMO_FILES = ("flame.npz", "landmarks.npz")


@dataclass
class DefaultHead:
    """A built-in head: model, landmarks, components (IctComponent or the procedural
    ExpressionComponent, one per live expression column), content_hash (mappers are tied to it),
    folder (where its files are), label (what messages call it), coefficients ('activations': weights
    in [0,1]; 'pca': FLAME-like N(0,1) coefficients), parameterisation ('semantic', 'pca' or
    'procedural'), ict (the IctHead: parts, jaw, names; None for the procedural head)."""

    model: FlameModel
    landmarks: LandmarkEmbedding
    components: tuple
    content_hash: str
    folder: Path
    label: str
    coefficients: str
    parameterisation: str
    ict: IctHead | None = None


# ---------------------------------------------------------------------------- the ICT head
def demo_head(parameterisation: str | None = None, progress=None) -> DefaultHead:
    """The default head: the ICT head, "semantic" unless `parameterisation` says "pca"."""
    return _ict_default(parameterisation or DEFAULT_PARAMETERISATION)


@functools.lru_cache(maxsize=2)
def _ict_default(parameterisation: str) -> DefaultHead:
    head = load_ict_head(parameterisation)
    semantic = parameterisation == "semantic"
    return DefaultHead(
        model=head.model,
        landmarks=head.landmarks,
        components=tuple(head.components),
        content_hash=ict_content_hash(parameterisation, head.n_exp),
        folder=DATA_DIR,
        label=f"the ICT demo head ({parameterisation})",
        coefficients="activations" if semantic else "pca",
        parameterisation=parameterisation,
        ict=head,
    )


@functools.lru_cache(maxsize=4)
def ict_content_hash(parameterisation: str, n_exp: int) -> str:
    """sha256 of the asset's files, the parameterisation, its width and ICT_LOADER_VERSION."""
    h = hashlib.sha256(json.dumps([ICT_LOADER_VERSION, parameterisation, n_exp]).encode())
    for path in asset_paths():
        h.update(sha256_file(path).encode())
    return h.hexdigest()


def load_demo_flame(device: str = "cpu", parameterisation: str | None = None):
    """The default head as a FlameLayer on `device`."""
    from faceedit_core.flame.layer import FlameLayer

    head = demo_head(parameterisation)
    return FlameLayer(head.model, head.landmarks).to(device)


# ---------------------------------------------------------------------------- the procedural head
def generator_fingerprint() -> str:
    """GENERATOR_VERSION plus a hash of the generator's source: any change rebuilds the cache."""
    h = hashlib.sha256(str(GENERATOR_VERSION).encode())
    for path in sorted(Path(__file__).parent.glob("procedural*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _procedural_dir() -> Path:
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


def procedural_head(progress=None) -> DefaultHead:
    """The procedural test head, from the cache when valid, otherwise built (about a second) and cached."""
    folder = _procedural_dir()
    manifest = _cache_valid(folder)
    if manifest is None:
        if progress:
            progress({"stage": "build the procedural head", "step": 0, "total": 1})
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
    model.meta["source"] = "faceedit procedural head"
    return DefaultHead(
        model=model,
        landmarks=load_landmark_embedding(folder / "landmarks.npz"),
        components=COMPONENTS,
        content_hash=manifest["content_hash"],
        folder=folder,
        label="the FaceEdit procedural head",
        coefficients="activations",
        parameterisation="procedural",
    )


def load_procedural_flame(device: str = "cpu"):
    """The procedural test head as a FlameLayer on `device`."""
    from faceedit_core.flame.layer import FlameLayer

    head = procedural_head()
    return FlameLayer(head.model, head.landmarks).to(device)


__all__ = [
    "DEFAULT_PARAMETERISATION",
    "DefaultHead",
    "demo_head",
    "load_demo_flame",
    "procedural_head",
    "load_procedural_flame",
    "ict_content_hash",
]
