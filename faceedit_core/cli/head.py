"""`faceedit head`: look at the default head, the ICT Face Model (summary, OBJ export)."""

from __future__ import annotations

from pathlib import Path

import click

from faceedit_core.cli.common import neutral_params, reports_errors
from faceedit_core.errors import InputError
from faceedit_core.params import FlameParams

WEIGHT_LIMIT = 2.0
JAW_NAME = "jawOpen"  # ICT's jawOpen is the jaw joint (docs/ict_head.md), not an expression column

parameterisation_option = click.option(
    "--parameterisation",
    type=click.Choice(["semantic", "pca"]),
    default="semantic",
    show_default=True,
    help="semantic: 52 ARKit shapes with _L/_R (served); pca: 50 entangled components (FLAME's stand-in).",
)


def parse_expression(spec: str, head) -> tuple[dict[str, float], float]:
    """'mouthSmile_L=1,eyeBlink_R=0.5,jawOpen=0.4' -> ({component: weight}, jawOpen weight).

    Names are the head's components (ARKit names with _L/_R; 'pca07' on the PCA head, which also
    takes the ARKit names through its least-squares map); a name without '=' weighs 1."""
    weights: dict[str, float] = {}
    jaw = 0.0
    known = {c.name for c in head.components} | set(head.ict.semantic_names if head.ict else ())
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        if name != JAW_NAME and name not in known:
            sample = ", ".join(sorted(known)[:6])
            raise InputError(
                f"unknown expression component '{name}' ({head.label}: {sample}, ... jawOpen; "
                "`faceedit head info` lists them all)"
            )
        try:
            weight = float(value) if value else 1.0
        except ValueError:
            raise InputError(f"component '{name}' needs a number after '=', got '{value}'") from None
        if not -WEIGHT_LIMIT <= weight <= WEIGHT_LIMIT:
            raise InputError(f"component '{name}' weight {weight} is outside [-{WEIGHT_LIMIT}, {WEIGHT_LIMIT}]")
        if name == JAW_NAME:
            jaw += weight
        else:
            weights[name] = weights.get(name, 0.0) + weight
    return weights, jaw


def demo_params(layer, expression: str = "", jaw: float = 0.0, head=None) -> FlameParams:
    """Default-head parameters at the layer's widths from an expression spec (see `parse_expression`)
    and a jaw opening `jaw` in radians about the hinge (added to the spec's jawOpen)."""
    import torch

    from faceedit_core.flame.default_head import demo_head

    head = head or demo_head()
    if layer.n_exp != head.model.n_exp:
        raise InputError(f"expression components name {head.label}'s {head.model.n_exp} columns, not this head's")
    weights, jaw_open = parse_expression(expression, head)
    params = neutral_params(layer)
    if weights:
        params.expression[0] = torch.as_tensor(head.ict.expression_vector(weights))
    params.jaw_pose[0] = torch.as_tensor(head.ict.jaw_pose(jaw_open)) + torch.as_tensor(head.ict.jaw_axis) * jaw
    return params.validate()


@click.group()
def head() -> None:
    """Inspect and export the default head (the ICT Face Model)."""


@head.command()
@parameterisation_option
@reports_errors
def info(parameterisation: str) -> None:
    """Print the default head's size, parts, joints, landmarks and expression components."""
    from faceedit_core.flame.default_head import demo_head
    from faceedit_core.flame.ict import JOINT_NAMES
    from faceedit_core.flame.layer import FlameLayer
    from faceedit_core.render.ict_materials import render_faces

    files = demo_head(parameterisation)
    m, ict = files.model, files.ict
    layer = FlameLayer(m, files.landmarks)
    out = layer(neutral_params(layer))
    lo, hi = m.v_template.min(0), m.v_template.max(0)
    click.echo(f"FaceEdit default head: ICT Face Model Light (USC ICT, MIT licence), {parameterisation} expressions")
    click.echo(f"  from {files.folder} (sha256 {files.content_hash[:16]})")
    click.echo(
        f"  vertices {m.n_verts}, faces {len(m.f)} ({int(render_faces(ict).sum())} rendered), uv coords {len(m.vt)}"
    )
    click.echo(f"  size (m): width {hi[0] - lo[0]:.3f}, height {hi[1] - lo[1]:.3f}, depth {hi[2] - lo[2]:.3f}")
    click.echo(f"  parts: {', '.join(n for n in ict.part_labels)}")
    for name, j in zip(JOINT_NAMES, out.joints[0].tolist()):
        click.echo(f"  joint {name:9s} at ({j[0]:+.3f}, {j[1]:+.3f}, {j[2]:+.3f})")
    click.echo(
        f"  jaw: jawOpen is the jaw joint, {ict.jaw_open_angle:.3f} rad about the hinge "
        "(--expression jawOpen=1; AU26/AU27)"
    )
    click.echo(f"  identity: {ict.n_identity} modes, shape coefficients ~ N(0,1)")
    click.echo("  landmarks: 68 (iBUG order, DECA layout with 79 yaw rows for the jaw contour)")
    click.echo(f"  expression components: {len(files.components)} (column: name, side, FACS, meaning)")
    for c in files.components:
        click.echo(f"    {c.index:2d}: {c.name:20s} {c.side or '-':1s} {'+'.join(c.facs) or '-':9s} {c.description}")


@head.command()
@click.option(
    "--expression", default="", help="Components with weights, e.g. 'mouthSmile_L=1,mouthSmile_R=1,jawOpen=0.3'."
)
@click.option("--jaw", default=0.0, type=float, help="Extra jaw opening in radians about the hinge.")
@parameterisation_option
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="OBJ file to write."
)
@reports_errors
def export(expression: str, jaw: float, parameterisation: str, out_path: Path) -> None:
    """Write the default head with an expression as an OBJ with UVs (every part, ICT's vertex order)."""
    from faceedit_core.flame.default_head import demo_head, load_demo_flame
    from faceedit_core.storage.mesh_io import write_obj

    files = demo_head(parameterisation)
    layer = load_demo_flame(parameterisation=parameterisation)
    verts = layer(demo_params(layer, expression, jaw, files)).vertices[0].detach().numpy()
    write_obj(out_path, verts, files.model.f, files.model.vt, files.model.ft)
    click.echo(f"wrote {out_path} ({len(verts)} vertices, {len(files.model.f)} faces)")
