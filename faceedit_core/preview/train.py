"""Preview tier: train an Emotion Mapper for one prompt against the geometric AU critic.

The mapper (the Dual Mappers' expression branch; no texture latent here) maps a starting
expression psi [B,100] to a residual dpsi. It is trained over random identities and random
starting expressions so that the edited mesh shows every target AU (hinge towards the target),
adds no action that was not there (hinge on the other AUs), and moves little (the paper's L2
term). Only the landmark and probe vertices are posed during training (FlameSubset): exact and
about ten times cheaper than the full mesh.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from faceedit_core.au.objective import AUObjective, au_loss
from faceedit_core.errors import Cancelled
from faceedit_core.flame.layer import FlameLayer
from faceedit_core.mappers import DualMappers, MapperConfig
from faceedit_core.params import FlameParams


@dataclass
class PreviewTrainConfig:
    steps: int = 400
    batch: int = 32
    lr: float = 3e-3
    l2_weight: float = 0.02  # lambda_L2 on ||dpsi||^2
    spurious_weight: float = 0.5  # weight of the hinge on AUs outside the target
    n_shape_active: int = 40  # identity coefficients sampled N(0,1); the rest stay zero
    start_prob: float = 0.25  # chance that a component is active in a starting expression
    start_max: float = 0.5  # starting component weights ~ U(0, start_max)
    seed: int = 0


def sample_batch(
    cfg: PreviewTrainConfig, n_shape: int, n_exp: int, n_components: int, generator: torch.Generator
) -> FlameParams:
    """Random identities and starting expressions (a few active components, a nearly closed jaw)."""
    B = cfg.batch
    p = FlameParams.zeros(B, n_shape, n_exp)
    k = min(cfg.n_shape_active, n_shape)
    p.shape[:, :k] = torch.randn(B, k, generator=generator)
    active = torch.rand(B, n_components, generator=generator) < cfg.start_prob
    p.expression[:, :n_components] = active * torch.rand(B, n_components, generator=generator) * cfg.start_max
    p.jaw_pose[:, 0] = torch.rand(B, generator=generator) * 0.05
    return p


def train_emotion_mapper(
    layer: FlameLayer,
    target: dict[str, float],
    n_components: int,
    cfg: PreviewTrainConfig = PreviewTrainConfig(),
    progress: Callable[[dict], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[DualMappers, dict]:
    """Train one Emotion Mapper for an AU target; returns the mapper and a summary dict."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    objective = AUObjective(layer)
    mapper = DualMappers(MapperConfig(n_exp=layer.n_exp, texture_branch=False, cross_attention=False))
    opt = torch.optim.Adam(mapper.parameters(), lr=cfg.lr)
    history = []
    for step in range(cfg.steps):
        if cancel is not None and cancel():
            raise Cancelled(f"training cancelled at step {step}")
        start = sample_batch(cfg, layer.n_shape, layer.n_exp, n_components, gen)
        with torch.no_grad():
            neutral = objective.neutral(start)
            start_au = objective.intensities(start, neutral)
        _, dpsi = mapper(None, start.expression)
        edited = start.replace(expression=start.expression + dpsi)
        au = objective.intensities(edited, neutral)
        loss_au = au_loss(au, start_au, target, cfg.spurious_weight).mean()
        loss_l2 = (dpsi**2).sum(1).mean()
        loss = loss_au + cfg.l2_weight * loss_l2
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if progress is not None and (step % 20 == 0 or step == cfg.steps - 1):
            progress(
                {
                    "stage": "train emotion mapper",
                    "step": step + 1,
                    "total": cfg.steps,
                    "loss": loss.item(),
                    "loss_au": loss_au.item(),
                    "loss_l2": loss_l2.item(),
                }
            )
    summary = {
        "config": asdict(cfg),
        "target": target,
        "loss_first": history[0],
        "loss_last": history[-1],
        "loss_history": history[:: max(1, len(history) // 50)],
    }
    return mapper, summary
