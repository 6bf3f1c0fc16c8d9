"""`faceedit demo` (the embedded default end to end) and `faceedit models` (what a model folder holds)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

DEMO_PROMPTS = ("A person who is smiling", "A person who is angry", "A person who is sad",
                "A person who is closing eyes", "A person who is raising brow", "A person who is frowning")


@click.command()
@click.option("--out", "out_dir", default="out/demo", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", default=256, show_default=True, type=click.IntRange(64, 1024))
def demo(out_dir: Path, size: int) -> None:
    """Edit the demo head with the paper's six prompts: OBJs, renders, a contact sheet, AU results."""
    import numpy as np

    from .edit import Editor
    from .mesh_io import write_obj
    from .params import FlameParams
    from .render.cameras import orbit
    from .render.images import contact_sheet, save_png

    out_dir.mkdir(parents=True, exist_ok=True)
    editor = Editor.preview()
    m = editor.layer.model
    click.echo(f"demo head: {m.n_verts} vertices, {len(m.f)} faces (hash {editor.head_hash[:12]}), tier {editor.tier}")
    neutral = FlameParams.zeros(1, 100, 50)
    cams = orbit([0.0, 35.0], [0.0, 5.0])
    rows = [editor.render(neutral, cams, size)[0]]
    write_obj(out_dir / "neutral.obj", editor.layer(neutral).vertices[0].detach().numpy(), m.f, m.vt, m.ft)
    report = {}
    for prompt in DEMO_PROMPTS:
        t0 = time.perf_counter()

        def show(e, prompt=prompt):
            if e["step"] == 1:
                click.echo(f"  training a mapper for '{prompt}' ({e['total']} steps, cached afterwards)")

        result = editor.edit(neutral, prompt=prompt, progress=show)
        name = prompt.removeprefix("A person who is ").replace(" ", "_")
        write_obj(out_dir / f"{name}.obj", result.vertices[0].numpy(), m.f, m.vt, m.ft)
        result.params.save(out_dir / f"{name}.npz")
        rows.append(editor.render(result.params, cams, size)[0])
        summary = result.summary()
        report[prompt] = {"success": summary["success"][0], "target": summary["target"],
                          "au": {a: round(v[0], 2) for a, v in summary["au"].items() if v[0] >= 0.3},
                          "seconds": round(time.perf_counter() - t0, 2)}
        click.echo(f"{prompt:32s} success={summary['success'][0]}  target={sorted(summary['target'])}  "
                   f"({report[prompt]['seconds']} s)")
    tiles = np.stack(rows)  # [1+6, 2, H, W, 4]: rows neutral then prompts; columns front, three-quarter
    sheet = contact_sheet(tiles.transpose(1, 0, 2, 3, 4))  # rows: front, three-quarter; columns: prompts
    save_png(out_dir / "contact_sheet.png", np.concatenate([sheet, np.full(sheet.shape[:2] + (1,), 255, np.uint8)], -1))
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    click.echo(f"wrote {out_dir}/: neutral + six edits as .obj/.npz, contact_sheet.png, report.json")


@click.command()
@click.option("--models", "models_dir", required=True, type=click.Path(path_type=Path), help="Your model folder.")
def models(models_dir: Path) -> None:
    """List the user model files found in a folder and what is missing."""
    from .assets import ModelsDir
    click.echo(ModelsDir(models_dir).describe())
