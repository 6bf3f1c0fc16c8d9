"""`faceedit train`: train (and cache) the mapper set for a prompt ahead of time."""

from __future__ import annotations

import click


@click.command()
@click.option("--prompt", required=True, help="The expression, e.g. 'A person who is smiling'.")
@click.option("--steps", default=None, type=click.IntRange(10, 100000), help="Training steps (default: the tier's).")
def train(prompt: str, steps: int | None) -> None:
    """Train the preview-tier Emotion Mapper for PROMPT and print its mapper id.

    The mapper is cached: later edits with this expression (or any prompt with the same AU
    target) apply it at once. The paper tier's text-guided Dual-Mapper training needs Next3D,
    CLIP and ArcFace weights and is not part of this release.
    """
    from dataclasses import replace

    from .edit import Editor
    from .errors import FaceEditError, PromptNotUnderstood
    from .preview_train import PreviewTrainConfig
    cfg = PreviewTrainConfig() if steps is None else replace(PreviewTrainConfig(), steps=steps)
    editor = Editor.preview(train_config=cfg)

    def show(e):
        if e["step"] == 1 or e["step"] == e["total"] or e["step"] % 100 == 1:
            click.echo(f"  step {e['step']:5d}/{e['total']}  loss {e['loss']:.4f}  (AU {e['loss_au']:.4f}, L2 {e['loss_l2']:.4f})")

    try:
        mapper_id = editor.train(prompt, progress=show)
    except PromptNotUnderstood as exc:
        raise click.UsageError(f"{exc} (try: {', '.join(exc.suggestions)})") from exc
    except FaceEditError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"mapper {mapper_id} for '{prompt}' (target {editor.text_to_au.parse(prompt).key()})")
