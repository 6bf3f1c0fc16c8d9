"""What every `faceedit` command shares: error reporting, neutral parameters, contact sheets.

Imported when a command runs, so it imports nothing heavy at module level (no torch).
"""

from __future__ import annotations

import functools
from pathlib import Path

import click
import numpy as np

from faceedit_core.errors import FaceEditError, PromptNotUnderstood


def reports_errors(command):
    """Turn FaceEditError into click.ClickException: 'Error: ...' on stderr, exit 1, no usage banner
    (usage errors raised by click itself keep exit 2)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PromptNotUnderstood as exc:
            hint = f" (try: {', '.join(exc.suggestions)})" if exc.suggestions else ""
            raise click.ClickException(f"{exc}{hint}") from exc
        except FaceEditError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def flame_options(command):
    """--flame FILE, --landmarks FILE, --n-exp N: the preview tier on the user's FLAME head."""
    command = click.option(
        "--n-exp",
        "n_exp",
        default=None,
        type=click.IntRange(1, 400),
        help="With --flame: expression coefficients the preview tier edits (default 50, up to the file's 100).",
    )(command)
    command = click.option(
        "--landmarks",
        default=None,
        type=click.Path(dir_okay=False, path_type=Path),
        help="With --flame: DECA's landmark_embedding.npy (default: found beside the FLAME file).",
    )(command)
    return click.option(
        "--flame",
        default=None,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Your FLAME file (FLAME 2020 generic_model.pkl or FLAME 2023 flame2023*.pkl): edit that head.",
    )(command)


def head_editor(flame=None, landmarks=None, n_exp=None, **options):
    """build_editor for the preview tier on --flame (or the embedded default without it)."""
    from faceedit_core.factory import build_editor

    if flame is None and (landmarks is not None or n_exp is not None):
        raise click.UsageError("--landmarks and --n-exp go with --flame FILE")
    return build_editor(flame=flame, landmarks=landmarks, n_exp=n_exp, **options)


def show_training(event: dict) -> None:
    """Progress of the head's mapper training (once per head; minutes), on stderr."""
    if event["step"] == 1:
        click.echo(f"{event['stage']} (once for this head, cached afterwards): {event['total']} steps", err=True)
    elif event["step"] % 500 == 1 or event["step"] == event["total"]:
        click.echo(f"  step {event['step']}/{event['total']}  loss {event['loss']:.4f}", err=True)


def neutral_params(layer):
    """FlameParams [1] of the neutral face at the layer's widths (zero shape, expression and pose)."""
    from faceedit_core.params import FlameParams

    return FlameParams.zeros(1, layer.n_shape, layer.n_exp)


def save_contact_sheet(path: Path, tiles: np.ndarray) -> Path:
    """tiles uint8 [R,C,H,W,4] (rows x columns of RGBA images) -> one opaque PNG at path."""
    from faceedit_core.render.images import contact_sheet, save_png

    sheet = contact_sheet(tiles)
    return save_png(path, np.concatenate([sheet, np.full(sheet.shape[:2] + (1,), 255, np.uint8)], -1))
