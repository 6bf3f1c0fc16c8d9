"""Planning: a BatchSpec -> the items (heads x prompts x intensities x turntables) and the training tasks.

Planning runs in the driver and imports no torch: it expands globs and seeds, hashes every input
file, and gives each item

- an `item_id`: readable and stable (head label, prompt slug, intensity, turntable, and a short
  hash of those choices), so a rerun finds the same folder `items/<item_id>/`;
- an `input_hash`: sha256 over what the outputs depend on: the head's *content* (file bytes, or
  the seed with its sampling settings), the prompt, the intensity, the turntable, the editor's
  fingerprint (tier, FaceEdit version, the model files, training settings) and FORMAT_VERSION. A
  finished item whose record carries the same input_hash is skipped; any change redoes it.

A training task is the Editor's `train(prompt)` call on one editor (one head model): the unit
is the same whether the tier trains one mapper per prompt or one conditioned mapper per head
(then the tasks of one head share the mapper store's lock and all but the first find it done).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from faceedit_core import __version__
from faceedit_core.batch.spec import BatchSpec, EditorSpec, HeadSource, TurntableSpec
from faceedit_core.storage.home import sha256_file

FORMAT_VERSION = 1  # bump when an item's outputs change meaning: every item is redone once


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def slug(text: str, limit: int = 32) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (s[:limit].rstrip("-")) or "x"


@dataclass(frozen=True)
class HeadInput:
    """One head: kind 'seed' (source: the seed) or 'params'/'emoca' (source: the path), with its content hash."""

    label: str
    kind: str
    source: str
    sha256: str
    components: int = 40
    scale: float = 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.kind != "seed":
            d.pop("components"), d.pop("scale")
        return d


@dataclass(frozen=True)
class ItemTask:
    """One unit of work: edit one head by one prompt at one intensity, write its files, render one turntable."""

    item_id: str
    input_hash: str
    head: HeadInput
    prompt: str
    intensity: float
    turntable: TurntableSpec
    editor: EditorSpec
    root: str  # the batch's output folder (absolute; shared storage on a cluster)
    threads: int = 1  # torch threads in the worker

    @property
    def folder(self) -> Path:
        return Path(self.root) / "items" / self.item_id

    @property
    def task_id(self) -> str:
        return self.item_id

    def inputs(self, fingerprint: dict) -> dict:
        return {
            "head": self.head.to_dict(),
            "prompt": self.prompt,
            "intensity": self.intensity,
            "turntable": asdict(self.turntable),
            "editor": fingerprint,
            "format": FORMAT_VERSION,
        }


@dataclass(frozen=True)
class TrainTask:
    """The Editor's train(prompt) on one editor: trains (or finds) the mapper and returns its id."""

    prompt: str
    editor: EditorSpec
    threads: int = 1

    @property
    def task_id(self) -> str:
        return f"train:{slug(self.prompt, 48)}-{_digest([self.prompt, repr(self.editor)])[:8]}"


def _folder_listing(path: Path) -> list:
    """(relative path, size, mtime_ns) of every file under path: cheap, and changes when a file does."""
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != "checkpoints")  # training checkpoints change nothing edited
        for name in sorted(files):
            p = Path(root) / name
            st = p.stat()
            out.append([str(p.relative_to(path)), st.st_size, st.st_mtime_ns])
    return out


def editor_fingerprint(editor: EditorSpec, tier: str) -> dict:
    """What identifies the editor's outputs without loading it: tier, FaceEdit version, model files, settings."""
    fp = {
        "tier": tier,
        "faceedit": __version__,
        "device": editor.device,
        "train_steps": editor.train_steps,
        "train_batch": editor.train_batch,
        "train_config": repr(editor.train_config) if editor.train_config is not None else None,
    }
    if editor.flame:
        fp["flame_sha256"] = sha256_file(Path(editor.flame))
    if editor.landmarks:
        fp["landmarks_sha256"] = sha256_file(Path(editor.landmarks))
    if editor.n_exp:
        fp["n_exp"] = editor.n_exp
    if editor.models:
        fp["models_listing"] = _digest(_folder_listing(Path(editor.models)))
    return fp


def head_hash(kind: str, source: str, components: int = 40, scale: float = 1.0) -> str:
    """The content hash of a head: the file's bytes, the EMOCA folder's three arrays, or the seed's settings."""
    if kind == "seed":
        return _digest({"seed": int(source), "components": components, "scale": scale})
    path = Path(source)
    if kind == "params":
        return sha256_file(path)
    parts = {n: sha256_file(path / n) if (path / n).is_file() else None for n in ("shape.npy", "exp.npy", "pose.npy")}
    return _digest(parts)


def expand_heads(sources: tuple[HeadSource, ...]) -> list[HeadInput]:
    heads: list[HeadInput] = []
    seen: set[tuple] = set()
    for src in sources:
        for value in src.values:
            if src.kind == "seeds":
                key = ("seed", int(value), src.components, src.scale)
                label = f"seed{int(value)}"
                head = HeadInput(label, "seed", str(int(value)), "", src.components, src.scale)
            else:
                kind = "params" if src.kind == "params" else "emoca"
                key = (kind, str(Path(value).resolve()))
                head = HeadInput(slug(Path(value).stem if kind == "params" else Path(value).name, 24), kind, key[1], "")
            if key in seen:
                continue
            seen.add(key)
            sha = head_hash(head.kind, head.source, head.components, head.scale)
            heads.append(HeadInput(head.label, head.kind, head.source, sha, head.components, head.scale))
    return heads


@dataclass
class Plan:
    items: list[ItemTask]
    trains: list[TrainTask]  # one per prompt (preview tier: trained before that prompt's items)
    fingerprint: dict


def make_plan(spec: BatchSpec, root: Path, threads: int = 1, tier: str | None = None) -> Plan:
    """tier: what factory.preflight says the editor is (default: preview without a models folder, else paper)."""
    tier = tier or ("paper" if spec.editor.models and not spec.editor.flame else "preview")
    fingerprint = editor_fingerprint(spec.editor, tier)
    root = Path(root).resolve()
    items = []
    for head in expand_heads(spec.heads):
        for prompt in spec.prompts:
            for intensity in spec.intensities:
                for tt in spec.turntables:
                    identity = [head.kind, head.source, head.components, head.scale, prompt, intensity, asdict(tt)]
                    item_id = f"{head.label}-{slug(prompt)}-x{intensity:g}-{tt.label()}-{_digest(identity)[:8]}"
                    draft = ItemTask(item_id, "", head, prompt, float(intensity), tt, spec.editor, str(root), threads)
                    items.append(
                        ItemTask(
                            item_id,
                            _digest(draft.inputs(fingerprint)),
                            head,
                            prompt,
                            float(intensity),
                            tt,
                            spec.editor,
                            str(root),
                            threads,
                        )
                    )
    # the paper tier trains mapper sets for hours: a batch never does so implicitly (faceedit train --prompts)
    trains = [TrainTask(p, spec.editor, threads) for p in spec.prompts] if tier == "preview" else []
    return Plan(items, trains, fingerprint)
