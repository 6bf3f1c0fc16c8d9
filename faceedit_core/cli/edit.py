"""`faceedit edit`: edit the expression of FLAME parameters from a text prompt."""

from __future__ import annotations

import json
from pathlib import Path

import click

from faceedit_core.cli.common import flame_options, head_editor, neutral_params, reports_errors, show_training


@click.command()
@click.option("--prompt", default=None, help="The expression, e.g. 'raise brows slightly' or 'close eyes and frown'.")
@click.option("--mapper", "mapper_ids", multiple=True, help="Trained mapper id(s) to apply (repeatable, composes).")
@click.option(
    "--params",
    "params_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Input FLAME parameters (.npz, .json or an EMOCA output folder); default: the neutral demo head.",
)
@click.option("--intensity", default=1.0, show_default=True, type=float, help="Scales the edit (0 = unchanged).")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Edited parameters (.npz or .json).",
)
@click.option(
    "--obj",
    "obj_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the edited mesh as OBJ (first item).",
)
@flame_options
@reports_errors
def edit(prompt, mapper_ids, params_path, intensity, out_path, obj_path, flame, landmarks, n_exp):
    """Edit FLAME parameters from a prompt and write the result (the edited expression, jaw and eyes)."""
    from faceedit_core.params import FlameParams

    editor = head_editor(flame, landmarks, n_exp)
    params = FlameParams.load(params_path) if params_path else neutral_params(editor.layer)

    result = editor.edit(
        params, prompt=prompt, mapper_ids=list(mapper_ids), intensity=intensity, progress=show_training
    )
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
