"""`faceedit render`: multi-view renders of a FLAME head (PNG per view and a contact sheet)."""

from __future__ import annotations

import click

from faceedit_core.cli.common import neutral_params, params_option, path_option, reports_errors, save_contact_sheet
from faceedit_core.cli.editor_options import head_editor, head_options
from faceedit_core.cli.progress import progress_bar


@click.command()
@params_option
@click.option(
    "--expression", default="", help="Default-head components, e.g. 'mouthSmile_L=1,mouthSmile_R=1,jawOpen=0.3'."
)
@click.option("--jaw", default=0.0, type=float, help="Jaw opening in radians.")
@click.option("--views", default=8, show_default=True, type=click.IntRange(1, 64), help="Turntable views.")
@click.option("--pitch", default=0.0, show_default=True, type=float, help="Camera pitch in degrees.")
@click.option("--size", default=512, show_default=True, type=click.IntRange(16, 2048), help="Image size in pixels.")
@path_option("--out", "out_dir", kind="dir", required=True, help="Output folder.")
@head_options("Your model folder: flame/ + next3d/ render with Next3D (the paper tier).")
@reports_errors
def render(params_path, expression, jaw, views, pitch, size, out_dir, **head):
    """Render a turntable of the head (the demo head, --flame FILE or --models DIR) into OUT
    (view_XX.png + contact_sheet.png); progress on stderr."""
    import numpy as np

    from faceedit_core.cli.head import demo_params
    from faceedit_core.params import FlameParams
    from faceedit_core.render.cameras import turntable
    from faceedit_core.render.images import save_png

    editor = head_editor(**head)
    own_head = head["flame"] is not None or head["models_dir"] is not None
    if own_head and expression:
        raise click.UsageError("--expression names demo-head components; with --flame or --models give --params")
    if params_path:
        params = FlameParams.load(params_path)
    elif own_head:  # the neutral face of the user's FLAME, the jaw as asked
        params = neutral_params(editor.layer)
        params.jaw_pose[0, 0] = jaw
    else:
        params = demo_params(editor.layer, expression, jaw)
    with progress_bar("rendering") as bar:
        images = editor.render(params, turntable(views, pitch_deg=pitch), size, progress=bar)  # uint8 [B,N,H,W,4]
    for i, img in enumerate(images[0]):
        save_png(out_dir / f"view_{i:02d}.png", img)
    cols = min(views, 4)
    rows = -(-views // cols)
    tiles = np.zeros((rows * cols,) + images.shape[2:], np.uint8)
    tiles[:views] = images[0]
    save_contact_sheet(out_dir / "contact_sheet.png", tiles.reshape(rows, cols, *images.shape[2:]))
    click.echo(f"wrote {views} views and contact_sheet.png to {out_dir}")
