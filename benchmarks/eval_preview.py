"""Preview-tier evaluation: the paper's six prompts on 100 random identities of the demo head.

Run: .venv/bin/python benchmarks/eval_preview.py --out docs/evaluation.md
For each prompt: AU accuracy of the edit (the paper's rule: every AU of the target present;
Close Eyes by lid aperture, AU43), the unedited baseline's accuracy, identity preservation
(shape coefficients unchanged; mean vertex displacement outside the components' regions the
target uses), and a picture (neutral vs edited renders of a few identities).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from faceedit_core.au.critic import success  # noqa: E402
from faceedit_core.editor import PAPER_PROMPTS
from faceedit_core.factory import build_editor  # noqa: E402
from faceedit_core.flame.procedural_expressions import component_regions  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402
from faceedit_core.render.cameras import orbit  # noqa: E402
from faceedit_core.render.images import contact_sheet, save_png  # noqa: E402

N_IDENTITIES = 100


def identities(n: int, seed: int = 2026) -> FlameParams:
    g = torch.Generator().manual_seed(seed)
    p = FlameParams.zeros(n, 300, 100)
    p.shape[:, :40] = torch.randn(n, 40, generator=g)
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/evaluation.md")
    ap.add_argument("--image", default="docs/images/evaluation_grid.png")
    ns = ap.parse_args()
    torch.set_num_threads(2)
    editor = build_editor()
    params = identities(N_IDENTITIES)
    regions = torch.from_numpy(component_regions(editor.layer.model.shapedirs[:, :, 300:]).max(0) > 0)  # [V]
    rows, tiles = [], []
    cams = orbit([0.0], [0.0])
    show = params.index(slice(0, 3))
    tiles.append(editor.render(show, cams, 160)[:, 0])
    with torch.no_grad():
        neutral_verts = editor.layer(params).vertices
        base_au = editor.objective.intensities(params)
    for prompt in PAPER_PROMPTS:
        result = editor.edit(params, prompt=prompt)
        au = {a: torch.tensor(v) for a, v in result.au.items()}
        target = list(result.target)
        acc = success(au, target).float().mean().item()
        base = success(base_au, target).float().mean().item()
        shape_change = (result.params.shape - params.shape).abs().max().item()
        disp = (result.vertices - neutral_verts).norm(dim=-1)  # [B,V]
        outside = disp[:, ~regions].mean().item() * 1000
        inside = disp[:, regions].mean().item() * 1000
        rows.append(
            (prompt, "+".join(sorted(target, key=lambda a: int(a[2:]))), acc, base, shape_change, inside, outside)
        )
        tiles.append(editor.render(result.params.index(slice(0, 3)), cams, 160)[:, 0])
        print(f"{prompt:32s} AU acc {acc:.2f} (baseline {base:.2f})  outside-region displacement {outside:.3f} mm")
    grid = contact_sheet(np.stack(tiles, 1))  # rows: identities; columns: neutral, six prompts
    save_png(ns.image, np.concatenate([grid, np.full(grid.shape[:2] + (1,), 255, np.uint8)], -1))
    lines = [
        "# Preview tier: measured expression accuracy",
        "",
        f"Produced by `benchmarks/eval_preview.py` (`make eval`) on {N_IDENTITIES} random identities of the demo head",
        "(40 identity coefficients ~ N(0,1), neutral expression), one Emotion Mapper per prompt trained with the",
        "default configuration (`PreviewTrainConfig`: 400 steps, batch 32). AU accuracy follows the paper's rule:",
        "an edit succeeds when every AU of the target is present (critic thresholds: 0.5, AU43 closure 0.75).",
        "",
        "| prompt | target AUs | AU accuracy | unedited baseline | max shape change "
        "| mean displacement in regions (mm) | outside regions (mm) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for prompt, aus, acc, base, sc, inside, outside in rows:
        lines.append(f"| {prompt} | {aus} | {acc:.2f} | {base:.2f} | {sc:.1e} | {inside:.3f} | {outside:.4f} |")
    lines += [
        "",
        "The mapper edits only the expression coefficients, so identity (shape) is unchanged exactly;",
        '"regions" is the union of the expression components\' regions, outside it is the back of the head, neck',
        "and ears, which must not move.",
        "",
        f"![neutral (left) and the six edits for three identities]({Path(ns.image).relative_to(Path(ns.out).parent)})",
        "",
        "Columns: neutral, smiling, angry, sad, closing eyes, raising brow, frowning; rows: three identities.",
        "",
    ]
    Path(ns.out).write_text("\n".join(lines))
    print(f"wrote {ns.out} and {ns.image}")


if __name__ == "__main__":
    main()
