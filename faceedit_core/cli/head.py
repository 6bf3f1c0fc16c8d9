"""`faceedit head`: look at the procedural demo head (summary, OBJ export)."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from faceedit_core.cli.common import neutral_params, reports_errors
from faceedit_core.errors import InputError
from faceedit_core.flame.procedural_expressions import BY_NAME, COMPONENTS
from faceedit_core.params import FlameParams


def parse_expression(spec: str, n_exp: int = 100) -> torch.Tensor:
    """'lip_corner_pull=1.0,cheek_raise=0.6' (or 'smile'-free component names) -> expression [1,n_exp]."""
    expression = torch.zeros(1, n_exp)
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in BY_NAME:
            raise InputError(f"unknown expression component '{name}'; known: {', '.join(BY_NAME)}")
        try:
            weight = float(value) if value else 1.0
        except ValueError:
            raise InputError(f"component '{name}' needs a number after '=', got '{value}'") from None
        if not -2.0 <= weight <= 2.0:
            raise InputError(f"component '{name}' weight {weight} is outside [-2, 2]")
        expression[0, BY_NAME[name].index] = weight
    return expression


def demo_params(layer, expression: str = "", jaw: float = 0.0) -> FlameParams:
    """Demo-head parameters at the layer's widths from an expression spec and a jaw opening (radians about x)."""
    params = neutral_params(layer)
    params.expression[:] = parse_expression(expression, layer.n_exp)
    params.jaw_pose[0, 0] = jaw
    return params.validate()


@click.group()
def head() -> None:
    """Inspect and export the procedural demo head."""


@head.command()
@reports_errors
def info() -> None:
    """Print the demo head's size, joints, landmarks and expression components."""
    from faceedit_core.flame.default_head import demo_head, load_demo_flame

    files = demo_head()
    m = files.model
    layer = load_demo_flame()
    out = layer(neutral_params(layer))
    lo, hi = m.v_template.min(0), m.v_template.max(0)
    click.echo(f"FaceEdit demo head  (cached in {files.folder}, sha256 {files.content_hash[:16]})")
    click.echo(f"  vertices {m.n_verts}, faces {len(m.f)}, uv coords {len(m.vt)}")
    click.echo(f"  size (m): width {hi[0] - lo[0]:.3f}, height {hi[1] - lo[1]:.3f}, depth {hi[2] - lo[2]:.3f}")
    for name, j in zip(("root", "neck", "jaw", "left eye", "right eye"), out.joints[0].tolist()):
        click.echo(f"  joint {name:9s} at ({j[0]:+.3f}, {j[1]:+.3f}, {j[2]:+.3f})")
    click.echo("  landmarks: 68 (iBUG order, DECA layout with 79 yaw rows for the jaw contour)")
    click.echo("  expression components (column: name, FACS, meaning):")
    for c in COMPONENTS:
        click.echo(f"    {c.index:2d}: {c.name:20s} {c.facs:5s} {c.description}")


@head.command()
@click.option("--expression", default="", help="Components with weights, e.g. 'lip_corner_pull=1,cheek_raise=0.6'.")
@click.option("--jaw", default=0.0, type=float, help="Jaw opening in radians (0.3 is wide open).")
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="OBJ file to write."
)
@reports_errors
def export(expression: str, jaw: float, out_path: Path) -> None:
    """Write the demo head with an expression as an OBJ with UVs."""
    from faceedit_core.flame.default_head import demo_head, load_demo_flame
    from faceedit_core.storage.mesh_io import write_obj

    files = demo_head()
    layer = load_demo_flame()
    verts = layer(demo_params(layer, expression, jaw)).vertices[0].detach().numpy()
    write_obj(out_path, verts, files.model.f, files.model.vt, files.model.ft)
    click.echo(f"wrote {out_path} ({len(verts)} vertices, {len(files.model.f)} faces)")
