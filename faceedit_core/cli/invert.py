"""`faceedit invert`: the Next3D latent and camera of a real photo (paper Sec. VI), saved as a latent file.

    faceedit invert PHOTO --models DIR --flame-params EMOCA_DIR [--prompt "A person who is smiling"]

The photo must be cropped and aligned as Next3D's training images (FFHQ-style); its FLAME
parameters come from EMOCA/DECA (a folder with shape.npy, exp.npy, pose.npy) or a .npz/.json
FLAME file. The latent goes to DIR/latents/<photo name> (or --out), where the server's
`identity: {latent: NAME}` and `build_editor(DIR, latent=NAME)` find it; a PNG of the
reconstruction is written beside it. With --prompt the inverted face is edited by the trained
mapper set and `<out>_edit.png` shows photo | reconstruction | edit from the photo's camera.
"""

from __future__ import annotations

from pathlib import Path

import click

from faceedit_core.cli.common import input_file, path_option, reports_errors
from faceedit_core.cli.editor_options import models_options
from faceedit_core.cli.progress import loss_line, progress_bar


@click.command()
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@models_options("Your model folder (flame/, next3d/; arcface/ and perceptual/ are used when present).", required=True)
@path_option(
    "--flame-params",
    exists=True,
    required=True,
    help="The photo's FLAME parameters: an EMOCA/DECA output folder (shape.npy, exp.npy, pose.npy) or .npz/.json.",
)
@path_option("--out", kind="file", help="Latent file stem (default DIR/latents/<photo name>).")
@click.option("--steps", default=None, type=click.IntRange(1, 100_000), help="Optimisation steps (default 1000).")
@click.option("--mode", default="w", show_default=True, type=click.Choice(["w", "w+"]), help="One w, or 28 rows.")
@click.option("--lr", default=None, type=float, help="Peak learning rate of the latent (default 0.01).")
@click.option("--camera-lr", default=None, type=float, help="Learning rate of the camera (default 0.005).")
@click.option("--no-camera", is_flag=True, help="Keep the camera from the photo's head pose (no pose optimisation).")
@click.option("--lambda-pixel", default=None, type=float, help="Weight of the pixel MSE (default 1).")
@click.option("--lambda-perceptual", default=None, type=float, help="Weight of LPIPS (default 1, needs VGG16).")
@click.option("--lambda-id", default=None, type=float, help="Weight of the ArcFace identity loss (default 0.1).")
@input_file(
    "--perceptual",
    help="VGG16 weights in torchvision's layout for LPIPS (default: DIR/perceptual/vgg16*.pth if present).",
)
@input_file("--lpips", help="LPIPS's linear layers (its vgg.pth; default: DIR/perceptual/vgg.pth).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of w_avg's samples and the noise.")
@click.option("--prompt", default=None, help="Then edit the inverted face with this trained prompt.")
@click.option("--intensity", default=1.0, show_default=True, type=float, help="Intensity of the --prompt edit.")
@reports_errors
def invert(photo, models_dir, flame_params, out, steps, mode, **opts) -> None:
    """Invert PHOTO into a Next3D latent and camera; print the latent file written."""
    import json
    from dataclasses import replace

    import numpy as np

    from faceedit_core.errors import InputError
    from faceedit_core.paper import invert as inv
    from faceedit_core.paper.editor import PaperEditor
    from faceedit_core.params import FlameParams
    from faceedit_core.render.images import save_png

    cfg = inv.InvertConfig(mode=mode, seed=opts["seed"], optimize_camera=not opts["no_camera"])
    changes = {
        "steps": steps,
        "lr": opts["lr"],
        "camera_lr": opts["camera_lr"],
        "pixel": opts["lambda_pixel"],
        "perceptual": opts["lambda_perceptual"],
        "identity": opts["lambda_id"],
    }
    cfg = replace(cfg, **{k: v for k, v in changes.items() if v is not None}).validate()
    params = FlameParams.from_emoca(flame_params) if flame_params.is_dir() else FlameParams.load(flame_params)
    editor = PaperEditor.from_models_dir(models_dir, opts["device"])
    perceptual = None
    if opts["perceptual"] is not None and cfg.perceptual > 0:
        from faceedit_core.paper.perceptual import load_perceptual

        perceptual = load_perceptual(opts["perceptual"], opts["lpips"], opts["device"])
    stem = out if out is not None else models_dir / "latents" / _name(photo)
    with progress_bar(f"inverting {photo.name}", describe=loss_line) as bar:
        result = editor.invert(photo, params, config=cfg, progress=bar, perceptual=perceptual, path=stem)
    if not np.isfinite(result["losses"]["total"]):
        raise InputError("the inversion diverged (its loss is not finite): lower --lr or --camera-lr")
    size = editor.generator.config.output_resolution
    tiles = [_rgba(inv.load_photo(photo, size)), _rgba(result["image"])]
    save_png(stem.with_name(stem.name + ".png"), tiles[1])
    if opts["prompt"] is not None:
        from faceedit_core.render.cameras import Cameras

        edited = editor.edit(params, prompt=opts["prompt"], intensity=opts["intensity"], ws=result["ws"])
        tiles.append(editor.render(edited.params, Cameras.from_eg3d_c(result["c"].cpu()), size)[0, 0])
        save_png(stem.with_name(stem.name + "_edit.png"), np.concatenate(tiles, axis=1))
    losses = {k: round(v, 5) for k, v in result["losses"].items()}
    click.echo(json.dumps({"latent": str(result["latent"]), "losses": losses}))


def _name(photo: Path) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", photo.stem).strip("-.")[:64] or "photo"
    return name if name[0].isalnum() else "p" + name[:63]


def _rgba(image):
    """[1,3,H,W] in [-1,1] -> uint8 [H,W,4]."""
    import numpy as np

    rgb = ((image[0].detach().cpu().permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
