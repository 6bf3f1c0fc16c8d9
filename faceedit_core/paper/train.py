"""Paper tier: the text-guided optimisation of one Dual-Mapper set per prompt (paper Sec. III-C, IV-A).

Each step draws B latent codes from a seeded pool (z -> ws through Next3D's mapping with the
frontal conditioning camera, truncated below Next3D's cutoff 14 only) and B starting FLAME
parameter sets (EMOCA fits of reference images, or the neutral face: the paper's "w/o ref"),
applies the mappers (w' = w + dw; psi'[:50] = psi[:50] + dpsi, the 50 coefficients EMOCA fits
and Next3D was trained with), renders the original and the edited head with Next3D from the same
camera and the same ray-sampling draws (a zero edit renders the same image) and minimises Eq. 11:

    L = l_clip (1 - cos(CLIP(I_edit), PAE target of CLIP(I_init)))      Eq. 7-9
      + l_id   (1 - cos(ArcFace(I_edit), ArcFace(I_init)))               Eq. 10
      + l_l2   (mean dw^2 over the edited levels + mean dpsi^2)          Eq. 6 (MSE form)
      + l_au   (geometric AU hinge of the preview tier; optional, 0 by default)

with Adam on the mapper parameters only. Next3D, CLIP and ArcFace are frozen for gradients
(requires_grad_(False) for the run): no parameter gradient is computed or kept for them, and a ws
half the mappers do not edit stays out of the backward pass (generator.edited_halves). Next3D's
float16 super-resolution blocks run in float32 while training (see `training_precision`).
Checkpoints every `checkpoint_every` steps (and on cancel) hold the mapper, Adam's state and both
random number generators' states, so a resumed run continues bit for bit where the interrupted
one stopped (on the same device and thread count).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from faceedit_core.errors import Cancelled, InputError
from faceedit_core.mappers import DualMappers, MapperConfig
from faceedit_core.paper import objective as obj
from faceedit_core.paper.latents import TRUNCATION_CUTOFF, TRUNCATION_PSI
from faceedit_core.paper.mapper_sets import params_sha256, save_mapper_set, slug
from faceedit_core.paper.models import PaperModels
from faceedit_core.params import FlameParams
from faceedit_core.render.cameras import orbit
from faceedit_core.storage import checkpoints
from faceedit_core.storage.records import bounded, check_bounds

if TYPE_CHECKING:
    from faceedit_core.next3d.renderer import Uniforms

CHECKPOINT_FORMAT = "faceedit.paper_train_checkpoint"
EXP_WIDTH = 50  # expression coefficients EMOCA fits and Next3D's training meshes used
BASES = ("gram_schmidt", "plain", "pca", "none")
# fields that may differ between an interrupted run and its resumption
RESUMABLE_CHANGES = ("steps", "checkpoint_every")


@dataclass
class PaperTrainConfig:
    """One prompt's training run. Defaults follow the paper where it says, its lineage where not.

    steps, batch: the paper trains about 14 h per expression on an RTX 4090 without giving a
        count; StyleCLIP's latent mapper uses batch 2 (its 50k steps are a ceiling, not a need).
    lr: Adam 5e-4. CLIP-PAE's reference uses 1e-3 for direct latent optimisation; through a mapper
        the first Adam steps move every ws level at once, and on the tiny Next3D 3e-3 raised the
        loss over 8 steps while 5e-4 lowered it (docs/performance.md).
    weights: Eq. 11 (clip 1.0, identity 0.15 from the paper's 0.15-0.20 sweep, l2 0.8 as in
        StyleCLIP's MSE form, au 0 = off).
    basis: PAE basis ("gram_schmidt", "plain", "pca", or "none" = no projection, the paper's
        "w/o projection" ablation: the target is the prompt's text embedding); basis_prompts None = the expression
        prompts (the emotion corpus for "pca"); alpha 8.0 as in CLIP-PAE's own scripts.
    truncation_psi, truncation_cutoff: of the mapping network; only the rows below the cutoff
        (Next3D's 14: the static tri-plane, mouth, blending and super-resolution rows) are
        truncated, as Next3D's own sampling does; the texture rows the mapper edits are not.
    exp_width: the Emotion Mapper reads and edits psi[:, :exp_width] (50: EMOCA's width and the
        expression parameters Next3D's training meshes had); the coefficients beyond stay as given.
    n_latents: size of the latent pool (the paper samples 5,000 codes per expression).
    yaw_deg: render views drawn uniformly in [-yaw_deg, yaw_deg] at pitch 0 (0 = frontal only).
    neutral: start from the neutral expression ("w/o ref"): the references (if any) give shapes only.
    au_target: {AU: intensity} for the optional AU term (None: parsed from the prompt when used).
    mapper: the Dual Mappers' configuration (ablation switches, ws levels); n_exp is set from FLAME.
    """

    prompt: str = "A person who is smiling"
    steps: int = bounded(20000, 1, 10_000_000)
    batch: int = bounded(2, 1, 256)
    lr: float = 5e-4
    weights: obj.ObjectiveWeights = field(default_factory=obj.ObjectiveWeights)
    basis: str = "gram_schmidt"
    basis_prompts: tuple[str, ...] | None = None
    alpha: float = 8.0
    truncation_psi: float = TRUNCATION_PSI
    truncation_cutoff: int | None = TRUNCATION_CUTOFF
    exp_width: int = bounded(EXP_WIDTH, 1, 400)
    n_latents: int = bounded(5000, 1, 1_000_000)
    yaw_deg: float = 0.0
    neutral: bool = False
    au_target: dict[str, float] | None = None
    mapper: MapperConfig = field(default_factory=MapperConfig)
    seed: int = 0
    checkpoint_every: int = bounded(500, 1, 10_000_000)

    def validate(self) -> "PaperTrainConfig":
        check_bounds(self, "training field")
        if self.basis not in BASES:
            raise InputError(f"training field 'basis' = {self.basis!r} is not one of {BASES}")
        if not (self.lr > 0 and 0 <= self.yaw_deg <= 90 and 0 < self.truncation_psi <= 1):
            raise InputError("training fields need lr > 0, yaw_deg within 0..90, truncation_psi within (0, 1]")
        if not self.prompt.strip():
            raise InputError("training field 'prompt' is empty")
        if self.truncation_cutoff is not None and not 0 <= self.truncation_cutoff <= 28:
            raise InputError(f"training field 'truncation_cutoff' = {self.truncation_cutoff} is outside 0..28")
        if self.basis_prompts is not None and (
            not self.basis_prompts or not all(isinstance(t, str) and t.strip() for t in self.basis_prompts)
        ):
            raise InputError("training field 'basis_prompts' must be a non-empty list of non-empty prompts")
        return self

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["weights"], d["mapper"] = self.weights.to_dict(), self.mapper.to_dict()
        d["basis_prompts"] = list(self.basis_prompts) if self.basis_prompts is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PaperTrainConfig":
        d = dict(d)
        d["weights"] = obj.ObjectiveWeights.from_dict(d["weights"])
        d["mapper"] = MapperConfig.from_dict(d["mapper"])
        d["basis_prompts"] = tuple(d["basis_prompts"]) if d.get("basis_prompts") is not None else None
        return cls(**d)


@dataclass
class TrainResult:
    mapper: DualMappers
    summary: dict
    mapper_path: Path  # the mapper set's manifest (<out>/<slug>.json)
    checkpoint_path: Path  # the last checkpoint's manifest


def load_refs(folder: str | Path, n_shape: int, n_exp: int) -> FlameParams:
    """EMOCA outputs -> FlameParams [R]: `folder` holds shape.npy/exp.npy/pose.npy itself, or one
    sub-folder per reference image holding them (sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"references folder {folder} does not exist")
    dirs = (
        [folder] if (folder / "exp.npy").is_file() else sorted(p for p in folder.iterdir() if (p / "exp.npy").is_file())
    )
    if not dirs:
        raise InputError(
            f"references folder {folder} has no EMOCA outputs (sub-folders with shape.npy, exp.npy, pose.npy)"
        )
    return FlameParams.cat([FlameParams.from_emoca(d).padded(n_shape, n_exp) for d in dirs])


def starting_params(refs: FlameParams | None, neutral: bool, n_shape: int, n_exp: int) -> FlameParams:
    """The pool of starting FLAME parameters [R]: references, or neutral faces (expression and jaw
    zero, shapes from the references when given). Global pose and translation are zeroed (Next3D
    keeps the head pose in the camera)."""
    p = FlameParams.zeros(1, n_shape, n_exp) if refs is None else refs.padded(n_shape, n_exp)
    z = torch.zeros_like
    p = p.replace(global_pose=z(p.global_pose), transl=z(p.transl))
    if neutral or refs is None:
        p = p.replace(expression=z(p.expression), jaw_pose=z(p.jaw_pose))
    return p


def edit_expression(psi: torch.Tensor, dpsi: torch.Tensor) -> torch.Tensor:
    """psi [B,N] + dpsi [B,k] on the first k coefficients (k <= N); the others are left as given."""
    k = dpsi.shape[1]
    if k > psi.shape[1]:
        raise InputError(f"the Emotion Mapper edits {k} expression coefficients, the params have {psi.shape[1]}")
    if k == psi.shape[1]:
        return psi + dpsi
    return torch.cat([psi[:, :k] + dpsi, psi[:, k:]], dim=1)


def sample_ws(generator, z: torch.Tensor, c: torch.Tensor, cfg: "PaperTrainConfig") -> torch.Tensor:
    """z [B,512], conditioning cameras c [B,25] -> ws [B,28,512], truncated as Next3D does."""
    return generator.mapping(z, c, truncation_psi=cfg.truncation_psi, truncation_cutoff=cfg.truncation_cutoff)


def draw_uniforms(generator, batch: int, device) -> "Uniforms":
    """One step's ray-sampling draws (stratified jitter and importance samples) for `batch` views
    of Next3D's volume renderer, drawn from torch's generator on `device` as the renderer would;
    the initial and the edited render of a step both use them."""
    from faceedit_core.next3d.renderer import Uniforms

    R = generator.neural_rendering_resolution
    rs = generator.render_settings
    strat = torch.rand((batch, R * R, rs.depth_resolution, 1), device=device)
    di = rs.depth_resolution_importance
    imp = torch.rand((batch * R * R, di), device=device) if di > 0 else None
    return Uniforms(strat, imp)


@contextlib.contextmanager
def frozen(*modules):
    """requires_grad_(False) on every parameter of `modules` for the block; the flags are restored after."""
    params = [p for m in modules if m is not None for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


@contextlib.contextmanager
def training_precision(generator):
    """Next3D's super-resolution blocks in float32 while training when they would run in float16.

    The release runs them in float16 on CUDA ("auto"), for inference. In training the gradient of
    the CLIP and identity losses reaches every output pixel through them, and per pixel it is tiny
    (the loss is a mean over a 224^2 resize of a 512^2 image): float16's smallest normal value is
    6e-5, so without loss scaling much of it would flush to zero. They hold 2.3 M of Next3D's
    174 M parameters, so float32 costs little memory; loss scaling would instead add a scale that
    skips steps on overflow, which the checkpoints would have to carry for bit-exact resumption.
    "bf16" (float32's exponent range) and "fp32" are kept; "auto" and "fp16" become "fp32".
    """
    sr = getattr(generator, "superresolution", None)
    before = getattr(sr, "precision", None)
    try:
        if before in ("auto", "fp16"):
            sr.precision = "fp32"
        yield
    finally:
        if before is not None:
            sr.precision = before


class _Objective:
    """Eq. 11 for one batch, with the prompt's text embedding and PAE basis computed once."""

    def __init__(self, models: PaperModels, cfg: PaperTrainConfig):
        from faceedit_core.paper.pae import PAEBasis

        if models.clip is None or (cfg.weights.identity > 0 and models.arcface is None):
            raise InputError("training needs CLIP (and ArcFace when the identity weight is above 0): load them first")
        self.models, self.cfg = models, cfg
        self.basis = None if cfg.basis == "none" else PAEBasis.build(models.clip, cfg.basis_prompts, cfg.basis)
        self.au, self.au_target = None, cfg.au_target
        if cfg.weights.au > 0:
            from faceedit_core.au.objective import AUObjective

            target = cfg.au_target
            if target is None:
                from faceedit_core.preview.text_to_au import TextToAU

                target = TextToAU().parse(cfg.prompt).intensities
            self.au_target = dict(target)
            self.au = AUObjective(models.flame)

    def render(self, ws, params: FlameParams, c: torch.Tensor, uniforms=None) -> torch.Tensor:
        """ws [B,28,512] or its halves, params [B], c [B,25], ray-sampling draws -> images [B,3,H,W]
        in about [-1,1]."""
        from faceedit_core.next3d.generator import flame_inputs

        verts = flame_inputs(self.models.flame, params)
        return self.models.generator.synthesis(ws, c, verts, uniforms=uniforms)["image"]

    def __call__(self, ws, params, dws, dpsi, c, uniforms=None) -> tuple[torch.Tensor, dict[str, float]]:
        """One batch's Eq. 11: ws [B,28,512], params [B], residuals dws [B,28,512] (or None) and
        dpsi [B,k] (k = the edited prefix of psi), cameras c [B,25], and the ray-sampling draws both
        renders share (`draw_uniforms`; None draws each render's own)."""
        from faceedit_core.next3d.generator import edited_halves

        m, cfg = self.models, self.cfg
        edited = params.replace(expression=edit_expression(params.expression, dpsi))
        with torch.no_grad():
            image0 = self.render(ws, params, c, uniforms)
            target = obj.clip_target(m.clip, self.basis, image0, cfg.prompt, cfg.alpha)
        image1 = self.render(edited_halves(ws, dws, cfg.mapper.texture_levels), edited, c, uniforms)
        levels = list(cfg.mapper.texture_levels)
        terms = {
            "clip": obj.clip_loss(m.clip, image1, target),
            "l2": obj.l2_loss(None if dws is None else dws[:, levels], dpsi),
        }
        if cfg.weights.identity > 0:
            from faceedit_core.paper.arcface import identity_loss

            terms["identity"] = identity_loss(m.arcface, image1, image0)
        if self.au is not None:
            with torch.no_grad():
                neutral = self.au.neutral(params)
                start_au = self.au.intensities(params, neutral)
            terms["au"] = obj.au_term(self.au.intensities(edited, neutral), start_au, self.au_target)
        return obj.combine(terms, cfg.weights)


class _Run:
    """The mutable state of a run: mapper, optimiser, generators, step, loss history."""

    def __init__(self, models: PaperModels, cfg: PaperTrainConfig, device: torch.device):
        self.cfg = cfg
        n_exp = min(cfg.exp_width, models.flame.n_exp)
        mcfg = MapperConfig.from_dict({**cfg.mapper.to_dict(), "n_exp": n_exp})
        torch.manual_seed(cfg.seed)
        self.mapper = DualMappers(mcfg).to(device).train()
        self.opt = torch.optim.Adam(self.mapper.parameters(), lr=cfg.lr)
        self.sampler = torch.Generator().manual_seed(cfg.seed + 1)
        z_dim = getattr(models.generator, "z_dim", 512)
        self.z_pool = torch.randn(cfg.n_latents, z_dim, generator=torch.Generator().manual_seed(cfg.seed))
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.seconds = 0.0

    # ----------------------------------------------------------------- checkpoint state
    def tensors(self) -> dict[str, torch.Tensor]:
        t = checkpoints.training_tensors(self.mapper, self.opt)
        t["rng.sampler"] = self.sampler.get_state()
        t["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            t["rng.cuda"] = torch.cuda.get_rng_state()
        return t

    def restore(self, tensors: dict[str, torch.Tensor], manifest: dict) -> None:
        checkpoints.restore_training(tensors, self.mapper, self.opt, manifest["optimizer_param_groups"])
        self.sampler.set_state(tensors["rng.sampler"])
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        self.step, self.history, self.seconds = manifest["step"], manifest["history"], manifest["seconds"]


def _run_info(models: PaperModels, cfg: PaperTrainConfig, starts: FlameParams) -> dict:
    """What a checkpoint or a mapper set records about how it was trained."""
    return {
        "prompt": cfg.prompt,
        "basis": cfg.basis,
        "alpha": cfg.alpha,
        "weights": cfg.weights.to_dict(),
        "model_hashes": dict(models.hashes),
        "starts_sha256": params_sha256(starts),
        "config": cfg.to_dict(),
    }


def _check_resumable(manifest: dict, info: dict, path: Path) -> None:
    old, new = dict(manifest.get("config", {})), dict(info["config"])
    for name in RESUMABLE_CHANGES:
        old.pop(name, None), new.pop(name, None)
    for key, a, b in (
        ("config", old, new),
        ("model_hashes", manifest.get("model_hashes"), info["model_hashes"]),
        ("references", manifest.get("starts_sha256"), info["starts_sha256"]),
    ):
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            diff = (
                sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                if isinstance(a, dict) and isinstance(b, dict)
                else []
            )
            raise InputError(
                f"checkpoint {path} was made with other {key}{' (' + ', '.join(diff) + ')' if diff else ''}: "
                "use another --out folder or delete the checkpoint to start over"
            )


def _summary(run: _Run, cfg: PaperTrainConfig, resumed_from: int) -> dict:
    totals = [h["total"] for h in run.history]
    k = max(1, min(10, len(totals) // 4))
    return {
        "prompt": cfg.prompt,
        "steps": run.step,
        "resumed_from": resumed_from,
        "loss_first": sum(totals[:k]) / k,
        "loss_last": sum(totals[-k:]) / k,
        "last": run.history[-1] if run.history else {},
        "seconds": run.seconds,
        "seconds_per_step": run.seconds / max(1, run.step),
    }


def train_mappers(
    models: PaperModels,
    cfg: PaperTrainConfig,
    out: str | Path,
    refs: FlameParams | None = None,
    progress: Callable[[dict], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    resume: bool = True,
) -> TrainResult:
    """Train (or resume training) the mapper set for cfg.prompt.

    out: folder; the checkpoint goes to `out/checkpoints/<slug>.*`, the trained set to
    `out/<slug>.*` (slug of the prompt). refs: starting FLAME parameters [R] (EMOCA fits; None =
    neutral). progress gets {stage, step, total, loss, loss_clip, loss_l2, loss_identity, [loss_au],
    seconds_per_step} every step; cancel is checked between steps (a checkpoint is written, then
    Cancelled is raised).
    """
    cfg.validate()
    with frozen(models.generator, models.clip, models.arcface), training_precision(models.generator):
        return _train(models, cfg, out, refs, progress, cancel, resume)


def _train(models, cfg, out, refs, progress, cancel, resume) -> TrainResult:
    flame = models.flame
    device = flame.v_template.device
    starts = starting_params(refs, cfg.neutral, flame.n_shape, flame.n_exp)
    info = _run_info(models, cfg, starts)
    out = Path(out)
    ckpt = out / "checkpoints" / slug(cfg.prompt)
    objective = _Objective(models, cfg)
    run = _Run(models, cfg, device)
    if resume and checkpoints.manifest_path(ckpt).is_file():
        tensors, manifest = checkpoints.load(ckpt)
        _check_resumable(manifest, info, checkpoints.manifest_path(ckpt))
        run.restore(tensors, manifest)
    resumed_from = run.step
    c_cond = orbit([0.0], [0.0]).eg3d_c().to(device)

    def save_checkpoint() -> Path:
        return checkpoints.save(
            ckpt,
            run.tensors(),
            {
                **info,
                "format": CHECKPOINT_FORMAT,
                "step": run.step,
                "history": run.history,
                "seconds": run.seconds,
                "optimizer_param_groups": run.opt.state_dict()["param_groups"],
            },
        )

    ckpt_path = checkpoints.manifest_path(ckpt)
    while run.step < cfg.steps:
        if cancel is not None and cancel():
            save_checkpoint()
            raise Cancelled(f"training cancelled at step {run.step} (checkpoint {ckpt_path}; run again to resume)")
        t0 = time.perf_counter()
        B = cfg.batch
        z = run.z_pool[torch.randint(cfg.n_latents, (B,), generator=run.sampler)].to(device)
        params = starts.index(torch.randint(starts.batch_size, (B,), generator=run.sampler)).to(device)
        yaw = (torch.rand(B, generator=run.sampler) * 2 - 1) * cfg.yaw_deg
        c = orbit(yaw, 0.0).eg3d_c().to(device)
        with torch.no_grad():
            ws = sample_ws(models.generator, z, c_cond.expand(B, -1), cfg)
        uniforms = draw_uniforms(models.generator, B, device)
        dws, dpsi = run.mapper(ws, params.expression[:, : run.mapper.config.n_exp])
        try:
            loss, parts = objective(ws, params, dws, dpsi, c, uniforms)
        except InputError as exc:  # e.g. psi' beyond FLAME's range: the optimisation diverged
            where = f"the last checkpoint is {ckpt_path}" if ckpt_path.is_file() else "no checkpoint was written yet"
            raise InputError(
                f"training diverged at step {run.step + 1} ({exc}); {where} "
                "(lower the learning rate or raise the L2 weight, then start over)"
            ) from exc
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.step += 1
        run.seconds += time.perf_counter() - t0
        run.history.append(parts)
        if progress is not None:
            progress(
                {
                    "stage": "train dual mappers",
                    "step": run.step,
                    "total": cfg.steps,
                    "loss": run.history[-1]["total"],
                    **{f"loss_{k}": v for k, v in parts.items() if k != "total"},
                    "seconds_per_step": run.seconds / run.step,
                }
            )
        if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps:
            ckpt_path = save_checkpoint()
    summary = _summary(run, cfg, resumed_from)
    mapper_path = save_mapper_set(
        out / slug(cfg.prompt), run.mapper, cfg.prompt, {**info, "summary": summary, "au_target": objective.au_target}
    )
    summary.update(mapper_path=str(mapper_path), checkpoint=str(ckpt_path))
    return TrainResult(run.mapper.eval(), summary, mapper_path, ckpt_path)
