"""Identities of the paper tier: Next3D latents from a seed, from a saved file, or from a photo.

Next3D draws a face's appearance from ws [1,28,512]. An identity is one of:
- a seed: z ~ N(0, I) from torch's generator seeded with it, through the mapping network with the
  frontal conditioning camera, truncated below Next3D's cutoff (14) as Next3D samples faces;
- a latent file: `<stem>.json` + `<stem>.<sha12>.safetensors` (storage/checkpoints.py) holding
  `ws` [1,28,512] and, when it came from a photo (paper Sec. VI, `faceedit invert`), the photo's
  camera `c` [1,25] and FLAME parameters (`flame.<field>`); the manifest says where it came from.
Latent files live in the models folder's latents/ (the server takes names only), or anywhere
for the CLI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from faceedit_core.errors import InputError
from faceedit_core.params import FlameParams
from faceedit_core.storage import checkpoints
from faceedit_core.storage.mapper_store import ID_PATTERN, check_id

LATENT_FORMAT = "faceedit.next3d_latent"
TRUNCATION_PSI = 0.7
TRUNCATION_CUTOFF = 14  # Next3D truncates ws[:, :14] only (the texture rows stay untruncated)
MAX_SEED = 2**63 - 1


@dataclass
class Latent:
    """ws [1,28,512]; c [1,25] and params [1] when the latent came from a photo; the manifest."""

    ws: torch.Tensor
    c: torch.Tensor | None = None
    params: FlameParams | None = None
    manifest: dict = field(default_factory=dict)


def seed_latent(
    generator,
    seed: int,
    truncation_psi: float = TRUNCATION_PSI,
    truncation_cutoff: int | None = TRUNCATION_CUTOFF,
    device=None,
) -> torch.Tensor:
    """The identity of a seed: ws [1,28,512] (frontal conditioning camera, Next3D's truncation)."""
    from faceedit_core.render.cameras import orbit

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"identity seed must be an integer within 0..{MAX_SEED}, got {seed!r}")
    device = device if device is not None else next(generator.buffers()).device
    z = torch.randn(1, getattr(generator, "z_dim", 512), generator=torch.Generator().manual_seed(seed))
    c = orbit([0.0], [0.0]).eg3d_c().to(device)
    with torch.no_grad():
        return generator.mapping(
            z.to(device), c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff
        ).detach()


def save_latent(
    stem: str | os.PathLike,
    ws: torch.Tensor,
    info: dict | None = None,
    c: torch.Tensor | None = None,
    params: FlameParams | None = None,
) -> Path:
    """Write a latent file (atomic, sha256-checked on load); returns its manifest path."""
    _check_ws(ws, "ws")
    tensors = {"ws": ws.detach().float().cpu()}
    if c is not None:
        if c.shape != (ws.shape[0], 25) or not torch.isfinite(c).all():
            raise InputError(f"camera c must be finite with shape [{ws.shape[0]},25], got {list(c.shape)}")
        tensors["c"] = c.detach().float().cpu()
    if params is not None:
        tensors.update({f"flame.{k}": torch.as_tensor(v) for k, v in params.to_numpy().items()})
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    return checkpoints.save(stem, tensors, {**(info or {}), "format": LATENT_FORMAT})


def load_latent(path: str | os.PathLike) -> Latent:
    """Read a latent file (`<stem>`, `<stem>.json` or its weights file); format, shapes and values checked."""
    stem = checkpoints.stem_of(path)
    tensors, manifest = checkpoints.load(stem)
    if manifest.get("format") != LATENT_FORMAT:
        raise InputError(f"{checkpoints.manifest_path(stem).name} is not a FaceEdit latent file ({LATENT_FORMAT})")
    ws = tensors.get("ws")
    if ws is None:
        raise InputError(f"latent file {stem.name} holds no 'ws'")
    _check_ws(ws, f"latent file {stem.name}: ws")
    c = tensors.get("c")
    if c is not None and (c.shape != (ws.shape[0], 25) or not torch.isfinite(c).all()):
        raise InputError(f"latent file {stem.name}: camera c must be finite with shape [{ws.shape[0]},25]")
    flame = {k[6:]: v.numpy() for k, v in tensors.items() if k.startswith("flame.")}
    params = FlameParams.from_numpy(flame) if flame else None
    return Latent(ws.float(), None if c is None else c.float(), params, manifest)


def find_latents(folder: str | os.PathLike) -> dict[str, Path]:
    """{name: stem} of the latent files in a folder (manifest and weights present)."""
    folder = Path(folder)
    found = {}
    for manifest in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        stem = manifest.with_name(manifest.name[: -len(".json")])
        if ID_PATTERN.match(stem.name) and any(folder.glob(f"{stem.name}.*safetensors")):
            found[stem.name] = stem
    return found


def latent_stem(folder: str | os.PathLike, name: str) -> Path:
    """The stem of the latent called `name` in `folder` (a name, never a path: checked first)."""
    try:
        check_id(name)
    except InputError:
        shown = name[:80] if isinstance(name, str) else type(name).__name__
        raise InputError(f"latent name {shown!r} is not a name (letters, digits, '_', '-', '.'; 64 at most)") from None
    return Path(folder) / name


def _check_ws(ws: torch.Tensor, what: str) -> None:
    if not isinstance(ws, torch.Tensor) or ws.dim() != 3 or tuple(ws.shape[1:]) != (28, 512) or ws.shape[0] < 1:
        raise InputError(f"{what} must have shape [B,28,512], got {list(getattr(ws, 'shape', []))}")
    if not torch.isfinite(ws).all():
        raise InputError(f"{what} contains NaN or Inf")
