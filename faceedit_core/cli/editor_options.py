"""The options that choose a command's editor: the head (--flame FILE, --models DIR), the device and
the paper tier's identity (--seed, --latent), and `head_editor`, which builds the editor from them.

Imported when a command runs; nothing heavy at module level (no torch).
"""

from __future__ import annotations

from pathlib import Path

import click

from faceedit_core.cli.common import options, path_option

# --flame FILE, --landmarks FILE, --n-exp N: the preview tier on the user's FLAME head
flame_options = options(
    path_option(
        "--flame",
        kind="file",
        help="Your FLAME file (FLAME 2020 generic_model.pkl or FLAME 2023 flame2023*.pkl): edit that head.",
    ),
    path_option(
        "--landmarks",
        kind="file",
        help="With --flame: DECA's landmark_embedding.npy (default: found beside the FLAME file).",
    ),
    click.option(
        "--n-exp",
        "n_exp",
        default=None,
        type=click.IntRange(1, 400),
        help="With --flame: expression coefficients the preview tier edits (default 50, up to the file's 100).",
    ),
)


def models_options(help: str, required: bool = False, exists: bool = True):
    """--models DIR (the user's model folder, as `models_dir`) and --device."""
    return options(
        path_option("--models", "models_dir", kind="dir", exists=exists, required=required, help=help),
        click.option("--device", default="cpu", type=click.Choice(["cpu", "cuda"]), help="Where the models run."),
    )


# --seed N or --latent NAME|FILE: the paper tier's identity (as the server's 'identity' field)
identity_options = options(
    click.option(
        "--seed",
        default=None,
        type=click.IntRange(0, 2**63 - 1),
        help="Paper tier: the identity of this seed (default 0).",
    ),
    click.option(
        "--latent",
        default=None,
        help="Paper tier: the identity of a latent file (a name in DIR/latents/ or a path; `faceedit invert`).",
    ),
)


def head_options(models_help: str):
    """--flame/--landmarks/--n-exp, --models/--device and --seed/--latent: every way to choose the head
    and its identity, for `head_editor(**those options)`."""
    return options(flame_options, models_options(models_help), identity_options)


def head_editor(flame=None, landmarks=None, n_exp=None, models_dir=None, seed=None, latent=None, **editor_options):
    """build_editor for --models DIR (the paper tier, with the identity --seed or --latent, or the
    preview tier on its FLAME), --flame FILE (the preview tier on it) or neither (the embedded default).
    UsageError naming the option for an option of another tier."""
    from faceedit_core.factory import build_editor, preflight

    if flame is None and (landmarks is not None or n_exp is not None):
        raise click.UsageError("--landmarks and --n-exp go with --flame FILE")
    if seed is not None and latent is not None:
        raise click.UsageError("give the identity as --seed N or --latent NAME, not both")
    identity = {"latent_seed": seed} if seed is not None else {"latent": latent} if latent is not None else {}
    if identity and preflight(models_dir, flame, landmarks).get("tier") != "paper":
        option = "--seed" if seed is not None else "--latent"
        raise click.UsageError(
            f"{option} chooses an identity of the paper tier: it needs --models DIR with flame/ and next3d/ "
            "(the preview tier has one head and no identities)"
        )
    if latent is not None:
        _check_latent(latent, models_dir)
    return build_editor(models_dir, flame=flame, landmarks=landmarks, n_exp=n_exp, **identity, **editor_options)


def _check_latent(latent: str, models_dir: Path) -> None:
    """BadParameter unless --latent names a latent file of DIR/latents/ or the path of one (its stem or manifest)."""
    from faceedit_core.paper.latents import find_latents
    from faceedit_core.storage.checkpoints import manifest_path

    known = find_latents(models_dir / "latents")
    path = Path(latent).expanduser()
    if latent not in known and not (path.is_file() or manifest_path(path).is_file()):
        raise click.BadParameter(
            f"'{latent}' is neither a latent file nor a name in {models_dir / 'latents'} "
            f"(names there: {', '.join(sorted(known)) or 'none'}; `faceedit invert` writes them)",
            param_hint="--latent",
        )
