"""Preview-tier evaluation across heads: the critic's readings, conditioned vs per-prompt mappers, symmetry.

Run: .venv/bin/python benchmarks/eval_preview.py --out docs/evaluation.md   (`make eval`; minutes)
     .venv/bin/python benchmarks/eval_preview.py --quick                    (small configs, a smoke run)

Heads: the procedural head, the FLAME-format stand-in (FLAME 2020 layout, faceedit_core/flame/
standin.py) and, when it is installed, the ICT head (semantic ARKit shapes, and its PCA variant).
For each head:
1. the critic across heads: each head's own version of an action at full strength (a procedural
   component, a stand-in action field, an ICT shape; the jaw joint at 0.2 rad on all) and what the
   critic reads for it, against the documented anatomical references (au/critic.py);
2. the head's conditioned Emotion Mapper, trained once (time reported), against one mapper per
   prompt trained alone (the previous design: 400 steps, batch 32) and a per-prompt fine-tune of
   the conditioned mapper (100 steps): AU accuracy per evaluation prompt over N random identities
   (every target AU present at the intensity asked), the unedited baseline, the left-right asymmetry
   of symmetric prompts (critic, mean |L - R| over the lateral actions) and of their mesh edits
   (mirror error of the displacement field, as a share of the displacement);
3. renders of the side prompts (front and three-quarter views) into docs/images/.
Heads run in parallel processes when --jobs > 1 (each with --threads torch threads).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from faceedit_core.editor import PAPER_PROMPTS  # noqa: E402

SIDE_PROMPTS = ("wink with the left eye", "a smirk on the right", "raise one eyebrow", "left brow up, right brow down")
OTHER_PROMPTS = ("open the mouth", "yawn", "surprised", "look left", "slight smile", "close eyes and frown")
EVAL_PROMPTS = PAPER_PROMPTS + SIDE_PROMPTS + OTHER_PROMPTS
PER_PROMPT = {"steps": 400, "batch": 32}  # the previous design's per-prompt mapper
FINE_TUNE_STEPS = 100
WITHIN = 0.05  # the conditioned mapper's accuracy within this of a per-prompt mapper's, on every prompt
# the critic table: action -> how each head expresses it at full strength
ACTIONS = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU12", "AU14", "AU15", "AU17", "AU18", "AU20", "AU23")
ACTIONS += ("AU24", "AU25", "AU43", "AU26 (jaw 0.2 rad)")
ICT_SHAPES = {
    "AU1": "browInnerUp",
    "AU2": "browOuterUp",
    "AU4": "browDown",
    "AU5": "eyeWide",
    "AU6": "cheekSquint",
    "AU7": "eyeSquint",
    "AU9": "noseSneer",
    "AU12": "mouthSmile",
    "AU14": "mouthDimple",
    "AU15": "mouthFrown",
    "AU17": "mouthShrugLower",
    "AU18": "mouthPucker",
    "AU20": "mouthStretch",
    "AU24": "mouthPress",
    "AU25": "mouthLowerDown",
    "AU43": "eyeBlink",
}


def build_head(name: str):
    from faceedit_core.flame.layer import FlameLayer
    from faceedit_core.preview.head import PreviewHead

    if name == "procedural":
        return PreviewHead.procedural()
    if name == "standin":
        from faceedit_core.flame.standin import build_flame_standin

        s = build_flame_standin("2020")
        return PreviewHead(
            FlameLayer(s.model, s.landmarks), s.content_hash(), "FLAME-format stand-in (2020 layout)", 50, "pca"
        )
    if name in ("ict", "ict-pca"):
        return PreviewHead.demo("semantic" if name == "ict" else "pca")
    raise SystemExit(f"unknown head {name}")


def available_heads() -> list[str]:
    heads = ["procedural", "standin"]
    try:
        from faceedit_core.flame import ict  # noqa: F401

        heads += ["ict", "ict-pca"]
    except ImportError:
        pass
    return heads


# ---------------------------------------------------------------------------- 1. the critic across heads
def action_params(name: str, head, action: str):
    """FlameParams [1] of `head`'s own full-strength version of `action`, or None when it has none."""
    from faceedit_core.params import FlameParams

    layer = head.layer
    p = FlameParams.zeros(1, layer.n_shape, layer.n_exp)
    if action.startswith("AU26"):
        p.jaw_pose[0, 0] = 0.2
        return p
    if name == "procedural":
        from faceedit_core.flame.procedural_expressions import COMPONENTS

        comp = next((c for c in COMPONENTS if c.facs == action), None)
        if comp is None:
            return None
        p.expression[0, comp.index] = 1.0
        return p
    if name == "standin":
        from faceedit_core.flame.standin import build_flame_standin

        s = build_flame_standin("2020")
        fields = [k for k in s.action_coefficients if k.split("_")[0] == action]
        if not fields:
            return None
        p.expression[0, :100] = torch.from_numpy(sum(s.action_coefficients[k] for k in fields))
        return p
    ict = head.info["ict"]
    shape = ICT_SHAPES.get(action)
    if shape is None:
        return None
    names = [n for n in ict.semantic_names if n in (shape, f"{shape}_L", f"{shape}_R")]
    p.expression[0] = torch.from_numpy(ict.expression_vector({n: 1.0 for n in names}))[: layer.n_exp]
    return p


def critic_table(name: str, head) -> dict:
    from faceedit_core.au.critic import BILATERAL

    rows = {}
    for action in ACTIONS:
        p = action_params(name, head, action)
        if p is None:
            rows[action] = None
            continue
        au_name = action.split(" ")[0]
        with torch.no_grad():
            au = head_objective(head).intensities(p)
        spill = max((au[a].item(), a) for a in BILATERAL if a not in (au_name, "AU25", "AU27") and a != "AU26")
        rows[action] = {"reading": au[au_name].item(), "spill": spill[0], "spill_au": spill[1]}
    return rows


_OBJECTIVES: dict = {}


def head_objective(head):
    from faceedit_core.au.objective import AUObjective

    if id(head) not in _OBJECTIVES:
        _OBJECTIVES[id(head)] = AUObjective(head.layer)
    return _OBJECTIVES[id(head)]


# ---------------------------------------------------------------------------- 2. mappers
def mesh_asymmetry(head, params, edited) -> float | None:
    """Mirror error of the edit's displacement field, as a share of the displacement (symmetric template)."""
    from faceedit_core.preview.head import mirror_map

    m = mirror_map(head.layer)
    if m is None:
        return None
    with torch.no_grad():
        d = (head.layer(edited).vertices - head.layer(params).vertices)[0]
    mirrored = d[torch.from_numpy(m)] * torch.tensor([-1.0, 1.0, 1.0])
    return ((d - mirrored).norm(dim=1).mean() / d.norm(dim=1).mean().clamp(min=1e-12)).item() / 2


def evaluate_head(name: str, quick: bool, n_ids: int, threads: int, image_dir: str | None) -> dict:
    torch.set_num_threads(threads)
    from faceedit_core.au.critic import GAZE, asymmetry, target_met
    from faceedit_core.au.objective import target_vector
    from faceedit_core.preview.editor import PreviewEditor
    from faceedit_core.preview.text_to_au import TextToAU
    from faceedit_core.preview.train import (
        PreviewTrainConfig,
        apply_residual,
        mapper_residual,
        sample_start,
        train_preview_mapper,
    )

    head = build_head(name)
    parser = TextToAU()
    out = {"head": head.label, "vertices": head.layer.n_verts, "n_edit": head.n_edit, "sides": bool(head.sides)}
    out["critic"] = critic_table(name, head)
    cfg = PreviewTrainConfig(steps=300, batch=32) if quick else PreviewTrainConfig()
    editor = PreviewEditor(head, text_to_au=parser, train_config=cfg)  # its mapper store: trained once, cached
    objective, cached = editor.objective, editor.store.exists(editor.head_mapper_id())
    t0, c0 = time.perf_counter(), time.process_time()
    mapper = editor.head_mapper()
    out["train"] = {
        "steps": cfg.steps,
        "batch": cfg.batch,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "threads": threads,
        "cached": cached,
    }
    params = sample_start(PreviewTrainConfig(neutral_prob=1.0), head, n_ids, torch.Generator().manual_seed(2026))
    mean_identity = params.index(0).replace(shape=torch.zeros_like(params.shape[:1]))
    per_prompt_cfg = replace(cfg, **(PER_PROMPT if not quick else {"steps": 60, "batch": 16}))
    rows = []
    for prompt in EVAL_PROMPTS:
        target = parser.parse(prompt).intensities
        if not head.sides and any("_" in k for k in target):
            rows.append({"prompt": prompt, "target": target, "skipped": "no sides on this head"})
            continue
        if not objective.has_gaze and any(k in GAZE for k in target):
            rows.append({"prompt": prompt, "target": target, "skipped": "no eyeballs"})
            continue
        vec = target_vector(target)

        def score(m, p=params):
            with torch.no_grad():
                edited = apply_residual(p, *mapper_residual(m, p, vec, objective.identity(p)))
                au = objective.intensities(edited)
            return au, edited

        au, edited = score(mapper)
        with torch.no_grad():
            base = objective.intensities(params)
        row = {
            "prompt": prompt,
            "target": target,
            "conditioned": target_met(au, target).float().mean().item(),
            "baseline": target_met(base, target).float().mean().item(),
            "reading": float(np.mean([au[c].mean().item() for c in target])),
            "jaw_deg": float(np.degrees(edited.jaw_pose[:, 0].mean().item())),
        }
        symmetric = not any("_" in k for k in target)
        if symmetric:
            row["asymmetry"] = asymmetry(au).mean().item()
        if symmetric and not any(k in GAZE for k in target):  # both eyes turning one way is no mirror image
            _, e1 = score(mapper, mean_identity)
            row["mesh_asymmetry"] = mesh_asymmetry(head, mean_identity, e1)
        t1 = time.process_time()
        single, _ = train_preview_mapper(head, per_prompt_cfg, target=target, objective=objective)
        row["per_prompt"] = target_met(score(single)[0], target).float().mean().item()
        row["per_prompt_cpu_s"] = time.process_time() - t1
        tuned, _ = train_preview_mapper(
            head, replace(per_prompt_cfg, steps=FINE_TUNE_STEPS if not quick else 10), target=target, init=mapper
        )
        row["fine_tuned"] = target_met(score(tuned)[0], target).float().mean().item()
        rows.append(row)
        print(
            f"[{name}] {prompt:34s} conditioned {row['conditioned']:.2f}  per-prompt {row['per_prompt']:.2f}",
            flush=True,
        )
    out["prompts"] = rows
    if image_dir:
        out["image"] = render_side_prompts(name, editor, mapper, parser, Path(image_dir))
    return out


def render_side_prompts(name: str, editor, mapper, parser, folder: Path) -> str:
    from faceedit_core.au.objective import target_vector
    from faceedit_core.params import FlameParams
    from faceedit_core.preview.train import apply_residual, mapper_residual
    from faceedit_core.render.cameras import orbit
    from faceedit_core.render.images import contact_sheet, save_png

    head = editor.head
    prompts = ("neutral",) + (SIDE_PROMPTS if head.sides else ()) + ("A person who is smiling", "open the mouth")
    p0 = FlameParams.zeros(1, head.layer.n_shape, head.layer.n_exp)
    identity = editor.objective.identity(p0)
    cams = orbit([0.0, 35.0], [0.0, 5.0])
    cols = []
    for prompt in prompts:
        p = p0
        if prompt != "neutral":
            with torch.no_grad():
                target = target_vector(parser.parse(prompt).intensities)
                p = apply_residual(p0, *mapper_residual(mapper, p0, target, identity))
        cols.append(editor.render(p, cams, 192)[0])  # [2 views, H, W, 4]
    sheet = contact_sheet(np.stack(cols, 1))  # rows: front, three-quarter; columns: prompts
    path = folder / f"preview_{name}.png"
    save_png(path, np.concatenate([sheet, np.full(sheet.shape[:2] + (1,), 255, np.uint8)], -1))
    return f"{path.name}: {', '.join(prompts)}"


# ---------------------------------------------------------------------------- report
def markdown(results: list[dict], n_ids: int, quick: bool) -> str:
    from faceedit_core.au.critic import REFERENCE_MM

    lines = [
        "# Preview tier: measured expression accuracy, per head",
        "",
        f"Produced by `benchmarks/eval_preview.py` (`make eval`){' with --quick' if quick else ''} on {n_ids} random "
        "identities per head (identity coefficients ~ N(0,1), neutral expression). AU accuracy: the share of edits "
        "in which every target AU is present at the intensity asked (critic threshold x min(1, target): the paper's "
        "rule for its six prompts; AU43: 0.75 of a full blink). *Conditioned*: the head's one Emotion Mapper, "
        "conditioned on the AU target; *per-prompt*: one mapper trained for that prompt alone (the previous design, "
        f"400 steps, batch 32); *fine-tuned*: the conditioned mapper fine-tuned for the prompt alone "
        f"({FINE_TUNE_STEPS} steps). *Asymmetry L-R*: the critic's mean |L - R| over the lateral actions; *mesh "
        "asym.*: the mirror error of the mean identity's displacement field as a share of the displacement "
        "(symmetric prompts without gaze, on a mirror-symmetric template; '-' otherwise). *Jaw*: the mean jaw "
        "rotation the edit adds.",
        "",
    ]
    lines += ["## The critic across heads", ""]
    lines += [
        "Each head's own version of an action at full strength (procedural: its one-AU component at 1.0; stand-in: "
        "the action field it was built from, both sides; ICT: the ARKit shape(s), both sides at 1.0; all: the jaw "
        "joint at 0.2 rad) as the critic reads it, in units of the anatomical reference (IOD-normalised, "
        "au/critic.py: 1.0 = a clear full action, present from 0.5). *Spill*: the largest other reading.",
        "",
        "| action | reference | " + " | ".join(r["head"] for r in results) + " |",
        "| --- | --- | " + " | ".join("---" for _ in results) + " |",
    ]
    for action in ACTIONS:
        base = action.split(" ")[0]
        ref = f"{REFERENCE_MM[base]:g} mm" if base in REFERENCE_MM else "closure"
        cells = []
        for r in results:
            c = r["critic"].get(action)
            cells.append("-" if c is None else f"{c['reading']:.2f} (spill {c['spill_au']} {c['spill']:.2f})")
        lines.append(f"| {action} | {ref} | " + " | ".join(cells) + " |")
    for r in results:
        t = r["train"]
        lines += [
            "",
            f"## {r['head']}",
            "",
            f"{r['vertices']} vertices, {r['n_edit']} expression coefficients edited, "
            f"{'one-sided actions possible' if r['sides'] else 'mirror-symmetric components (no sides)'}. "
            f"Conditioned mapper: {t['steps']} steps x batch {t['batch']}, "
            + (
                "found in the mapper cache (training time: docs/performance.md)."
                if t.get("cached")
                else f"trained once in {t['wall_s']:.0f} s ({t['cpu_s']:.0f} s CPU, {t['threads']} threads)."
            ),
            "",
            "| prompt | target | conditioned | per-prompt | fine-tuned | unedited | asymmetry L-R | mesh asym. | jaw |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in r["prompts"]:
            tgt = ",".join(f"{k}={v:g}" for k, v in sorted(row["target"].items(), key=lambda kv: kv[0]))
            if "skipped" in row:
                lines.append(f"| {row['prompt']} | {tgt} | {row['skipped']} | | | | | | |")
                continue
            asym = f"{row['asymmetry']:.3f}" if "asymmetry" in row else "(one-sided)"
            mesh = f"{100 * row['mesh_asymmetry']:.1f} %" if row.get("mesh_asymmetry") is not None else "-"
            lines.append(
                f"| {row['prompt']} | {tgt} | {row['conditioned']:.2f} | {row['per_prompt']:.2f} | "
                f"{row['fine_tuned']:.2f} | {row['baseline']:.2f} | {asym} | {mesh} | {row['jaw_deg']:.1f} deg |"
            )
        done = [row for row in r["prompts"] if "skipped" not in row]
        gap = max(row["per_prompt"] - row["conditioned"] for row in done)
        gain = float(np.mean([row["fine_tuned"] - row["conditioned"] for row in done]))
        short = [f"{row['prompt']} ({row['conditioned'] - row['per_prompt']:+.2f})" for row in done]
        short = [s for s, row in zip(short, done) if row["per_prompt"] - row["conditioned"] > WITHIN]
        verdict = "none" if not short else ", ".join(short)
        lines += [
            "",
            f"Largest shortfall of the conditioned mapper against per-prompt mappers: {gap:+.2f}; prompts more than "
            f"{WITHIN:g} below their per-prompt mapper (the issue's target): {verdict}. Mean gain of the per-prompt "
            f"fine-tune: {gain:+.3f}.",
        ]
        if r.get("image"):
            lines += ["", f"![{r['head']}: {r['image']}](images/{r['image'].split(':')[0]})"]
    return "\n".join(lines) + "\n"


def ict_section(path: Path) -> str:
    """The ICT head's section of the report that eval_ict.py wrote (kept when this script rewrites the rest)."""
    from eval_ict import SECTION_BEGIN, SECTION_END

    text = path.read_text() if path.exists() else ""
    if SECTION_BEGIN not in text or SECTION_END not in text:
        return ""
    return "\n" + SECTION_BEGIN + text.split(SECTION_BEGIN, 1)[1].split(SECTION_END, 1)[0] + SECTION_END + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="markdown report (docs/evaluation.md)")
    ap.add_argument("--json", default=None, help="raw results as JSON")
    ap.add_argument("--images", default="docs/images", help="folder for the side-prompt renders ('' for none)")
    ap.add_argument("--heads", default=",".join(available_heads()))
    ap.add_argument("--identities", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="small training configs (a smoke run, not figures)")
    ap.add_argument("--jobs", type=int, default=1, help="heads evaluated in parallel processes")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per head")
    ns = ap.parse_args()
    heads = ns.heads.split(",")
    args = {h: (h, ns.quick, ns.identities, ns.threads, ns.images or None) for h in heads}
    done: dict[str, dict] = {}

    def keep(name: str, result: dict) -> None:  # each head's results as soon as it finishes
        done[name] = result
        if ns.json:
            Path(ns.json).write_text(json.dumps([done[h] for h in heads if h in done], indent=1, default=str))

    if ns.jobs > 1:
        with ProcessPoolExecutor(ns.jobs) as pool:
            futures = {pool.submit(evaluate_head, *a): h for h, a in args.items()}
            for future, name in futures.items():
                try:
                    keep(name, future.result())
                except Exception as exc:  # one head failing leaves the others' figures
                    print(f"[{name}] failed: {exc!r}", flush=True)
    else:
        for name, a in args.items():
            try:
                keep(name, evaluate_head(*a))
            except Exception as exc:
                print(f"[{name}] failed: {exc!r}", flush=True)
    results = [done[h] for h in heads if h in done]
    report = markdown(results, ns.identities, ns.quick)
    if ns.out:
        Path(ns.out).write_text(report + ict_section(Path(ns.out)))
        print(f"wrote {ns.out}")
    else:
        print(report)


if __name__ == "__main__":
    os.environ.setdefault("FACEEDIT_HOME", str(Path.home() / ".cache" / "faceedit"))
    main()
