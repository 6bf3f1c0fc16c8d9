"""`faceedit train --prompts FILE [--ray ...]`: one task per prompt, each the Editor's train(prompt) call.

The task unit is the editor's own `train(prompt)` on one head model, so it holds whether the
tier trains one mapper per prompt or one conditioned mapper per head (then the prompts of a head
meet at the mapper store's file lock and all but the first find the mapper trained). Trained
mappers land where the tier keeps them -- the preview tier's store under $FACEEDIT_HOME, the
paper tier's DIR/mappers with its checkpoints under DIR/mappers/checkpoints -- which on a
cluster is shared storage. A lost worker is retried (bounded) and the paper tier resumes from
its last checkpoint there; the preview tier's training is short and atomic (it reruns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from faceedit_core.batch.plan import TrainTask
from faceedit_core.batch.progress import ProgressBar
from faceedit_core.batch.runner import Driver
from faceedit_core.batch.spec import EditorSpec
from faceedit_core.errors import InputError


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with '#' are skipped; duplicates refused."""
    path = Path(path)
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise InputError(f"--prompts {path}: no prompt in the file (one per line)")
    seen = set()
    for n, p in enumerate(prompts, 1):
        if p in seen:
            raise InputError(f"--prompts {path}: prompt {n} ({p!r}) is listed twice")
        seen.add(p)
    return prompts


def train_prompts(
    prompts: list[str],
    editor: EditorSpec,
    backend,
    retries: int = 2,
    hook: Callable | None = None,
    progress: bool = True,
    train_num_gpus: float = 0.0,
) -> list[dict]:
    """Train every prompt's mapper, one task each; -> one line per prompt, in order:
    {prompt, status 'done' | 'failed', mapper_id | error, attempts, errors, worker, seconds}."""
    tasks = [TrainTask(p, editor, backend.threads) for p in prompts]
    lines: dict[str, dict] = {}
    bar = ProgressBar(len(tasks), "prompts", enabled=progress)
    driver = Driver(backend, retries, hook, train_num_gpus)

    def succeeded(task, record, attempt, errors):
        lines[task.prompt] = {**record, "attempts": attempt, "errors": errors}
        bar.update(done=1)

    def failed(task, error, record, attempt, errors):
        worker = (record or {}).get("worker")
        lines[task.prompt] = {
            "task": task.task_id,
            "prompt": task.prompt,
            "status": "failed",
            "error": error,
            "attempts": attempt,
            "errors": errors,
            "worker": worker,
        }
        bar.update(failed=1)

    for task in tasks:
        driver.submit(task)
    interrupted = False
    try:
        driver.run(succeeded, failed, bar.update)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        bar.close()
        if not interrupted:
            backend.close()
    return [lines[p] for p in prompts]


def train_prompts_cli(
    many: dict, steps, models_dir, device: str, paper: dict, paper_config: Callable, head: dict | None = None
) -> None:
    """The `faceedit train --prompts FILE [--ray ...] [--workers N]` command (cli/train.py hands over here).

    paper_config(prompt, steps, opts) -> PaperTrainConfig is cli/train.py's, passed in so this
    layer never imports the command line; head: --flame, --landmarks, --n-exp (the preview tier on
    the user's FLAME)."""
    import click

    from faceedit_core.batch.backends import LocalBackend, RayBackend

    prompts = read_prompts(many["prompts_file"])
    if models_dir is None:
        if any(v not in (None, False) for v in paper.values()):
            raise click.UsageError("the paper-tier options need --models DIR")
        if steps is not None and steps < 10:
            raise click.UsageError(f"--steps {steps}: the preview tier needs at least 10")
        head = {k: (str(Path(v).resolve()) if k != "n_exp" else v) for k, v in (head or {}).items() if v}
        editor = EditorSpec(device=device, train_steps=steps, **head)
    else:
        unsupported = [f"--{k.replace('_', '-')}" for k in ("refs", "out", "restart", "sr_precision") if paper.get(k)]
        if unsupported:
            raise click.UsageError(
                f"{', '.join(unsupported)}: not with --prompts (each task is the editor's train(prompt): from the "
                "neutral expression, into DIR/mappers, resuming its checkpoint); use --prompt for these"
            )
        cfg = paper_config(prompts[0], steps, {**paper, "neutral": True})
        editor = EditorSpec(models=str(Path(models_dir).resolve()), device=device, train_config=cfg)
    if many["ray_address"]:
        backend = RayBackend(many["ray_address"], num_gpus=0.0)
        gpus = 1.0 if device == "cuda" else 0.0
    else:
        backend, gpus = LocalBackend(many["workers"] or 0), 0.0
    click.echo(f"training {len(prompts)} prompts on {backend.describe()}", err=True)
    lines = train_prompts(prompts, editor, backend, train_num_gpus=gpus)
    failed = 0
    for line in lines:
        if line["status"] == "done":
            retried = f" (after {line['attempts'] - 1} retries)" if line["attempts"] > 1 else ""
            click.echo(f"mapper {line['mapper_id']} for '{line['prompt']}'{retried}")
        else:
            failed += 1
            click.echo(f"failed '{line['prompt']}': {line['error']}", err=True)
    if failed:
        raise click.ClickException(f"{failed} of {len(lines)} prompts failed to train")
