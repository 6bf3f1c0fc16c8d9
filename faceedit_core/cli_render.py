"""`faceedit render`: multi-view renders of a FLAME head (PNG per view and a contact sheet)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--params", "params_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="FLAME parameters (.npz, .json, EMOCA folder); default: the neutral demo head.")
@click.option("--expression", default="", help="Demo-head components, e.g. 'lip_corner_pull=1,cheek_raise=0.6'.")
@click.option("--jaw", default=0.0, type=float, help="Jaw opening in radians.")
@click.option("--views", default=8, show_default=True, type=click.IntRange(1, 64), help="Turntable views.")
@click.option("--pitch", default=0.0, show_default=True, type=float, help="Camera pitch in degrees.")
@click.option("--size", default=512, show_default=True, type=click.IntRange(16, 2048), help="Image size in pixels.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def render(params_path, expression, jaw, views, pitch, size, out_dir):
    """Render a turntable of the demo head into OUT (view_XX.png + contact_sheet.png)."""
    import numpy as np

    from .cli_head import demo_params
    from .edit import Editor
    from .errors import FaceEditError
    from .params import FlameParams
    from .render.cameras import turntable
    from .render.images import contact_sheet, save_png
    try:
        params = FlameParams.load(params_path) if params_path else demo_params(expression, jaw)
        editor = Editor.preview()
        images = editor.render(params, turntable(views, pitch_deg=pitch), size)  # uint8 [B,N,H,W,4]
    except FaceEditError as exc:
        raise click.UsageError(str(exc)) from exc
    for i, img in enumerate(images[0]):
        save_png(out_dir / f"view_{i:02d}.png", img)
    cols = min(views, 4)
    rows = -(-views // cols)
    tiles = np.zeros((rows * cols,) + images.shape[2:], np.uint8)
    tiles[:views] = images[0]
    sheet = contact_sheet(tiles.reshape(rows, cols, *images.shape[2:]))
    save_png(out_dir / "contact_sheet.png", np.concatenate([sheet, np.full(sheet.shape[:2] + (1,), 255, np.uint8)], -1))
    click.echo(f"wrote {views} views and contact_sheet.png to {out_dir}")
