"""Preview tier: train the Emotion Mapper of one head, conditioned on the AU target, against the AU critic.

One network per head (mappers.ConditionedMapper) maps (starting expression psi, jaw and eye pose,
the identity as its neutral landmarks describe it (AUObjective.identity), target AU vector) to a
residual: expression dpsi (the head's first n_edit coefficients), a jaw rotation (open, sideways)
and a gaze rotation. It is trained once per head over random identities, random starting
expressions and random targets (lexicon entries on random sides and intensities, alone or in pairs,
random sets of actions, and the hard targets more often: HARD_TARGETS), so that afterwards any prompt the
lexicon understands edits with one forward pass. Losses per item (au/objective.channel_loss):
squared hinge up to each target channel, a hinge on the other channels rising (FACS companions
allowed), the change of left-right difference where both sides share a target (symmetric stays
symmetric, one-sided stays one-sided), the paper's L2 term on dpsi, a small one on the rotations,
and a hinge keeping the coefficients in range: [0, 1] for heads whose coefficients are activations,
|psi| <= pca_bound for PCA heads (FLAME's coefficients are about N(0,1); the editor refuses past 10).

`train_preview_mapper(head, cfg)` trains the head's mapper; with `target=` it trains for that one
target only (the per-prompt mapper of earlier versions; from `init=` it is a fine-tune). With
`checkpoint=STEM`, a cancelled run saves its state there (storage/checkpoints.py) and the next run
with the same head and configuration resumes from it, to the same mapper an uninterrupted run makes.
Only the landmark and probe vertices are posed (FlameSubset): exact and about ten times cheaper.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from faceedit_core.au.critic import CHANNELS, GAZE, LATERAL, MIDLINE, SIDES, base_au, expand_target, side_of
from faceedit_core.au.objective import (
    CHANNEL_INDEX,
    IDENTITY_FEATURES,
    AUObjective,
    channel_loss,
    stack_channels,
    target_vector,
)
from faceedit_core.errors import Cancelled, InputError
from faceedit_core.mappers import ConditionedMapper, ConditionedMapperConfig
from faceedit_core.params import FlameParams
from faceedit_core.preview.head import PreviewHead
from faceedit_core.preview.lexicon import ENTRIES
from faceedit_core.preview.text_to_au import sided_aus
from faceedit_core.storage import checkpoints

# actions that cannot show together (on one side, for lateral ones): random targets avoid them
CONFLICTS = {
    frozenset(p)
    for p in (
        ("AU12", "AU15"),
        ("AU5", "AU43"),
        ("AU5", "AU7"),
        ("AU17", "AU26"),
        ("AU17", "AU27"),
        ("AU17", "AU25"),
        ("AU24", "AU25"),
        ("AU24", "AU26"),
        ("AU24", "AU27"),
        ("AU18", "AU20"),
        ("AU20", "AU23"),
        ("AU12", "AU18"),
        ("AU61", "AU62"),
        ("AU63", "AU64"),
    )
}
INTENSITY_CHOICES = (0.4, 0.5, 0.6, 1.0, 1.0, 1.0, 1.0, 1.2, 1.3, 1.5)
# targets drawn at hard_prob besides the mix: eye closure, alone or under lowered brows, on random sides. The
# critic reads closure against each identity's own lid aperture, so its extent varies most between faces
# (the ICT head's: 0.07-0.13 IOD), and the mix gave it 4 % of targets, 0.6 % under a lowered brow: on the
# ICT head's PCA variant the mapper then closed the eyes of 0.81 (with a frown 0.70) of the identities a
# per-prompt mapper closed 0.91 of (docs/evaluation.md)
HARD_TARGETS = (("AU43",), ("AU43", "AU4"))
GAZE_CHANNELS = [CHANNEL_INDEX[a] for a in GAZE]
JAW_CHANNELS = [CHANNEL_INDEX[a] for a in ("AU25", "AU26", "AU27")]  # lips part, jaw drop, mouth stretch
CHECKPOINT_FORMAT = "faceedit.preview_train_checkpoint"


@dataclass
class PreviewTrainConfig:
    steps: int = 3000
    batch: int = 64
    lr: float = 2e-3
    lr_final: float = 0.05  # cosine decay to lr * lr_final
    hidden: int = 256
    layers: int = 4
    l2_weight: float = 0.001  # lambda_L2 on ||dpsi||^2
    pose_weight: float = 0.2  # on the squared jaw and gaze rotations (radians)
    spurious_weight: float = 2.0  # the hinge on channels outside the target
    symmetry_weight: float = 2.0  # the change of left-right difference where both sides share a target
    target_weight: float = 1.0  # the hinge up to the target
    target_margin: float = 0.1  # the hinge aims this far above the target (presence thresholds are not the top)
    range_weight: float = 2.0  # coefficients outside [0, 1] (activation heads) or beyond pca_bound (PCA heads)
    pca_bound: float = 6.0  # PCA heads: |coefficient| an edit reaches (x 1.5 intensity stays under params.LIMITS 10)
    n_shape_active: int = 40  # identity coefficients sampled N(0,1); the rest stay zero
    neutral_prob: float = 0.3  # share of items starting from the neutral expression
    start_scale: float = 0.5  # pca heads: starting coefficients ~ N(0, start_scale^2)
    start_prob: float = 0.25  # activation heads: chance that a component is active at the start
    start_max: float = 0.5  # activation heads: starting weights ~ U(0, start_max)
    lexicon_prob: float = 0.75  # share of targets drawn from the lexicon (the rest: random action sets)
    hard_prob: float = 0.15  # share of targets drawn from HARD_TARGETS before the lexicon / random sets
    seed: int = 0


# ---------------------------------------------------------------------------- sampling
def sample_start(cfg: PreviewTrainConfig, head: PreviewHead, batch: int, gen: torch.Generator) -> FlameParams:
    """Random identities and starting expressions (some neutral), a nearly closed jaw, eyes ahead.

    Shape and expression are the prefixes that can be non-zero (n_shape_active, n_edit wide): FLAME
    takes shorter vectors as prefixes, and posing them is several times cheaper than 300 + 100."""
    layer = head.layer
    k, n = min(cfg.n_shape_active, layer.n_shape), head.n_edit
    p = FlameParams.zeros(batch, k, n)
    p.shape[:] = torch.randn(batch, k, generator=gen)
    if head.coefficients == "pca":
        start = torch.randn(batch, n, generator=gen) * cfg.start_scale
    else:
        active = torch.rand(batch, n, generator=gen) < cfg.start_prob
        start = active * torch.rand(batch, n, generator=gen) * cfg.start_max
    moving = torch.rand(batch, 1, generator=gen) >= cfg.neutral_prob
    p.expression[:, :n] = start * moving
    p.jaw_pose[:, 0] = torch.rand(batch, generator=gen) * 0.05 * moving[:, 0]
    return p


def _conflicts(channels: dict[str, float], other: dict[str, float] | None = None) -> bool:
    """Whether two channels of `channels` (with `other`: one of each) are actions that cannot show together."""
    names = list(channels)
    if other is None:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    else:
        pairs = [(a, b) for a in names for b in other]
    for a, b in pairs:
        if frozenset((base_au(a), base_au(b))) in CONFLICTS:
            sa, sb = side_of(a), side_of(b)
            if sa is None or sb is None or sa == sb:
                return True
    return False


class TargetSampler:
    """Random AU targets [K] (CHANNELS order) covering what prompts ask: lexicon entries on random
    sides and intensities, alone or in pairs, random sets of one to three actions, and (hard_prob)
    the hard ones, HARD_TARGETS on random sides and intensities."""

    def __init__(self, cfg: PreviewTrainConfig, sides: bool, gaze: bool, seed: int):
        self.cfg, self.sides, self.gaze = cfg, sides, gaze
        self.rng = np.random.default_rng(seed)
        self.entries = [e for e in ENTRIES if gaze or not any(a in GAZE for a in e.aus)]
        self.actions = [a for a in LATERAL + MIDLINE + (GAZE if gaze else ())]

    def _side(self, entry_sides: str) -> str | None:
        if entry_sides in ("one", "direction"):
            return self.rng.choice(SIDES) if self.sides or entry_sides == "direction" else "both"
        if not self.sides:
            return None
        return self.rng.choice(["both", "both", "both", "L", "R"])

    def _hard(self) -> dict[str, float]:
        """One of HARD_TARGETS, each action at its own intensity, all on one random side (or both)."""
        side = self._side("both")
        aus = HARD_TARGETS[self.rng.integers(len(HARD_TARGETS))]
        suffix = "" if side in (None, "both") else f"_{side}"
        return expand_target({f"{a}{suffix}": float(self.rng.choice(INTENSITY_CHOICES)) for a in aus})

    def one(self) -> dict[str, float]:
        if self.rng.random() < self.cfg.hard_prob:
            return self._hard()
        for _ in range(20):
            channels: dict[str, float] = {}
            if self.rng.random() < self.cfg.lexicon_prob:
                # an entry is a prototype FACS scores together (angry: AU5 with AU7), so only a second
                # entry is checked against it; checking the entry itself had never drawn angry
                clash = False
                for _ in range(1 if self.rng.random() < 0.7 else 2):
                    entry = self.entries[self.rng.integers(len(self.entries))]
                    scale = float(self.rng.choice(INTENSITY_CHOICES))
                    part = {
                        ch: min(v * scale, 1.5)
                        for ch, v in expand_target(sided_aus(entry, self._side(entry.sides))).items()
                    }
                    clash = clash or _conflicts(part, channels)
                    for ch, v in part.items():
                        channels[ch] = max(channels.get(ch, 0.0), v)
            else:
                for a in self.rng.choice(self.actions, size=self.rng.integers(1, 4), replace=False):
                    value = float(self.rng.uniform(0.4, 1.3))
                    side = self.rng.choice(["both", "L", "R"]) if (a in LATERAL and self.sides) else "both"
                    name = a if side == "both" else f"{a}_{side}"
                    for ch, v in expand_target({name: value}).items():
                        channels[ch] = max(channels.get(ch, 0.0), v)
                clash = _conflicts(channels)
            if not clash:
                return channels
        return channels

    def batch(self, n: int) -> torch.Tensor:
        out = torch.zeros(n, len(CHANNELS))
        for i in range(n):
            for ch, v in self.one().items():
                out[i, CHANNEL_INDEX[ch]] = v
        return out

    def pool(self, n: int, gen: torch.Generator) -> Callable[[int], torch.Tensor]:
        """A draw(batch) function over n targets sampled once (sampling is Python, drawing is not)."""
        bank = self.batch(n)
        return lambda batch: bank[torch.randint(n, (batch,), generator=gen)]


# ---------------------------------------------------------------------------- the edit
def pose_input(params: FlameParams) -> torch.Tensor:
    """[B,9]: jaw (3) and eyes (6), what the mapper reads of the pose."""
    return torch.cat([params.jaw_pose, params.eye_pose], 1)


def mapper_residual(
    mapper: ConditionedMapper, params: FlameParams, target: torch.Tensor, identity: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dpsi [B,n_edit], djaw [B,2], dgaze [B,2]) of params for target [B,K] or [K]; identity
    [B, IDENTITY_FEATURES]: AUObjective.identity(params) (a mapper with n_identity 0 reads none of it)."""
    n = mapper.config.n_exp
    t = target.to(params.expression).expand(params.batch_size, -1)
    identity = identity.to(params.expression)
    if not mapper.config.n_identity:  # a mapper of MAPPER_VERSION 2 or earlier: identity-blind
        identity = identity[:, :0]
    return mapper(params.expression[:, :n], pose_input(params), identity, t)


def apply_residual(
    params: FlameParams, dpsi: torch.Tensor, djaw: torch.Tensor, dgaze: torch.Tensor, intensity: float = 1.0
) -> FlameParams:
    """params with s x the residual added: expression[:, :n] += s dpsi, jaw (x, y) += s djaw, both eyes'
    (x, y) rotation += s dgaze."""
    pad = lambda t, w: torch.nn.functional.pad(t, (0, w - t.shape[1]))  # noqa: E731
    gaze = torch.cat([dgaze, torch.zeros_like(dgaze[:, :1])], 1)
    return params.replace(
        expression=params.expression + intensity * pad(dpsi, params.n_exp),
        jaw_pose=params.jaw_pose + intensity * pad(djaw, 3),
        eye_pose=params.eye_pose + intensity * torch.cat([gaze, gaze], 1),
    )


# ---------------------------------------------------------------------------- training
def new_mapper(head: PreviewHead, cfg: PreviewTrainConfig) -> ConditionedMapper:
    config = ConditionedMapperConfig(
        n_exp=head.n_edit, n_target=len(CHANNELS), n_identity=IDENTITY_FEATURES, hidden=cfg.hidden, layers=cfg.layers
    )
    return ConditionedMapper(config)


class _Run:
    """The state a resumed run needs: mapper, Adam, its cosine schedule, the batch generator `gen`,
    the global torch RNG, the step, the loss history and the seconds spent. The target pool is not
    in it: it is drawn once from the seed before the first step, so drawing it again is exact."""

    def __init__(self, head: PreviewHead, cfg: PreviewTrainConfig, init: ConditionedMapper | None):
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.mapper = new_mapper(head, cfg) if init is None else copy.deepcopy(init)
        self.mapper.train()
        self.opt = torch.optim.Adam(self.mapper.parameters(), lr=cfg.lr if init is None else 0.1 * cfg.lr)  # gently
        decay = lambda step: cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))  # noqa: E731
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, decay)
        self.step, self.history, self.seconds = 0, [], 0.0

    def save(self, stem: Path, key: dict) -> Path:
        """Write the state as checkpoint `stem` (storage.checkpoints.training_tensors; Adam's groups as JSON)."""
        tensors = checkpoints.training_tensors(self.mapper, self.opt)
        tensors |= {"rng.gen": self.gen.get_state(), "rng.torch": torch.get_rng_state()}
        manifest = {
            "format": CHECKPOINT_FORMAT,
            "key": key,
            "step": self.step,
            "history": self.history,
            "seconds": self.seconds,
            "adam_groups": self.opt.state_dict()["param_groups"],
            "schedule": self.sched.state_dict(),
        }
        return checkpoints.save(stem, tensors, manifest)

    def resume(self, stem: Path, key: dict) -> bool:
        """Take the state of checkpoint `stem` when it was saved for `key` (the head and the
        configuration); False, leaving the fresh state, when there is none, it is another run's or it
        is damaged (a cache: the run starts over and its next checkpoint replaces it)."""
        try:
            tensors, manifest = checkpoints.load(stem)
        except InputError:
            return False
        if manifest.get("format") != CHECKPOINT_FORMAT or manifest.get("key") != key:
            return False
        checkpoints.restore_training(tensors, self.mapper, self.opt, manifest["adam_groups"])
        self.sched.load_state_dict(manifest["schedule"])
        self.gen.set_state(tensors["rng.gen"])
        torch.set_rng_state(tensors["rng.torch"])
        self.step, self.history, self.seconds = manifest["step"], manifest["history"], manifest["seconds"]
        return True


def run_key(head: PreviewHead, cfg: PreviewTrainConfig) -> dict:
    """What a checkpoint must have been saved for to be resumed: the head and the training configuration."""
    return {"head": head.head_hash, "n_edit": head.n_edit, "coefficients": head.coefficients, "config": asdict(cfg)}


def train_preview_mapper(
    head: PreviewHead,
    cfg: PreviewTrainConfig = PreviewTrainConfig(),
    target: dict[str, float] | None = None,
    init: ConditionedMapper | None = None,
    progress: Callable[[dict], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    objective: AUObjective | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> tuple[ConditionedMapper, dict]:
    """Train the head's conditioned Emotion Mapper (or, with `target`, a mapper for that target only,
    from `init` when given); returns (mapper in eval mode, summary). Cancelled between steps.

    checkpoint: a checkpoint stem for the head's mapper (not with target or init): a cancelled run
    saves its state there, and a run for the same head and configuration resumes from it (summary
    'resumed_from': the step; progress restarts there). The caller removes it once the mapper is kept."""
    if checkpoint is not None and (target is not None or init is not None):
        raise ValueError("checkpoint: only the head's mapper (no target, no init) resumes")
    objective = objective or AUObjective(head.layer)  # no RNG: the seeds below fix the run
    run, key = _Run(head, cfg, init), run_key(head, cfg)
    fixed = None if target is None else target_vector(target)
    if fixed is None:
        sampler = TargetSampler(cfg, bool(head.sides), objective.has_gaze, cfg.seed + 1)
        draw = sampler.pool(min(8192, cfg.steps * 8), run.gen)
    resumed_from = run.step if checkpoint is not None and run.resume(Path(checkpoint), key) else 0
    t0 = time.perf_counter() - run.seconds
    mapper, opt, sched, gen, history = run.mapper, run.opt, run.sched, run.gen, run.history
    stage = "train the head's Emotion Mapper" if target is None else "fine-tune the Emotion Mapper for one target"
    for step in range(resumed_from, cfg.steps):
        if cancel is not None and cancel():
            if checkpoint is None:
                raise Cancelled(f"training cancelled at step {step} of {cfg.steps}")
            run.step, run.seconds = step, time.perf_counter() - t0
            path = run.save(Path(checkpoint), key)
            where = f"checkpoint {path}; the same command resumes from it"
            raise Cancelled(f"training cancelled at step {step} of {cfg.steps} ({where})")
        start = sample_start(cfg, head, cfg.batch, gen)
        targets = draw(cfg.batch) if fixed is None else fixed.expand(cfg.batch, -1)
        with torch.no_grad():
            neutral = objective.neutral(start)
            start_au = stack_channels(objective.intensities(start, neutral))
            identity = objective.identity(start, neutral)
        dpsi, djaw, dgaze = mapper_residual(mapper, start, targets, identity)
        edited = apply_residual(start, dpsi, djaw, dgaze)
        au = stack_channels(objective.intensities(edited, neutral))
        loss_au = channel_loss(
            au, start_au, targets, cfg.spurious_weight, cfg.symmetry_weight, cfg.target_weight, cfg.target_margin
        ).mean()
        loss_l2 = (dpsi**2).sum(1).mean()
        closing = torch.relu(-edited.jaw_pose[:, 0]) ** 2  # the jaw does not close past its rest
        # no prompt asks the jaw sideways; the eyes turn only when the target says so
        gaze_weight = 1 + 9 * (targets[:, GAZE_CHANNELS] == 0).all(1)
        # nor does the jaw open unless the target parts the lips or drops it (a sad mouth is not an open one)
        jaw_weight = 1 + 49 * (targets[:, JAW_CHANNELS] == 0).all(1)
        loss_pose = (
            (jaw_weight * djaw[:, 0] ** 2 + 10 * djaw[:, 1] ** 2).mean()
            + (gaze_weight * (dgaze**2).sum(1)).mean()
            + 10 * closing.mean()
        )
        loss = loss_au + cfg.l2_weight * loss_l2 + cfg.pose_weight * loss_pose
        psi = edited.expression[:, : head.n_edit]
        if head.coefficients == "activations":
            outside = torch.relu(-psi) ** 2 + torch.relu(psi - 1) ** 2
        else:  # PCA coefficients are standard deviations: an edit stays within pca_bound of them
            outside = torch.relu(psi.abs() - cfg.pca_bound) ** 2
        loss = loss + cfg.range_weight * outside.sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if progress is not None and (step % 25 == 0 or step in (resumed_from, cfg.steps - 1)):
            progress(
                {
                    "stage": stage,
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
        "seconds": round(time.perf_counter() - t0, 2),
        "resumed_from": resumed_from,
        "loss_first": history[0],
        "loss_last": float(np.mean(history[-max(1, len(history) // 20) :])),
        "loss_history": history[:: max(1, len(history) // 50)],
    }
    return mapper.eval(), summary


@torch.no_grad()
def edit_accuracy(
    mapper: ConditionedMapper, objective: AUObjective, params: FlameParams, target: dict[str, float]
) -> dict[str, float]:
    """AU accuracy (every target AU present at the intensity asked: au.critic.target_met, the paper's
    rule for full targets), mean left-right asymmetry of the lateral actions and the mean AU reading
    of the targeted channels, over params [B]."""
    from faceedit_core.au.critic import asymmetry, target_met

    identity = objective.identity(params)
    edited = apply_residual(params, *mapper_residual(mapper, params, target_vector(target), identity))
    au = objective.intensities(edited)
    return {
        "accuracy": target_met(au, target).float().mean().item(),
        "asymmetry": asymmetry(au).mean().item(),
        "reading": float(np.mean([au[c].mean().item() for c in expand_target(target)])),
    }
