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

from .errors import Cancelled
from .flame.layer import FlameLayer
from .guidance.au_critic import AUS, au_intensities, find_probes
from .mappers import DualMappers, MapperConfig
from .params import FlameParams

# AUs that come along with a target AU on any face (FACS co-occurrences), never penalised
COMPANIONS = {"AU26": {"AU25"}, "AU43": {"AU7"}, "AU12": {"AU6"}, "AU4": {"AU7", "AU43"}, "AU23": {"AU24"},
              "AU24": {"AU23"}, "AU9": {"AU4", "AU7"}}


@dataclass
class PreviewTrainConfig:
    steps: int = 400
    batch: int = 32
    lr: float = 3e-3
    l2_weight: float = 0.02          # lambda_L2 on ||dpsi||^2
    spurious_weight: float = 0.5     # weight of the hinge on AUs outside the target
    n_shape_active: int = 40         # identity coefficients sampled N(0,1); the rest stay zero
    start_prob: float = 0.25         # chance that a component is active in a starting expression
    start_max: float = 0.5           # starting component weights ~ U(0, start_max)
    seed: int = 0


class AUObjective:
    """Scores expressions of a FLAME model against AU targets, on the landmark subset."""

    def __init__(self, layer: FlameLayer, n_components: int):
        with torch.no_grad():
            neutral = layer(FlameParams.zeros(1, layer.n_shape, layer.n_exp))
            probes = find_probes(neutral.vertices[0], neutral.landmarks[0])
        self.subset = layer.subset(torch.cat([probes.cheek, probes.nose, probes.chin]))
        remap = self.subset.remap
        self.probes = type(probes)(remap[probes.cheek], remap[probes.nose], remap[probes.chin])
        self.n_components = n_components
        self.n_exp = layer.n_exp
        self._last_neutral: tuple[torch.Tensor, tuple] | None = None  # (shape and eye pose [B,S+6], neutral)

    def intensities(self, params: FlameParams, neutral: tuple[torch.Tensor, torch.Tensor] | None = None,
                    posed: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
        """{AU: [B]} of params against the same identities with zero expression and jaw.

        posed: (full-mesh vertices [B,V,3], landmarks [B,68,3]) already computed for params in the
        head frame (global pose, neck and translation zero), to skip posing the subset again.
        """
        if neutral is None:
            neutral = self._neutral_of_identity(params)
        if posed is None:
            verts, lms = self.subset(_head_frame(params))
        else:
            verts, lms = posed[0][:, self.subset.vertex_ids], posed[1]
        return au_intensities(lms, neutral[1], verts, neutral[0], self.probes)

    def neutral(self, params: FlameParams) -> tuple[torch.Tensor, torch.Tensor]:
        p = _head_frame(params)
        return self.subset(p.replace(expression=torch.zeros_like(p.expression), jaw_pose=torch.zeros_like(p.jaw_pose)))

    def _neutral_of_identity(self, params: FlameParams) -> tuple[torch.Tensor, torch.Tensor]:
        """`neutral` without gradient, kept for the last identity: it depends only on the shape
        and eye pose, and repeated edits of one face would otherwise pose it every time."""
        key = torch.cat([params.shape, params.eye_pose], 1).detach()
        last = self._last_neutral
        if (last is not None and last[0].shape == key.shape and last[0].device == key.device
                and last[0].dtype == key.dtype and torch.equal(last[0], key)):
            return last[1]
        with torch.no_grad():
            neutral = self.neutral(params)
        self._last_neutral = (key.clone(), neutral)
        return neutral


def _head_frame(params: FlameParams) -> FlameParams:
    """The same face with global pose, neck and translation zeroed (expressions do not depend on them)."""
    z = torch.zeros_like
    return params.replace(global_pose=z(params.global_pose), neck_pose=z(params.neck_pose), transl=z(params.transl))


def au_loss(au: dict, start_au: dict, target: dict[str, float], spurious_weight: float) -> torch.Tensor:
    """[B]: squared hinge up to each target AU, plus a hinge on other AUs rising above where they started."""
    allowed = set(target)
    for a in target:
        allowed |= COMPANIONS.get(a, set())
    loss = 0.0
    for a in AUS:
        if a in target:
            loss = loss + torch.relu(target[a] - au[a]) ** 2 + 0.1 * (au[a] - target[a]) ** 2
        elif a not in allowed:
            loss = loss + spurious_weight * torch.relu(au[a] - torch.clamp(start_au[a], min=0.3)) ** 2
    return loss


def sample_batch(cfg: PreviewTrainConfig, n_shape: int, n_exp: int, n_components: int,
                 generator: torch.Generator) -> FlameParams:
    """Random identities and starting expressions (a few active components, a nearly closed jaw)."""
    B = cfg.batch
    p = FlameParams.zeros(B, n_shape, n_exp)
    k = min(cfg.n_shape_active, n_shape)
    p.shape[:, :k] = torch.randn(B, k, generator=generator)
    active = torch.rand(B, n_components, generator=generator) < cfg.start_prob
    p.expression[:, :n_components] = active * torch.rand(B, n_components, generator=generator) * cfg.start_max
    p.jaw_pose[:, 0] = torch.rand(B, generator=generator) * 0.05
    return p


def train_emotion_mapper(layer: FlameLayer, target: dict[str, float], n_components: int,
                         cfg: PreviewTrainConfig = PreviewTrainConfig(),
                         progress: Callable[[dict], None] | None = None,
                         cancel: Callable[[], bool] | None = None) -> tuple[DualMappers, dict]:
    """Train one Emotion Mapper for an AU target; returns the mapper and a summary dict."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    objective = AUObjective(layer, n_components)
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
        loss_l2 = (dpsi ** 2).sum(1).mean()
        loss = loss_au + cfg.l2_weight * loss_l2
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if progress is not None and (step % 20 == 0 or step == cfg.steps - 1):
            progress({"stage": "train emotion mapper", "step": step + 1, "total": cfg.steps,
                      "loss": loss.item(), "loss_au": loss_au.item(), "loss_l2": loss_l2.item()})
    summary = {"config": asdict(cfg), "target": target, "loss_first": history[0], "loss_last": history[-1],
               "loss_history": history[:: max(1, len(history) // 50)]}
    return mapper, summary
