"""`faceedit train`: train (and cache) the mapper set for a prompt ahead of time.

Without --models: the preview tier's Emotion Mapper (a minute or two, cached under FACEEDIT_HOME;
checkpoints when interrupted, resumes when run again).
With --models DIR: the paper tier's text-guided Dual-Mapper optimisation (train.py) with the
user's FLAME, Next3D, CLIP and ArcFace files; checkpoints as it goes, resumes when run again.
"""

from __future__ import annotations

from pathlib import Path

import click

from faceedit_core.cli.common import input_dir, input_file, path_option, reports_errors
from faceedit_core.cli.editor_options import flame_options, models_options
from faceedit_core.cli.progress import loss_line, progress_bar, stop_on_interrupt
from faceedit_core.next3d.precision import PRECISIONS


@click.command()
@click.option("--prompt", default=None, help="The expression, e.g. 'A person who is smiling'.")
@input_file(
    "--prompts",
    "prompts_file",
    help="A file of prompts, one per line: one training task each, on a local pool or --ray (docs/scaling.md).",
)
@click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS", help="With --prompts: train on Ray.")
@click.option("--workers", default=None, type=click.IntRange(1, 1024), help="With --prompts: local processes.")
@click.option("--steps", default=None, type=click.IntRange(1, 10_000_000), help="Training steps (default: the tier's).")
@models_options(
    "Your model folder (flame/, next3d/, clip/, arcface/): trains the paper tier's Dual Mappers.", exists=False
)
@input_dir("--refs", help="Paper tier: EMOCA outputs (a folder per image: shape.npy, exp.npy, pose.npy).")
@click.option("--neutral", is_flag=True, help="Paper tier: start from the neutral expression (the paper's 'w/o ref').")
@path_option(
    "--out", kind="dir", help="Paper tier: folder for the mapper set and its checkpoints (default: DIR/mappers)."
)
@click.option("--batch", default=None, type=click.IntRange(1, 256), help="Paper tier: latent codes per step.")
@click.option("--lambda-clip", default=None, type=float, help="Paper tier: weight of the PAE CLIP loss.")
@click.option("--lambda-id", default=None, type=float, help="Paper tier: weight of the ArcFace identity loss.")
@click.option("--lambda-l2", default=None, type=float, help="Paper tier: weight of the residual L2 term.")
@click.option("--lambda-au", default=None, type=float, help="Paper tier: weight of the optional geometric AU term.")
@click.option(
    "--basis",
    default=None,
    type=click.Choice(["gram_schmidt", "plain", "pca", "none"]),
    help="Paper tier: PAE basis ('none': no projection).",
)
@click.option("--alpha", default=None, type=float, help="Paper tier: PAE augmentation power.")
@input_file(
    "--basis-prompts",
    help="Paper tier: a file of PAE basis prompts, one per line (default: the six expression prompts).",
)
@click.option(
    "--exp-width",
    default=None,
    type=click.IntRange(1, 400),
    help="Paper tier: expression coefficients the Emotion Mapper edits (default 50, EMOCA's and Next3D's).",
)
@click.option(
    "--checkpoint-every",
    default=None,
    type=click.IntRange(1, 10_000_000),
    help="Paper tier: steps between checkpoints.",
)
@click.option("--seed", default=None, type=int, help="Paper tier: seed of the latent pool and the batches.")
@click.option("--no-texture", is_flag=True, help="Paper tier ablation: no Texture Mapper.")
@click.option("--no-emotion", is_flag=True, help="Paper tier ablation: no Emotion Mapper.")
@click.option("--no-cross-attention", is_flag=True, help="Paper tier ablation: no cross-attention.")
@click.option("--restart", is_flag=True, help="Paper tier: ignore an existing checkpoint and start over.")
@click.option(
    "--sr-precision",
    default=None,
    type=click.Choice(PRECISIONS),
    help="Paper tier: Next3D super-resolution precision (default auto: float16 on CUDA, float32 "
    "elsewhere, as released; bf16: 2x faster views on CPUs with AMX).",
)
@flame_options
@reports_errors
def train(prompt: str | None, steps: int | None, models_dir: str | None, device: str, **paper) -> None:
    """Train the mapper set for PROMPT and print its mapper id.

    The preview tier (no --models) trains the head's Emotion Mapper, conditioned on the AU target,
    once per head (the demo head, or --flame FILE; without --prompt it only does that): afterwards
    every prompt edits at once; with --prompt it prints the prompt's mapper id. With
    --models DIR, the paper tier trains Dual Mappers against CLIP-PAE + ArcFace over Next3D
    renders and writes DIR/mappers/<prompt-slug>.json, which `faceedit-server --models DIR` serves.

    Progress on stderr. Ctrl-C stops after the current step and saves a checkpoint there (the
    message names it); the same command run again resumes from it.
    """
    many = {k: paper.pop(k) for k in ("prompts_file", "ray_address", "workers")}
    head = {k: paper.pop(k) for k in ("flame", "landmarks", "n_exp")}
    if prompt is not None and many["prompts_file"] is not None:
        raise click.UsageError("give --prompt TEXT or --prompts FILE")
    if prompt is None and many["prompts_file"] is None and models_dir is not None:
        raise click.UsageError("give --prompt TEXT or --prompts FILE")
    if many["prompts_file"] is None and (many["ray_address"] or many["workers"]):
        raise click.UsageError("--ray and --workers go with --prompts FILE")
    if many["prompts_file"] is not None:
        from faceedit_core.batch.train import train_prompts_cli

        return train_prompts_cli(many, steps, models_dir, device, paper, paper_config, head)
    if models_dir is None and any(v not in (None, False) for v in paper.values()):
        raise click.UsageError("the paper-tier options need --models DIR")
    from faceedit_core.errors import Cancelled

    with stop_on_interrupt("training") as cancel:
        try:
            if models_dir is None:
                _train_preview(prompt, steps, cancel, **head)
            else:
                _train_paper(prompt, steps, models_dir, device, paper, cancel)
        except Cancelled as exc:
            if not cancel():
                raise
            click.echo(f"interrupted: {exc}", err=True)
            raise SystemExit(130) from None


def _train_preview(prompt: str | None, steps: int | None, cancel, flame=None, landmarks=None, n_exp=None) -> None:
    from dataclasses import replace

    from faceedit_core.cli.editor_options import head_editor
    from faceedit_core.preview.train import PreviewTrainConfig

    if steps is not None and steps < 10:
        raise click.UsageError(f"--steps {steps}: the preview tier needs at least 10")
    cfg = PreviewTrainConfig() if steps is None else replace(PreviewTrainConfig(), steps=steps)
    editor = head_editor(flame, landmarks, n_exp, train_config=cfg)
    with progress_bar(describe=loss_line) as bar:
        if prompt is None:
            mapper_id = editor.train_head(progress=bar, cancel=cancel)
        else:
            mapper_id = editor.train(prompt, progress=bar, cancel=cancel)
    resumed = (editor.head_training or {}).get("resumed_from")
    trained = f" (head mapper resumed at step {resumed})" if resumed else ""
    if prompt is None:
        click.echo(f"head mapper {mapper_id} for {editor.head.label}{trained}: every prompt now edits at once")
        return
    click.echo(f"mapper {mapper_id} for '{prompt}' (target {editor.text_to_au.parse(prompt).key()}){trained}")


def paper_config(prompt: str, steps: int | None, opts: dict):
    """PaperTrainConfig from the defaults and the options given on the command line."""
    from dataclasses import replace

    from faceedit_core.paper.train import PaperTrainConfig

    cfg = PaperTrainConfig(prompt=prompt, neutral=opts["neutral"])
    plain = {
        "steps": steps,
        "batch": opts["batch"],
        "basis": opts["basis"],
        "alpha": opts["alpha"],
        "checkpoint_every": opts["checkpoint_every"],
        "seed": opts["seed"],
    }
    cfg = replace(cfg, **{k: v for k, v in plain.items() if v is not None})
    if opts.get("exp_width") is not None:
        cfg = replace(cfg, exp_width=opts["exp_width"])
    if opts.get("basis_prompts"):
        lines = Path(opts["basis_prompts"]).read_text(encoding="utf-8").splitlines()
        cfg = replace(cfg, basis_prompts=tuple(t.strip() for t in lines if t.strip()))
    weights = {
        k: opts[f"lambda_{n}"]
        for k, n in (("clip", "clip"), ("identity", "id"), ("l2", "l2"), ("au", "au"))
        if opts[f"lambda_{n}"] is not None
    }
    mapper = {
        "texture_branch": not opts["no_texture"],
        "emotion_branch": not opts["no_emotion"],
        "cross_attention": not opts["no_cross_attention"],
    }
    return replace(cfg, weights=replace(cfg.weights, **weights), mapper=replace(cfg.mapper, **mapper)).validate()


def _train_paper(prompt: str, steps: int | None, models_dir: Path, device: str, opts: dict, cancel) -> None:
    from faceedit_core.paper.models import PaperModels
    from faceedit_core.paper.train import load_refs, train_mappers

    if opts["refs"] is None and not opts["neutral"]:
        raise click.UsageError("the paper tier needs --refs DIR_OF_EMOCA_OUTPUTS or --neutral")
    cfg = paper_config(prompt, steps, opts)
    click.echo(f"loading models from {models_dir} ...")
    models = PaperModels.from_models_dir(
        models_dir, device, guidance=True, sr_precision=opts.pop("sr_precision") or "auto"
    )
    refs = load_refs(opts["refs"], models.flame.n_shape, models.flame.n_exp) if opts["refs"] else None
    out = Path(opts["out"]) if opts["out"] else Path(models_dir) / "mappers"
    with progress_bar(f"training '{prompt}'", describe=loss_line) as bar:
        result = train_mappers(models, cfg, out, refs, progress=bar, cancel=cancel, resume=not opts["restart"])
    s = result.summary
    click.echo(
        f"mapper {result.mapper_path.stem} for '{prompt}': {s['steps']} steps"
        f"{' (resumed at step %d)' % s['resumed_from'] if s['resumed_from'] else ''}, loss {s['loss_first']:.4f}"
        f" -> {s['loss_last']:.4f}, {s['seconds_per_step']:.2f} s/step; written to {result.mapper_path}"
    )
