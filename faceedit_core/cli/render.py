"""`faceedit render`: multi-view renders of a FLAME head (PNG per view and a contact sheet)."""

from __future__ import annotations

from pathlib import Path

import click

from faceedit_core.cli.common import flame_options, head_editor, reports_errors, save_contact_sheet


@click.command()
@click.option(
    "--params",
    "params_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="FLAME parameters (.npz, .json, EMOCA folder); default: the neutral demo head.",
)
@click.option(
    "--expression", default="", help="Default-head components, e.g. 'mouthSmile_L=1,mouthSmile_R=1,jawOpen=0.3'."
)
@click.option("--jaw", default=0.0, type=float, help="Jaw opening in radians.")
@click.option("--views", default=8, show_default=True, type=click.IntRange(1, 64), help="Turntable views.")
@click.option("--pitch", default=0.0, show_default=True, type=float, help="Camera pitch in degrees.")
@click.option("--size", default=512, show_default=True, type=click.IntRange(16, 2048), help="Image size in pixels.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@flame_options
@reports_errors
def render(params_path, expression, jaw, views, pitch, size, out_dir, flame, landmarks, n_exp):
    """Render a turntable of the head (the demo head, or --flame FILE) into OUT (view_XX.png + contact_sheet.png)."""
    import numpy as np

    from faceedit_core.cli.head import demo_params
    from faceedit_core.params import FlameParams
    from faceedit_core.render.cameras import turntable
    from faceedit_core.render.images import save_png

    editor = head_editor(flame, landmarks, n_exp)
    if flame is not None and expression:
        raise click.UsageError("--expression names demo-head components; with --flame give --params")
    if params_path:
        params = FlameParams.load(params_path)
    elif flame is not None:  # the neutral face of the user's FLAME, the jaw as asked
        params = FlameParams.zeros(1, editor.layer.n_shape, editor.layer.n_exp)
        params.jaw_pose[0, 0] = jaw
    else:
        params = demo_params(editor.layer, expression, jaw)
    images = editor.render(params, turntable(views, pitch_deg=pitch), size)  # uint8 [B,N,H,W,4]
    for i, img in enumerate(images[0]):
        save_png(out_dir / f"view_{i:02d}.png", img)
    cols = min(views, 4)
    rows = -(-views // cols)
    tiles = np.zeros((rows * cols,) + images.shape[2:], np.uint8)
    tiles[:views] = images[0]
    save_contact_sheet(out_dir / "contact_sheet.png", tiles.reshape(rows, cols, *images.shape[2:]))
    click.echo(f"wrote {views} views and contact_sheet.png to {out_dir}")
