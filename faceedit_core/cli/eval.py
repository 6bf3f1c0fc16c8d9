"""`faceedit eval`: the paper's evaluation (Tables I-V) of the trained mapper sets in a models folder.

    faceedit eval --models DIR --out EVAL [--pairs 1000] [--real FFHQ_DIR --inception FILE]
                  [--openface EVAL/openface] [--latent FILE ...] [--refs EMOCA_DIR]

Writes EVAL/results.json and EVAL/table.md (paper/evaluation.py says what each column is) and,
unless --no-renders, every pair's renders under EVAL/renders/ for an image-based AU detector:
run OpenFace on EVAL/renders/<set>/ (e.g. `FaceLandmarkImg -fdir EVAL/renders/<set> -aus -out_dir
EVAL/openface/<set>`) and evaluate again with --openface EVAL/openface to fill its AU column.
"""

from __future__ import annotations

import click

from faceedit_core.cli.common import input_dir, input_file, path_option, reports_errors
from faceedit_core.cli.editor_options import models_options
from faceedit_core.cli.progress import progress_bar


@click.command("eval")
@models_options("Your model folder (flame/, next3d/, clip/, arcface/ and the trained mappers/).", required=True)
@path_option("--out", kind="dir", required=True, help="Output folder.")
@click.option("--pairs", default=1000, show_default=True, type=click.IntRange(1, 1_000_000), help="Pairs per set.")
@click.option("--seed", default=0, show_default=True, type=int, help="Identity i is this seed + i.")
@path_option(
    "--latent", "latents", exists=True, multiple=True, help="Latent files as the identities instead of seeds (cycled)."
)
@input_dir("--refs", help="EMOCA outputs to start from (cycled; default the neutral face).")
@click.option("--set", "set_ids", multiple=True, help="Evaluate only these mapper sets (repeatable).")
@input_dir("--real", help="Real face images for FID/KID (the paper: 5,000 FFHQ images).")
@input_file(
    "--inception",
    help="Inception-v3 weights (pytorch-fid's pt_inception-2015-12-05-*.pth, or torchvision's), for FID/KID.",
)
@input_dir("--openface", help="OpenFace CSVs of the renders: <dir>/<set>/<i>_edit.csv.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1, 256), help="Heads rendered at once.")
@click.option("--fid-size", default=299, show_default=True, type=click.IntRange(75, 1024), hidden=True)
@click.option("--no-renders", is_flag=True, help="Do not write the renders (no OpenFace column then).")
@reports_errors
def eval_command(models_dir, out, pairs, seed, latents, refs, set_ids, real, inception, openface, **opts) -> None:
    """Evaluate the trained mapper sets of DIR; print the table and write it to OUT."""
    from faceedit_core.errors import InputError
    from faceedit_core.paper.evaluation import EvalConfig, evaluate
    from faceedit_core.paper.latents import load_latent
    from faceedit_core.paper.mapper_sets import find_mapper_sets, load_mapper_set
    from faceedit_core.paper.models import PaperModels
    from faceedit_core.paper.train import load_refs

    if (real is None) != (inception is None):
        raise click.UsageError("FID/KID need both --real DIR and --inception FILE")
    device = opts["device"]
    cfg = EvalConfig(
        n_pairs=pairs, seed=seed, batch=opts["batch"], fid_size=opts["fid_size"], write_renders=not opts["no_renders"]
    )
    models = PaperModels.from_models_dir(models_dir, device, guidance=True)
    found = find_mapper_sets(models_dir / "mappers")
    unknown = [s for s in set_ids if s not in found]
    if unknown:
        raise InputError(f"no mapper sets {unknown} in {models_dir / 'mappers'} (found: {', '.join(sorted(found))})")
    sets = [load_mapper_set(stem) for sid, stem in sorted(found.items()) if not set_ids or sid in set_ids]
    net = None
    if inception is not None:
        from faceedit_core.paper.inception import load_inception

        net = load_inception(inception, device, size=cfg.fid_size)
    identities = [load_latent(p).ws[:1] for p in latents] or None
    starts = load_refs(refs, models.flame.n_shape, models.flame.n_exp) if refs is not None else None
    with progress_bar("evaluating") as bar:
        evaluate(models, sets, cfg, out, real, net, openface, identities=identities, starts=starts, progress=bar)
    click.echo((out / "table.md").read_text())
    click.echo(f"results: {out / 'results.json'}")
