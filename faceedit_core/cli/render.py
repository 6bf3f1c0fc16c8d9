"""`faceedit render`: multi-view renders of a FLAME head (PNG per view and a contact sheet)."""

from __future__ import annotations

from pathlib import Path

import click

from faceedit_core.cli.common import reports_errors, save_contact_sheet


@click.command()
@click.option(
    "--params",
    "params_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="FLAME parameters (.npz, .json, EMOCA folder); default: the neutral demo head.",
)
@click.option("--expression", default="", help="Demo-head components, e.g. 'lip_corner_pull=1,cheek_raise=0.6'.")
@click.option("--jaw", default=0.0, type=float, help="Jaw opening in radians.")
@click.option("--views", default=8, show_default=True, type=click.IntRange(1, 64), help="Turntable views.")
@click.option("--pitch", default=0.0, show_default=True, type=float, help="Camera pitch in degrees.")
@click.option("--size", default=512, show_default=True, type=click.IntRange(16, 2048), help="Image size in pixels.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@reports_errors
def render(params_path, expression, jaw, views, pitch, size, out_dir):
    """Render a turntable of the demo head into OUT (view_XX.png + contact_sheet.png)."""
    import numpy as np

    from faceedit_core.cli.head import demo_params
    from faceedit_core.factory import build_editor
    from faceedit_core.params import FlameParams
    from faceedit_core.render.cameras import turntable
    from faceedit_core.render.images import save_png

    editor = build_editor()
    params = FlameParams.load(params_path) if params_path else demo_params(editor.layer, expression, jaw)
    images = editor.render(params, turntable(views, pitch_deg=pitch), size)  # uint8 [B,N,H,W,4]
    for i, img in enumerate(images[0]):
        save_png(out_dir / f"view_{i:02d}.png", img)
    cols = min(views, 4)
    rows = -(-views // cols)
    tiles = np.zeros((rows * cols,) + images.shape[2:], np.uint8)
    tiles[:views] = images[0]
    save_contact_sheet(out_dir / "contact_sheet.png", tiles.reshape(rows, cols, *images.shape[2:]))
    click.echo(f"wrote {views} views and contact_sheet.png to {out_dir}")
