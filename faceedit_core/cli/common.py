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


def neutral_params(layer):
    """FlameParams [1] of the neutral face at the layer's widths (zero shape, expression and pose)."""
    from faceedit_core.params import FlameParams

    return FlameParams.zeros(1, layer.n_shape, layer.n_exp)


def save_contact_sheet(path: Path, tiles: np.ndarray) -> Path:
    """tiles uint8 [R,C,H,W,4] (rows x columns of RGBA images) -> one opaque PNG at path."""
    from faceedit_core.render.images import contact_sheet, save_png

    sheet = contact_sheet(tiles)
    return save_png(path, np.concatenate([sheet, np.full(sheet.shape[:2] + (1,), 255, np.uint8)], -1))
