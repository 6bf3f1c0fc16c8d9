"""Preview tier: how long the head's conditioned mapper takes to train once, and how long an edit
with a never-seen prompt then takes (target: <= 50 ms on the 2-core CPU). See docs/performance.md.

Run: .venv/bin/python benchmarks/bench_preview_edit.py [--flame FILE | --head ict-pca|standin|procedural]
     [--threads 2] [--steps N]
Each timed prompt is used once (its text goes through the sentence model fresh); the editor, the
text model and the head's mapper are loaded before timing. Figures: the whole `Editor.edit` call
(parse + mapper + FLAME layer + AU critic, batch 1), and its parse share.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

NEVER_SEEN = (
    "a broad grin",
    "wink with the right eye",
    "raise the left eyebrow a little",
    "a smirk on the left",
    "look up and smile",
    "frown slightly",
    "open the mouth wide",
    "close the left eye",
    "very surprised",
    "a sad face",
    "squint",
    "purse the lips",
    "right brow down, left brow up",
    "lower the brows and press the lips together",
    "a faint smile on the right",
    "stretch the lips",
    "scrunch the nose",
    "widen the eyes",
    "drop the jaw slightly",
    "look down",
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flame", default=None, help="a FLAME file (default: the embedded default head)")
    ap.add_argument("--head", default=None, help="a built-in head by eval_preview.py's names (ict-pca, standin, ...)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the tier's)")
    ns = ap.parse_args()
    torch.set_num_threads(ns.threads)
    from faceedit_core.factory import build_editor
    from faceedit_core.params import FlameParams
    from faceedit_core.preview.train import PreviewTrainConfig

    cfg = PreviewTrainConfig() if ns.steps is None else replace(PreviewTrainConfig(), steps=ns.steps)
    if ns.head is None:
        editor = build_editor(flame=ns.flame, train_config=cfg)
    else:
        from eval_preview import build_head

        from faceedit_core.preview.editor import PreviewEditor

        editor = PreviewEditor(build_head(ns.head), train_config=cfg)
    print(f"head: {editor.head.label}, {editor.layer.n_verts} vertices, {editor.head.n_edit} coefficients")
    t0, c0 = time.perf_counter(), time.process_time()
    existed = editor.store.exists(editor.head_mapper_id())
    editor.train_head()
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"head mapper {'found' if existed else 'trained'}: {cfg.steps} steps x batch {cfg.batch}, "
        f"{train_s:.1f} s wall, {train_cpu:.1f} s CPU, {ns.threads} threads"
    )
    params = FlameParams.zeros(1, editor.layer.n_shape, editor.layer.n_exp)
    editor.edit(params, prompt="A person who is smiling")  # loads the text model, warms the caches
    whole, parse = [], []
    for prompt in NEVER_SEEN:
        t = time.perf_counter()
        editor.text_to_au.parse(prompt + " ")  # a different string: the parse is timed on its own
        parse.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        editor.edit(params, prompt=prompt)
        whole.append((time.perf_counter() - t) * 1000)
    whole.sort()
    print(
        f"edit, never-seen prompt (n={len(whole)}): median {statistics.median(whole):.1f} ms, "
        f"p90 {whole[int(0.9 * len(whole))]:.1f} ms, max {whole[-1]:.1f} ms; "
        f"of which parsing the prompt: median {statistics.median(parse):.1f} ms"
    )


if __name__ == "__main__":
    main()
