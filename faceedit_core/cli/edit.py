"""`faceedit edit`: edit the expression of FLAME parameters from a text prompt."""

from __future__ import annotations

import json

import click

from faceedit_core.cli.common import neutral_params, params_option, path_option, reports_errors
from faceedit_core.cli.editor_options import head_editor, head_options
from faceedit_core.cli.progress import progress_bar


@click.command()
@click.option("--prompt", default=None, help="The expression, e.g. 'raise brows slightly' or 'close eyes and frown'.")
@click.option("--mapper", "mapper_ids", multiple=True, help="Trained mapper id(s) to apply (repeatable, composes).")
@params_option
@click.option("--intensity", default=1.0, show_default=True, type=float, help="Scales the edit (0 = unchanged).")
@path_option("--out", "out_path", kind="file", required=True, help="Edited parameters (.npz or .json).")
@path_option("--obj", "obj_path", kind="file", help="Also write the edited mesh as OBJ (first item).")
@head_options("Your model folder: flame/ + next3d/ edit with the paper tier (flame/ alone: the preview tier).")
@reports_errors
def edit(prompt, mapper_ids, params_path, intensity, out_path, obj_path, **head):
    """Edit FLAME parameters from a prompt and write the result (the edited expression, jaw and eyes).

    Prints a JSON report on stdout; progress (a mapper trained on first use) goes to stderr."""
    from faceedit_core.params import FlameParams

    editor = head_editor(**head)
    params = FlameParams.load(params_path) if params_path else neutral_params(editor.layer)
    with progress_bar("{stage} (cached afterwards)") as bar:
        result = editor.edit(params, prompt=prompt, mapper_ids=list(mapper_ids), intensity=intensity, progress=bar)
    result.params.save(out_path)
    if obj_path:
        from faceedit_core.storage.mesh_io import write_obj

        m = editor.layer.model
        write_obj(obj_path, result.vertices[0].numpy(), m.f, m.vt, m.ft)
    summary = result.summary()
    click.echo(
        json.dumps(
            {
                "out": str(out_path),
                "mapper_ids": result.mapper_ids,
                "target": summary["target"],
                "success": summary["success"],
                "au": {a: [round(v, 2) for v in vals] for a, vals in summary["au"].items() if max(vals) >= 0.3},
            },
            indent=1,
        )
    )
