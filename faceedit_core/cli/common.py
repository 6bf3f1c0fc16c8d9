"""What every `faceedit` command shares: error reporting, path options, neutral parameters, contact sheets.

Imported when a command runs, so it imports nothing heavy at module level (no torch). The options
that choose the editor are in `editor_options`, progress bars and Ctrl-C in `progress`.
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


def path_option(*decls: str, help: str, kind: str | None = None, exists: bool = False, **options):
    """A click option whose value is a Path (default None); kind "file" or "dir" allows only that (None: either)."""
    path = click.Path(exists=exists, file_okay=kind != "dir", dir_okay=kind != "file", path_type=Path)
    if not (options.get("multiple") or options.get("required")):  # click 8.5: an explicit None satisfies required
        options.setdefault("default", None)
    return click.option(*decls, type=path, help=help, **options)


input_file = functools.partial(path_option, kind="file", exists=True)  # an existing file
input_dir = functools.partial(path_option, kind="dir", exists=True)  # an existing folder


def options(*decorators):
    """One decorator applying several option decorators, in the order they are listed (--help's order)."""

    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


# --params FILE: the FLAME parameters a command starts from
params_option = path_option(
    "--params",
    "params_path",
    exists=True,
    help="FLAME parameters (.npz, .json or an EMOCA output folder); default: the head's neutral face.",
)


def neutral_params(layer):
    """FlameParams [1] of the neutral face at the layer's widths (zero shape, expression and pose)."""
    from faceedit_core.params import FlameParams

    return FlameParams.zeros(1, layer.n_shape, layer.n_exp)


def save_contact_sheet(path: Path, tiles: np.ndarray) -> Path:
    """tiles uint8 [R,C,H,W,4] (rows x columns of RGBA images) -> one opaque PNG at path."""
    from faceedit_core.render.images import contact_sheet, save_png

    sheet = contact_sheet(tiles)
    return save_png(path, np.concatenate([sheet, np.full(sheet.shape[:2] + (1,), 255, np.uint8)], -1))
