"""The training objective (paper Eq. 11) as separate terms the trainer adds up with weights:

  L = lambda_clip L_clip + lambda_L2 L_L2 + lambda_id L_id (+ lambda_au L_au, optional)

Defaults (ObjectiveWeights) and why:
  clip 1.0      the reference scale, as in StyleCLIP and CLIP-PAE (only the ratios matter).
  identity 0.15 the paper's Sec. X sweeps lambda_id over 0.05..0.30 and picks 0.15-0.20; the low end
                keeps the most room for the expression change.
  l2 0.8        on the mean-square form below: StyleCLIP's latent-mapper L2 weight (0.8, MSE), the
                lineage the Dual Mappers follow; the paper's weights were lost in extraction.
  au 0.0        off: the paper has no AU term; the preview tier's geometric AU loss can be added.
L_L2 here is mean(dws^2) + mean(dpsi^2) (each branch's mean square), so the texture branch's 7,168
values do not outweigh the 100 expression values; reduction="sum" gives the literal
||dw||^2 + ||dpsi||^2 of Eq. 6 (then lambda_L2 must be far smaller).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

from faceedit_core.au.objective import au_loss
from faceedit_core.errors import InputError
from faceedit_core.paper.pae import PAEBasis, pae_loss, pae_target


@dataclass
class ObjectiveWeights:
    clip: float = 1.0
    identity: float = 0.15
    l2: float = 0.8
    au: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InputError(f"objective weight '{f.name}' must be a finite number >= 0, got {v!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ObjectiveWeights":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown objective weights {sorted(unknown)} (known: clip, identity, l2, au)")
        return cls(**d)


@torch.no_grad()
def clip_target(
    clip, basis: PAEBasis | None, images_init: torch.Tensor, prompt: str, alpha: float = 8.0
) -> torch.Tensor:
    """The fixed CLIP target [B,D] for initial renders images_init [B,3,H,W] in [-1,1].

    basis: a PAEBasis gives the PAE target (Eq. 7-9, from the raw e_I); None gives the plain text
    embedding (the paper's "without projection" ablation).
    """
    e_text = clip.encode_text([prompt])[0]
    if basis is None:
        return e_text.expand(images_init.shape[0], -1).clone()
    return pae_target(clip.encode_images(images_init, normalize=False), e_text, basis, alpha)


def clip_loss(clip, images_edit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_clip = mean(1 - cos(CLIP(images_edit [B,3,H,W]), target [B,D])); differentiable in the images."""
    return pae_loss(clip.encode_images(images_edit, normalize=False), target)


def l2_loss(dws: torch.Tensor | None, dpsi: torch.Tensor | None, reduction: str = "mean") -> torch.Tensor:
    """L_L2 (Eq. 6) of the residuals dws [B,L,512] and dpsi [B,Ne]; a disabled branch (None) adds 0.

    reduction "mean": mean(dws^2) + mean(dpsi^2); "sum": per-sample sums of squares, averaged over B.
    """
    if reduction not in ("mean", "sum"):
        raise InputError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    parts = [r for r in (dws, dpsi) if r is not None]
    if not parts:
        raise InputError("l2_loss needs at least one residual (dws or dpsi)")
    if reduction == "mean":
        return sum((r**2).mean() for r in parts)
    return sum((r**2).flatten(1).sum(1).mean() for r in parts)


def au_term(
    au: dict[str, torch.Tensor],
    start_au: dict[str, torch.Tensor],
    target: dict[str, float],
    spurious_weight: float = 0.5,
) -> torch.Tensor:
    """The geometric AU loss (au/objective.au_loss), averaged over the batch."""
    return au_loss(au, start_au, target, spurious_weight).mean()


def combine(terms: dict[str, torch.Tensor], weights: ObjectiveWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the terms present ("clip", "identity", "l2", "au") -> (total, {name: value}).

    A term whose weight is 0 is left out of the total (its value is still reported).
    """
    unknown = set(terms) - {f.name for f in fields(weights)}
    if unknown or not terms:
        raise InputError(f"objective terms must be some of clip, identity, l2, au; got {sorted(terms)}")
    total = sum(getattr(weights, name) * value for name, value in terms.items() if getattr(weights, name) > 0)
    if not isinstance(total, torch.Tensor):
        total = torch.zeros((), device=next(iter(terms.values())).device)
    report = {name: float(value.detach()) for name, value in terms.items()}
    report["total"] = float(total.detach())
    return total, report
