"""The default (ICT) head's evaluation: AU accuracy, identity preservation and an atlas, both parameterisations.

Run: .venv/bin/python benchmarks/eval_ict.py [--identities 100] (`make eval` runs it after
eval_preview.py). It writes its own section of docs/evaluation.md, between the markers
SECTION_BEGIN and SECTION_END (replaced when present, appended otherwise; the rest of the file is
left as it is), and docs/images/ict_atlas_semantic.jpg / ict_atlas_pca.jpg.

For each parameterisation ("semantic": the 52 ARKit shapes, served; "pca": 50 entangled
components, FLAME's stand-in) the head's Emotion Mapper is the editor's own (trained once per head
on first use, then cached under FACEEDIT_HOME), and every prompt edits N identities drawn from
ICT's 100 identity modes (coefficients ~ N(0,1), seed 2026), neutral expression.

Rules (written into the section):
- a prompt whose every target AU is asked at full strength (>= 1) succeeds for an identity when
  every target AU is present (the paper's rule; critic thresholds 0.5, AU43 closure 0.75);
- an AU asked below full strength (t < 1: "slight", "faint", a prototype's weaker AU) must read at
  least threshold x t (`au.critic.target_met`); a low-intensity prompt (one with an intensity word
  below 1: "slight", "slightly", "faint", "a little", ...; the lexicon's INTENSITY_WORDS) must
  moreover read at most LOW_UPPER x t on every target AU: present at about the strength asked, and
  a slight smile that comes out as a full smile fails;
- the unedited baseline is the same rule on the unedited identities.
Identity: the shape coefficients after the edit against before (max |difference|); displacement
(mm, mean over identities and vertices) inside the prompt's region (the vertices that ICT's shapes
for the target AUs move: component region > REGION_MIN; AU43 -> eyeBlink, AU23 -> the lip shapes,
AU25/26/27 -> the jaw's skinned vertices, gaze -> eyeLook and the eyeballs), elsewhere on the face,
and on the scalp, ears and neck (ICT's head_neck part).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ict_atlas import atlas, render_checks  # noqa: E402

from faceedit_core.au.critic import base_au, side_of, target_met  # noqa: E402
from faceedit_core.editor import PAPER_PROMPTS  # noqa: E402
from faceedit_core.errors import InputError  # noqa: E402
from faceedit_core.flame.default_head import demo_head  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402
from faceedit_core.preview.editor import PreviewEditor  # noqa: E402
from faceedit_core.preview.lexicon import INTENSITY_WORDS  # noqa: E402

SECTION_BEGIN = "<!-- ict-head-evaluation: begin (benchmarks/eval_ict.py) -->"
SECTION_END = "<!-- ict-head-evaluation: end -->"
OTHER_PROMPTS = (
    "A person who is surprised",
    "A person who is afraid",
    "A person who is disgusted",
    "contempt",
    "wink with the left eye",
    "a smirk on the right",
    "raise the left eyebrow",
    "pout the lips forward",
    "open the mouth",
    "yawn",
    "squint",
    "wrinkle the nose",
    "look up",
    "slight smile",
    "slightly raise the eyebrows",
)
PROMPTS = tuple(PAPER_PROMPTS) + OTHER_PROMPTS
LOW_UPPER = 1.5  # a low-intensity prompt's target AUs read at most 1.5 x the strength asked
REGION_MIN = 0.1  # a shape's region: vertices it moves by more than 10 % of its largest offset
STRONG = 1.5  # intensity of the hole check (the largest the preview tier serves)
AU_SHAPES = {"AU43": "AU45", "AU23": ("AU24", "AU18", "AU22")}  # critic AUs -> ICT's FACS table
JAW_AUS = ("AU25", "AU26", "AU27")
GAZE_AUS = ("AU61", "AU62", "AU63", "AU64")


def identities(n: int, n_shape: int, n_exp: int, seed: int = 2026) -> FlameParams:
    """n identities, every one of ICT's identity modes ~ N(0,1), neutral expression."""
    p = FlameParams.zeros(n, n_shape, n_exp)
    p.shape[:, :100] = torch.randn(n, 100, generator=torch.Generator().manual_seed(seed))
    return p


def low_intensity(prompt: str) -> bool:
    """Whether the prompt asks for less than the full action (an intensity word below 1)."""
    text = prompt.lower()
    return any(re.search(rf"\b{w}\b", text) for w, s in INTENSITY_WORDS.items() if s < 1)


def judge(au: dict[str, torch.Tensor], target: dict[str, float], low: bool) -> torch.Tensor:
    """[B] bool by the rules in the module docstring."""
    ok = target_met(au, target)
    if low:
        for name, t in target.items():
            ok &= au[name] <= LOW_UPPER * t
    return ok


def region(ict, target: dict[str, float]) -> np.ndarray:
    """bool [V]: the vertices ICT's own (semantic) shapes for the target's AUs (and sides) move."""
    by_name = {c.name: c for c in demo_head("semantic").components}  # the same mesh for both parameterisations
    table = ict.manifest["facs"]
    mask = np.zeros(ict.n_verts, bool)
    for name in target:
        au, side = base_au(name), side_of(name)
        if au in JAW_AUS:
            mask |= ict.model.weights[:, 2] > REGION_MIN
            continue
        if au in GAZE_AUS:
            mask |= ict.part_mask("eyeball_left", "eyeball_right")
        codes = AU_SHAPES.get(au, au)
        for code in (codes,) if isinstance(codes, str) else codes:
            for shape in table.get(code, {}).get("shapes", ()):
                if shape in by_name and (side is None or not shape.endswith(("_L", "_R")) or shape.endswith(side)):
                    mask |= by_name[shape].region > REGION_MIN
    return mask


def evaluate(editor: PreviewEditor, params: FlameParams, prompts=PROMPTS) -> list[dict]:
    """One row per prompt: target, accuracy, baseline, low-intensity flag, identity figures, seconds. An
    edit the editor refuses (its coefficients past FLAME's limits) counts as failed, with the reason."""
    ict = editor.head.info["ict"]
    face, scalp = ict.part_mask("face"), ict.part_mask("head_neck")
    with torch.no_grad():
        neutral = editor.layer(editor.checked_params(params)).vertices
        before = editor.objective.intensities(editor.checked_params(params))
    rows = []
    for prompt in prompts:
        t0 = time.perf_counter()
        target = editor.text_to_au.parse(prompt).intensities
        inside, low = region(ict, target), low_intensity(prompt)
        try:
            result = editor.edit(params, prompt=prompt)
        except InputError as exc:
            rows.append(_refused(prompt, target, low, judge(before, target, low), str(exc)))
            print(f"  {prompt:34s} refused: {exc}")
            continue
        seconds = time.perf_counter() - t0
        au = {a: torch.tensor(v) for a, v in result.au.items()}
        disp = (result.vertices - neutral).norm(dim=-1).numpy() * 1000  # [B,V] mm
        rows.append(
            {
                "prompt": prompt,
                "target": target,
                "low": low,
                "accuracy": judge(au, target, low).float().mean().item(),
                "baseline": judge(before, target, low).float().mean().item(),
                "readings": {a: float(au[a].mean()) for a in target},
                "shape_change": float((result.params.shape[:, :100] - params.shape[:, :100]).abs().max()),
                "inside_mm": float(disp[:, inside].mean()),
                "face_outside_mm": float(disp[:, face & ~inside].mean()),
                "scalp_neck_mm": float(disp[:, scalp].mean()),
                "scalp_neck_max_mm": float(disp[:, scalp].max()),
                "seconds": seconds,
            }
        )
        print(f"  {prompt:34s} acc {rows[-1]['accuracy']:.2f} (baseline {rows[-1]['baseline']:.2f}) {seconds:.1f} s")
    return rows


def _refused(prompt: str, target: dict, low: bool, baseline: torch.Tensor, reason: str) -> dict:
    nan = float("nan")
    return {
        "prompt": prompt,
        "target": target,
        "low": low,
        "accuracy": 0.0,
        "baseline": baseline.float().mean().item(),
        "readings": {},
        "refused": reason.split(", above")[0],
        **dict.fromkeys(("shape_change", "inside_mm", "face_outside_mm", "scalp_neck_mm", "scalp_neck_max_mm"), nan),
        "seconds": nan,
    }


def checks(editor: PreviewEditor, params: FlameParams, prompts=PROMPTS) -> dict[str, dict]:
    """Per prompt, the two atlas identities edited at intensity STRONG: holes and teeth pixels, or
    the refusal when the edit leaves FLAME's parameter limits (params.LIMITS)."""
    out = {}
    for prompt in prompts:
        try:
            edited = editor.edit(params, prompt=prompt, intensity=STRONG).params
        except InputError as exc:
            out[prompt] = {"refused": str(exc)}
            continue
        out[prompt] = render_checks(editor, edited)
    return out


def _aus(target: dict[str, float]) -> str:
    order = sorted(target.items(), key=lambda kv: (int(re.sub(r"\D", "", kv[0].split("_")[0])), kv[0]))
    return " ".join(f"{a}" + (f"@{v:g}" if v != 1 else "") for a, v in order)


# what the tables above have shown on this head and critic (re-read them when either changes)
NOTES = [
    "**Reading the tables.**",
    "",
    "- *afraid*: AU4 (asked at 0.6) is read under AU1 + AU2 by the brows' medial pull (raised brows count as no",
    "  drop, au/critic.py); ICT's browDown pulls the inner brows together by little, so AU4 reads 0.36",
    "  (semantic) and 0.44 (PCA), over the 0.3 it needs. Before that rule the raised brows cancelled the pull",
    "  and the prompt failed",
    "  on every identity.",
    "- *angry*: AU5 is asked at half strength (the glare under lowered brows, preview/lexicon.py); at full",
    "  strength the wide-open eyes dominated the atlas and the face read as startled.",
    "- *slight smile*, *slightly raise the eyebrows*: a channel asked below full strength is held within 1.3 x",
    "  its target in training (au/objective.LOW_BAND); before, AU6 of the slight smile read 0.71 for 0.5 asked",
    "  and 17 of 100 faces came out past the 1.5 x cap (0.83).",
    "- *closing eyes*, *wink*: ICT's eyeBlink is one offset for every identity; identity modes that open the",
    "  eye wider leave a gap (at eyeBlink = 1 the closure reads 0.84 on average, 0.49 at worst, 0.75 or more",
    "  on 91 of 100 identities). The mapper reads the identity (au/objective.AUObjective.identity) and closes",
    "  wider eyes further with the lid and brow shapes around the blink; before it did, closing eyes read",
    "  0.87 (semantic) and 0.74 (PCA), the wink 0.92 and 0.55. A wink's other eye stays open.",
    "- *open the mouth*, *yawn*, *surprised*: the jaw joint opens the mouth and the lips part with it (AU25",
    "  reads 3-5 x its 5 mm reference); teeth show in both views. An AU25 set by a jaw drop is held up but",
    "  not pulled back to its target (au/objective.py SET_BY), and the lip corners' ride with the jaw",
    "  (AU15, AU23) is a jaw companion: before, the mapper closed the lips over the open jaw (mouthClose).",
    "- PCA: the mapper keeps |psi| <= 6 (PreviewTrainConfig.pca_bound), so no edit passes FLAME's limit",
    "  |psi| <= 10 (params.LIMITS) even at intensity 1.5; without that term sad, afraid, surprised and yawn",
    "  reached 10.1-14.4 at intensity 1.5 and were refused.",
    "",
]


def section(results: dict[str, dict], n: int, atlases: dict[str, str]) -> list[str]:
    """The markdown section: rules, one accuracy table per parameterisation, identity, render checks."""
    lines = [
        SECTION_BEGIN,
        "## The default head (ICT Face Model): AU accuracy on 21 prompts, both parameterisations",
        "",
        f"Produced by `benchmarks/eval_ict.py` (`make eval`) on {n} identities drawn from ICT's 100 identity modes",
        "(coefficients ~ N(0,1), seed 2026), neutral expression; each parameterisation's own head mapper",
        "(`PreviewTrainConfig()` defaults, trained once per head and cached). `semantic` is the served default",
        "(52 ARKit shapes with left/right); `pca` is the 50-component entangled space, FLAME's stand-in.",
        "",
        "**Rules.** A prompt whose target AUs are all asked at full strength succeeds when every target AU is",
        "present (the paper's rule; critic thresholds 0.5, AU43 closure 0.75). An AU asked at t < 1 must read at",
        "least threshold x t. A *low-intensity* prompt (an intensity word below 1: slight, faint, a little; marked",
        "*low*) must moreover read",
        f"at most {LOW_UPPER:g} x t on each: the strength asked, not full presence (a slight smile that comes out",
        "full fails). The unedited baseline is the same rule on the unedited faces. `@t` in the target column is",
        "the strength asked; `_L`/`_R` the subject's side.",
        "",
    ]
    for name, res in results.items():
        rows = res["rows"]
        mean = np.mean([r["accuracy"] for r in rows])
        trained = "found in the cache" if res["train_s"] < 1 else f"trained in {res['train_s']:.0f} s"
        lines += [
            f"### {name} ({res['head']}; mean accuracy {mean:.2f}, head mapper {trained})",
            "",
            "| prompt | target AUs | AU accuracy | unedited baseline | mean reading of the target AUs |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in rows:
            low = " *low*" if r["low"] else ""
            reading = ", ".join(f"{a} {v:.2f}" for a, v in r["readings"].items()) or f"refused: {r.get('refused')}"
            lines.append(
                f"| {r['prompt']}{low} | {_aus(r['target'])} | {r['accuracy']:.2f} | {r['baseline']:.2f} | {reading} |"
            )
        lines.append("")
    lines += NOTES + [
        "### Identity preservation",
        "",
        "The mapper edits expression, jaw and eyes only: the shape coefficients are unchanged (max |change| below).",
        "Displacement from the unedited face, mean over identities and vertices, in mm: inside the prompt's region",
        "(the vertices ICT's shapes for its AUs move), elsewhere on the face, and on the scalp, ears and neck.",
        "",
        "| prompt | "
        + " | ".join(f"{k}: shape change, inside, face outside, scalp/neck (max)" for k in results)
        + " |",
        "| --- | " + " | ".join("---" for _ in results) + " |",
    ]
    for i, prompt in enumerate(PROMPTS):
        cells = []
        for res in results.values():
            r = res["rows"][i]
            cells.append(
                f"{r['shape_change']:.0e}, {r['inside_mm']:.2f}, {r['face_outside_mm']:.2f}, "
                f"{r['scalp_neck_mm']:.3f} ({r['scalp_neck_max_mm']:.2f})"
            )
        lines.append(f"| {prompt} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"### Renders at intensity {STRONG:g}: holes and teeth",
        "",
        "Each prompt at intensity 1.5 on the two atlas identities, front and three-quarter at 256 px: background",
        "pixels enclosed by the head (a hole or crack; 0 is required) and teeth pixels (an open mouth shows teeth).",
        "",
        "| prompt | " + " | ".join(f"{k}: hole pixels, teeth pixels (front / 3/4)" for k in results) + " |",
        "| --- | " + " | ".join("---" for _ in results) + " |",
    ]
    for prompt in PROMPTS:
        cells = []
        for res in results.values():
            c = res["checks"][prompt]
            if "refused" in c:
                cells.append(f"refused: {c['refused'].split(', above')[0]}")
                continue
            hole = sum(sum(h) for h in c["holes"])
            teeth = " ; ".join("/".join(str(t) for t in ids) for ids in c["teeth"])
            cells.append(f"{hole}, {teeth}")
        lines.append(f"| {prompt} | " + " | ".join(cells) + " |")
    lines += [""]
    for name, path in atlases.items():
        lines += [f"![{name}: every prompt on two identities, front and three-quarter]({path})", ""]
    lines += [
        "Atlas cells: identity 1 front, three-quarter, identity 2 front, three-quarter, at intensity 1.",
        SECTION_END,
    ]
    return lines


def write_section(path: Path, lines: list[str]) -> None:
    """Replace this script's section of `path` (between the markers), or append it."""
    text = path.read_text() if path.exists() else ""
    block = "\n".join(lines) + "\n"
    if SECTION_BEGIN in text and SECTION_END in text:
        head, rest = text.split(SECTION_BEGIN, 1)
        text = head + block.rstrip("\n") + rest.split(SECTION_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def run(parameterisation: str, n: int, images: Path, doc_dir: Path) -> dict:
    editor = PreviewEditor.default(parameterisation=parameterisation)
    t0 = time.perf_counter()
    editor.train_head()
    train_s = time.perf_counter() - t0
    print(f"{editor.head.label}: head mapper ready in {train_s:.1f} s")
    params = identities(n, editor.layer.n_shape, editor.layer.n_exp)
    rows = evaluate(editor, params)
    pair = params.index(slice(0, 2))
    path = images / f"ict_atlas_{parameterisation}.jpg"
    cells = [("neutral", pair)]
    for prompt in PROMPTS:
        try:
            cells.append((prompt, editor.edit(pair, prompt=prompt).params))
        except InputError:
            cells.append((f"{prompt} (refused: coefficients past FLAME's limit; neutral shown)", pair))
    atlas(editor, cells, path)
    return {
        "head": editor.head.label,
        "rows": rows,
        "train_s": train_s,
        "checks": checks(editor, pair),
        "atlas": str(path.relative_to(doc_dir) if path.is_relative_to(doc_dir) else path),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/evaluation.md")
    ap.add_argument("--images", default="docs/images")
    ap.add_argument("--identities", type=int, default=100)
    ap.add_argument("--parameterisations", default="semantic,pca")
    ns = ap.parse_args()
    out, images = Path(ns.out), Path(ns.images)
    images.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in ns.parameterisations.split(","):
        results[name] = run(name, ns.identities, images, out.parent)
    atlases = {name: res["atlas"] for name, res in results.items()}
    write_section(out, section(results, ns.identities, atlases))
    print(f"wrote the ICT section of {out} and {', '.join(atlases.values())}")


if __name__ == "__main__":
    main()
