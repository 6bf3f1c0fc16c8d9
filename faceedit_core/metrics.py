"""Evaluation metrics (paper Sec. IV-A): CLIP score, identity similarity, geometric AU accuracy.

- CLIP score: 100 x cosine(CLIP image embedding, CLIP text embedding), per image, not clamped
  (the 2023 clip-score tool's convention; the paper uses CLIP ViT-B/32).
- Identity similarity: cosine of ArcFace embeddings of two images (1 = same identity).
- AU accuracy: the fraction of edits that show every AU of the target expression, with the
  preview tier's presence thresholds and success rule (guidance/au_critic.py), measured on the
  mesh instead of by OpenFace on images.
"""

from __future__ import annotations

import torch

from faceedit_core.au.critic import success
from faceedit_core.errors import InputError


@torch.no_grad()
def clip_score(clip, images: torch.Tensor, prompts: str | list[str]) -> torch.Tensor:
    """images [B,3,H,W] in [-1,1], one prompt or B prompts -> scores [B] (100 x cosine)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if len(prompts) not in (1, images.shape[0]):
        raise InputError(f"prompts: give 1 or {images.shape[0]} (one per image), got {len(prompts)}")
    e_image = clip.encode_images(images)
    e_text = clip.encode_text(prompts).to(e_image)
    return 100.0 * (e_image * e_text).sum(-1)


@torch.no_grad()
def identity_similarity(net, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity [B] of ArcFace identities of images_a and images_b [B,3,H,W] in [-1,1]."""
    if images_a.shape != images_b.shape:
        raise InputError(f"images_a {tuple(images_a.shape)} and images_b {tuple(images_b.shape)} must have one shape")
    return net.similarity(images_a, images_b)


def au_accuracy(intensities: dict[str, torch.Tensor], target_aus) -> float:
    """Fraction of the batch in which every AU of target_aus is present; intensities {AU: [B]}."""
    target_aus = list(target_aus)
    unknown = [a for a in target_aus if a not in intensities]
    if unknown:
        raise InputError(f"target_aus {unknown} are not measured (known: {sorted(intensities)})")
    return success(intensities, target_aus).float().mean().item()
