"""`faceedit demo` (the embedded default end to end) and `faceedit models` (what a model folder holds)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from faceedit_core.cli.common import neutral_params, reports_errors, save_contact_sheet
from faceedit_core.cli.progress import progress_bar


@click.command()
@click.option(
    "--out", "out_dir", default="out/demo", show_default=True, type=click.Path(file_okay=False, path_type=Path)
)
@click.option("--size", default=256, show_default=True, type=click.IntRange(64, 1024))
@reports_errors
def demo(out_dir: Path, size: int) -> None:
    """Edit the demo head with the paper's six prompts: OBJs, renders, a contact sheet, AU results.

    Progress bars on stderr: the head's Emotion Mapper (trained once, cached afterwards), then the edits."""
    import numpy as np

    from faceedit_core.editor import PAPER_PROMPTS
    from faceedit_core.factory import build_editor
    from faceedit_core.render.cameras import portrait
    from faceedit_core.storage.mesh_io import write_obj

    out_dir.mkdir(parents=True, exist_ok=True)
    editor = build_editor()
    m = editor.layer.model
    label = getattr(getattr(editor, "head", None), "label", "demo head")
    click.echo(f"{label}: {m.n_verts} vertices, {len(m.f)} faces (hash {editor.head_hash[:12]}), tier {editor.tier}")
    neutral = neutral_params(editor.layer)
    cams = portrait([0.0, 35.0], [0.0, 5.0])
    rows = [editor.render(neutral, cams, size)[0]]
    write_obj(out_dir / "neutral.obj", editor.layer(neutral).vertices[0].detach().numpy(), m.f, m.vt, m.ft)
    with progress_bar("{stage} (once for this head, cached afterwards)") as bar:
        editor.train_head(progress=bar)  # after which every prompt edits at once
    report, lines = {}, []
    # the paper's six prompts, then (on a head with left/right shapes) two one-sided ones
    sided = ("wink with the left eye", "a smirk on the right") if getattr(editor.head, "sides", False) else ()
    prompts = PAPER_PROMPTS + sided
    with progress_bar("editing") as bar:
        for i, prompt in enumerate(prompts):
            t0 = time.perf_counter()
            result = editor.edit(neutral, prompt=prompt)
            name = prompt.removeprefix("A person who is ").replace(" ", "_")
            write_obj(out_dir / f"{name}.obj", result.vertices[0].numpy(), m.f, m.vt, m.ft)
            result.params.save(out_dir / f"{name}.npz")
            rows.append(editor.render(result.params, cams, size)[0])
            summary = result.summary()
            report[prompt] = {
                "success": summary["success"][0],
                "target": summary["target"],
                "au": {a: round(v[0], 2) for a, v in summary["au"].items() if v[0] >= 0.3},
                "seconds": round(time.perf_counter() - t0, 2),
            }
            lines.append(
                f"{prompt:32s} success={summary['success'][0]}  target={sorted(summary['target'])}  "
                f"({report[prompt]['seconds']} s)"
            )
            bar({"stage": "edit", "step": i + 1, "total": len(prompts)})
    click.echo("\n".join(lines))  # after the bar: one line per prompt
    tiles = np.stack(rows)  # [1+prompts, 2, H, W, 4]: rows neutral then prompts; columns front, three-quarter
    save_contact_sheet(out_dir / "contact_sheet.png", tiles.transpose(1, 0, 2, 3, 4))  # rows: views; columns: prompts
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    click.echo(f"wrote {out_dir}/: neutral + {len(report)} edits as .obj/.npz, contact_sheet.png, report.json")


@click.command()
@click.option("--models", "models_dir", required=True, type=click.Path(path_type=Path), help="Your model folder.")
@reports_errors
def models(models_dir: Path) -> None:
    """List the user model files found in a folder and what is missing."""
    from faceedit_core.storage.models_dir import ModelsDir

    click.echo(ModelsDir(models_dir).describe())
