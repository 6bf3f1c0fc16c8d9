"""`faceedit batch SPEC`: heads x prompts x intensities x turntables -> edited parameters, OBJ, GLB, frames.

Runs on a local process pool by default, on Ray with --ray; reruns skip finished items; the
manifest (OUT/manifest.jsonl) lists every item's inputs, outputs and status. docs/scaling.md.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import click

from faceedit_core.cli.common import reports_errors


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output folder.")
@click.option(
    "--ray",
    "ray_address",
    default=None,
    metavar="auto|ADDRESS",
    help="Run on Ray: 'auto' joins a running cluster or starts a local one; or a cluster address.",
)
@click.option("--workers", type=click.IntRange(1, 1024), default=None, help="Local processes (default: one per core).")
@click.option("--retries", type=click.IntRange(0, 10), default=None, help="Extra attempts for a transient failure.")
@click.option(
    "--flame", type=click.Path(exists=True, dir_okay=False), default=None, help="Your FLAME file: edit that head."
)
@click.option(
    "--landmarks", type=click.Path(exists=True, dir_okay=False), default=None, help="With --flame: DECA's embedding."
)
@click.option("--n-exp", type=click.IntRange(1, 400), default=None, help="With --flame: expression width edited.")
@click.option("--force", is_flag=True, help="Redo finished items too.")
@click.option("--dry-run", is_flag=True, help="Print the plan (items to run, to skip) and stop.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@reports_errors
def batch(spec_path, out, ray_address, workers, retries, flame, landmarks, n_exp, force, dry_run, no_progress):
    """Run the batch described by SPEC (.toml, or .yaml with PyYAML installed)."""
    from faceedit_core.batch.runner import BatchInterrupted, default_out, finished_record, run_batch
    from faceedit_core.batch.spec import load_spec

    spec = load_spec(spec_path)
    run_changes = {k: v for k, v in (("workers", workers), ("retries", retries)) if v is not None}
    spec = replace(spec, run=replace(spec.run, **run_changes))
    head = {"flame": flame, "landmarks": landmarks}
    head = {k: str(Path(v).resolve()) for k, v in head.items() if v} | ({"n_exp": n_exp} if n_exp else {})
    if head:
        if not (flame or spec.editor.flame):
            raise click.UsageError("--landmarks and --n-exp go with --flame FILE (or editor.flame in the spec)")
        spec = replace(spec, editor=replace(spec.editor, **head))
    out = (out or default_out(spec)).resolve()
    if dry_run:
        from faceedit_core.batch.plan import make_plan
        from faceedit_core.batch.runner import editor_tier

        plan = make_plan(spec, out, tier=editor_tier(spec.editor))
        done = sum(finished_record(it) is not None for it in plan.items) if not force else 0
        click.echo(
            f"{len(plan.items)} items ({len(plan.items) - done} to run, {done} finished), "
            f"{len(plan.trains)} training tasks, output {out}"
        )
        for it in plan.items[:20]:
            click.echo(f"  {it.item_id}")
        if len(plan.items) > 20:
            click.echo(f"  ... and {len(plan.items) - 20} more")
        return
    if ray_address:
        from faceedit_core.batch.backends import RayBackend

        r = spec.run
        backend = RayBackend(ray_address, r.num_cpus, r.num_gpus, r.resources)
    else:
        from faceedit_core.batch.backends import LocalBackend

        backend = LocalBackend(spec.run.workers)
    click.echo(f"batch {spec_path} -> {out} on {backend.describe()}", err=True)
    try:
        result = run_batch(spec, out, backend, force=force, progress=not no_progress)
    except BatchInterrupted as exc:
        click.echo(f"\n{exc}", err=True)
        raise SystemExit(130) from None
    counts = Counter(result.counts)
    rate = (counts["done"] + counts["failed"]) / result.seconds * 3600 if result.seconds else 0
    click.echo(
        f"{len(result.lines)} items: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed "
        f"in {result.seconds:.1f} s ({rate:.0f} items/hour); manifest {result.manifest}"
    )
    failed = [line for line in result.lines if line["status"] == "failed"]
    for line in failed[:10]:
        click.echo(f"  failed {line['item']}: {line['error']}", err=True)
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(result.lines)} items failed (see {result.manifest})")
