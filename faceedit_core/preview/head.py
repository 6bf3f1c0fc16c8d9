"""The head the preview tier edits: a FlameLayer plus what training and editing need to know about it.

`PreviewHead.demo()` is the embedded default (the ICT head); `PreviewHead.from_flame_file(path)` is a
user's FLAME file (FLAME 2020 `generic_model.pkl`, FLAME 2023 `flame2023.pkl`,
`flame2023_no_jaw.pkl`, `flame2023_Open.pkl`, or our FLAME-format stand-in) with DECA's landmark
embedding found beside it, in the models folder, or given. Any FlameLayer works: `PreviewHead(...)`
takes one directly (the ICT head, a test model).

What the preview tier needs beyond the layer:
- n_edit: how many leading expression coefficients the mapper edits (FLAME: 50 by default, what
  EMOCA and Next3D use, up to the file's 100);
- coefficients: 'pca' (FLAME-like components, coefficients about N(0,1)) or 'activations'
  (localised shapes whose weights live in [0, 1], as the demo and ICT heads have);
- sides: whether the expression basis can move one side of the face alone (FACS L/R actions);
  measured from the basis: a head whose components are all mirror-symmetric cannot wink.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from faceedit_core.errors import InputError, MissingModelError
from faceedit_core.flame.io import load_flame_model, load_landmark_embedding
from faceedit_core.flame.layer import FlameLayer
from faceedit_core.storage.home import sha256_file

DEFAULT_FLAME_EXPRESSIONS = 50  # EMOCA's and Next3D's width; FLAME files hold 100
LANDMARK_FILES = ("landmark_embedding.npy", "landmark_embedding.npz")
FLAME_PYTORCH_LANDMARKS = ("flame_static_embedding.pkl", "flame_dynamic_embedding.npy")
WHERE_LANDMARKS = "DECA's data/landmark_embedding.npy (github.com/yfeng95/DECA)"


@dataclass
class PreviewHead:
    """layer, head_hash (content hash: mappers are tied to it), label (what to call it in messages),
    n_edit, coefficients ('pca' or 'activations'), sides (one-sided actions possible), source (file)."""

    layer: FlameLayer
    head_hash: str
    label: str
    n_edit: int
    coefficients: str = "pca"
    sides: bool | None = None
    source: str | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        live = live_expressions(self.layer)
        if not 1 <= self.n_edit <= self.layer.n_exp:
            raise InputError(
                f"expression width {self.n_edit}: {self.label} has {self.layer.n_exp} expression coefficients "
                f"({live} of them non-zero); choose 1..{self.layer.n_exp}"
            )
        if self.coefficients not in ("pca", "activations"):
            raise InputError(f"coefficients must be 'pca' or 'activations', got {self.coefficients!r}")
        if self.sides is None:
            self.sides = has_one_sided_motion(self.layer, self.n_edit)

    @property
    def has_jaw(self) -> bool:
        return bool(self.layer.lbs_weights[:, 2].max() > 0)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def demo(cls, parameterisation: str | None = None) -> "PreviewHead":
        """The embedded default: the ICT head, 52 ARKit shapes with left/right ("semantic", served) or
        50 entangled PCA components ("pca"); see faceedit_core/flame/default_head.py."""
        from faceedit_core.flame.default_head import demo_head

        head = demo_head(parameterisation)
        layer = FlameLayer(head.model, head.landmarks)
        info = {"demo": True, "parameterisation": head.parameterisation, "ict": head.ict}
        sides = True if head.ict is not None else None  # ICT's shapes are per side by construction
        return cls(layer, head.content_hash, head.label, len(head.components), head.coefficients, sides, info=info)

    @classmethod
    def procedural(cls) -> "PreviewHead":
        """The procedural test head: 16 localised FACS components, all mirror-symmetric (so no sides)."""
        from faceedit_core.flame.default_head import procedural_head

        head = procedural_head()
        layer = FlameLayer(head.model, head.landmarks)
        info = {"parameterisation": head.parameterisation}
        return cls(layer, head.content_hash, head.label, len(head.components), head.coefficients, info=info)

    @classmethod
    def from_flame_file(
        cls,
        path: str | os.PathLike,
        landmarks: str | os.PathLike | None = None,
        models_dir: str | os.PathLike | None = None,
        n_exp: int | None = None,
    ) -> "PreviewHead":
        """A FLAME model file with its landmark embedding (see `find_landmarks`); n_exp: the expression
        width the preview tier edits (default 50, at most the file's)."""
        path = Path(path).expanduser()
        version = flame_version(path)
        label = f"{version} ({path.name})"
        lm_paths = find_landmarks(path, landmarks, models_dir)
        try:
            model = load_flame_model(path)
        except InputError as exc:
            raise InputError(
                f"{path} is not a usable {version} model file: {exc}. A FLAME file holds v_template [5023,3], "
                "shapedirs [5023,3,400] (300 identity + 100 expression), posedirs, J_regressor [5,5023], "
                "weights [5023,5], kintree_table and f [9976,3]"
            ) from None
        emb = load_landmark_embedding(*lm_paths)
        try:
            layer = FlameLayer(model, emb)
        except InputError as exc:
            raise InputError(
                f"landmark embedding {lm_paths[0]} does not fit {path.name} ({model.n_verts} vertices, "
                f"{len(model.f)} faces): {exc}; use the embedding made for this topology ({WHERE_LANDMARKS})"
            ) from None
        digest = hashlib.sha256()
        for p in (path, *lm_paths):
            digest.update(sha256_file(p).encode())
        width = DEFAULT_FLAME_EXPRESSIONS if n_exp is None else int(n_exp)
        if n_exp is None:
            width = min(width, layer.n_exp)
        head = cls(
            layer,
            digest.hexdigest(),
            label,
            width,
            "pca",
            source=str(path),
            info={"version": version, "landmarks": [str(p) for p in lm_paths], "n_verts": model.n_verts},
        )
        return head


def flame_version(path: str | os.PathLike) -> str:
    """What a FLAME file is, by its official name: 'FLAME 2020', 'FLAME 2023', 'FLAME 2023 (no jaw)',
    'FLAME 2023 Open', or 'FLAME-layout model' for any other name."""
    name = Path(path).name.lower()
    if re.fullmatch(r"flame2023_open\.pkl", name):
        return "FLAME 2023 Open"
    if re.fullmatch(r"flame2023_no_jaw\.pkl", name):
        return "FLAME 2023 (no jaw)"
    if re.fullmatch(r"flame2023.*\.pkl", name):
        return "FLAME 2023"
    if name in ("generic_model.pkl", "female_model.pkl", "male_model.pkl") or re.fullmatch(r"flame_.*2020.*", name):
        return "FLAME 2020"
    return "FLAME-layout model"


def find_landmarks(
    flame_path: Path, landmarks: str | os.PathLike | None = None, models_dir: str | os.PathLike | None = None
) -> tuple[Path, ...]:
    """The landmark embedding for a FLAME file: `landmarks` when given; else DECA's
    landmark_embedding.npy (or our .npz, or FLAME_PyTorch's static + dynamic pair) beside the FLAME
    file, then in the models folder's flame/. MissingModelError naming every place looked."""
    if landmarks is not None:
        p = Path(landmarks).expanduser()
        if not p.is_file():
            raise MissingModelError(f"landmark embedding {p} not found ({WHERE_LANDMARKS})")
        if p.name == FLAME_PYTORCH_LANDMARKS[0]:
            return (p, p.with_name(FLAME_PYTORCH_LANDMARKS[1]))
        return (p,)
    folders = [flame_path.parent] + ([Path(models_dir).expanduser() / "flame"] if models_dir else [])
    for folder in folders:
        for name in LANDMARK_FILES:
            if (folder / name).is_file():
                return (folder / name,)
        if all((folder / n).is_file() for n in FLAME_PYTORCH_LANDMARKS):
            return tuple(folder / n for n in FLAME_PYTORCH_LANDMARKS)
    looked = ", ".join(str(f) for f in dict.fromkeys(folders))
    raise MissingModelError(
        f"no landmark embedding for {flame_path.name}: put {WHERE_LANDMARKS} beside it or in the models "
        f"folder's flame/, or pass --landmarks FILE (looked in {looked})"
    )


def live_expressions(layer: FlameLayer) -> int:
    """How many expression columns of the layer are not all zero (the last live one + 1)."""
    norms = layer.exprdirs.abs().amax(1)
    live = torch.nonzero(norms > 0).squeeze(1)
    return int(live[-1]) + 1 if len(live) else 0


@functools.lru_cache(maxsize=8)
def _mirror_map(template_bytes: bytes, n: int) -> np.ndarray | None:
    verts = torch.from_numpy(np.frombuffer(template_bytes, np.float32).reshape(n, 3).copy())
    mirrored = verts * torch.tensor([-1.0, 1.0, 1.0])
    idx, dist = [], []
    for chunk in mirrored.split(1024):
        d = torch.cdist(chunk, verts)
        best = d.min(1)
        idx.append(best.indices)
        dist.append(best.values)
    dist_t = torch.cat(dist)
    if float(torch.quantile(dist_t, 0.95)) > 1e-3:  # not a mirror-symmetric template (> 1 mm off)
        return None
    return torch.cat(idx).numpy()


def mirror_map(layer: FlameLayer) -> np.ndarray | None:
    """[V] the vertex at each vertex's mirror position (x -> -x) on the template, or None when the
    template is not mirror-symmetric."""
    t = layer.v_template.detach().cpu().numpy().astype(np.float32)
    return _mirror_map(t.tobytes(), len(t))


def has_one_sided_motion(layer: FlameLayer, n_edit: int, tolerance: float = 0.01) -> bool:
    """True when the first n_edit expression components can move one side of the face alone: the
    share of their energy that is not mirror-symmetric exceeds `tolerance`. A template that is not
    itself symmetric is assumed to allow it (it cannot be told)."""
    m = mirror_map(layer)
    if m is None:
        return True
    V = layer.n_verts
    dirs = layer.exprdirs[:n_edit].detach().cpu().reshape(n_edit, V, 3)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    mirrored = dirs[:, torch.from_numpy(m)] * flip
    total = (dirs**2).sum()
    if total == 0:
        return False
    return bool((((dirs - mirrored) ** 2).sum() / (4 * total)) > tolerance)


__all__ = ["PreviewHead", "flame_version", "find_landmarks"]
