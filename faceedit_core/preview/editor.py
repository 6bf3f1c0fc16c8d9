"""The preview tier's editor: text -> FACS AU targets -> the head's conditioned Emotion Mapper ->
psi' = psi + s * dpsi, jaw' = jaw + s * djaw, eyes' = eyes + s * dgaze.

The head's mapper is trained once, on first use (minutes, with progress, cancellable), and cached
under FACEEDIT_HOME/mappers/preview/ by the head's content hash, its expression width and the
training configuration; two processes asking for it train it once (a file lock around
train-and-save). A cancelled training leaves a checkpoint in mappers/preview/checkpoints/ under the
same id; the next training of that mapper resumes from it, and it is removed once the mapper is saved.
After that any prompt the lexicon understands edits with one forward pass.

Mapper ids name AU targets: `pv-AU12_R-90.AU14_R-60` (a smirk on the right: AU12 at 0.90 and AU14
at 0.60 on the subject's right) reads back without any file; targets too long for an id are kept
as `pv-t<hash>` in mappers/preview/targets/. Several ids compose (residuals add, each computed from the
unedited face) and intensity scales them, as in the paper. With `fine_tune_steps`, a target's
mapper is also fine-tuned alone from the head's mapper and cached as `pv-f<hash>` (optional: see
docs/evaluation.md for what it adds).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from faceedit_core.au.critic import AUS, CHANNELS, GAZE, compact_target, expand_target
from faceedit_core.au.objective import target_vector
from faceedit_core.editor import PAPER_PROMPTS, Cancel, Editor, EditResult, Progress
from faceedit_core.errors import Cancelled, InputError
from faceedit_core.mappers import ConditionedMapper
from faceedit_core.params import FlameParams
from faceedit_core.preview.head import PreviewHead
from faceedit_core.preview.lexicon import ENTRIES
from faceedit_core.preview.text_to_au import AUTarget, TextToAU, target_key
from faceedit_core.preview.train import PreviewTrainConfig, apply_residual, mapper_residual, train_preview_mapper
from faceedit_core.storage import checkpoints
from faceedit_core.storage.atomic import atomic_write_text
from faceedit_core.storage.home import faceedit_home
from faceedit_core.storage.mapper_store import MapperStore, check_id

MAPPER_VERSION = 5  # bump when the channels, the network, the critic or the objective change: head mappers retrain
# (3: the mapper reads the identity, AUObjective.identity; 4: low-intensity targets held within LOW_BAND;
# 5: the jaw opens only for targets that part the lips or drop it)
TARGET_ID = re.compile(r"^pv-(AU\d{1,2}(?:_[LR])?-\d{1,3})(\.AU\d{1,2}(?:_[LR])?-\d{1,3})*$")


def target_id(target: dict[str, float]) -> str:
    """The mapper id of an AU target, readable: 'pv-AU1-100.AU2-100' (raise brows), 'pv-AU43_L-100'
    (a left wink); 'pv-t<16 hex>' (kept in mappers/preview/targets/) when that would pass 64 characters."""
    channels = compact_target(expand_target(target))
    order = sorted(channels.items(), key=lambda kv: (int(kv[0][2:].split("_")[0]), kv[0]))
    text = "pv-" + ".".join(f"{name}-{round(value * 100)}" for name, value in order)
    if len(text) <= 64:
        return text
    return "pv-t" + hashlib.sha256(target_key(target).encode()).hexdigest()[:16]


def parse_target_id(mapper_id: str) -> dict[str, float] | None:
    """The target a readable 'pv-AU…' id names, or None for another id."""
    if not TARGET_ID.match(mapper_id):
        return None
    out = {}
    for part in mapper_id[3:].split("."):
        name, value = part.split("-")
        out[name] = int(value) / 100
    try:
        expand_target(out)
    except KeyError as exc:
        raise InputError(f"mapper id '{mapper_id}' names an action FaceEdit does not measure ({exc.args[0]})") from None
    if any(not 0 < v <= 1.5 for v in out.values()):
        raise InputError(f"mapper id '{mapper_id}': target values must lie in (0, 1.5]")
    return out


class PreviewEditor(Editor):
    """The preview tier on one head (PreviewHead: the demo head, a user's FLAME file, any FlameLayer)."""

    tier = "preview"

    def __init__(
        self,
        head: PreviewHead,
        text_to_au: TextToAU | None = None,
        train_config: PreviewTrainConfig | None = None,
        device: str = "cpu",
        fine_tune_steps: int = 0,
    ):
        """train_config: how the head's mapper is trained when it does not exist. None (the default):
        the default configuration, and a head mapper already trained for this head with another one
        (`faceedit train --steps N`) is used rather than trained again; given: exactly that one."""
        super().__init__(head.layer, head.head_hash, device)
        self.head, self.fine_tune_steps = head, int(fine_tune_steps)
        self.exact_config = train_config is not None
        self.train_config = train_config if train_config is not None else PreviewTrainConfig()
        self._text_to_au = text_to_au
        self._head_mapper: ConditionedMapper | None = None
        self._head_mapper_in_use: str | None = None
        self.head_training: dict | None = None  # the summary of the head mapper's training in this process
        self._fine_tuned: dict[str, tuple[ConditionedMapper, dict]] = {}
        self._renderer = None
        self.store = MapperStore(faceedit_home() / "mappers" / "preview", "preview")

    @classmethod
    def default(cls, device: str = "cpu", parameterisation: str | None = None, **kwargs) -> "PreviewEditor":
        """The embedded default: the ICT head (semantic ARKit shapes; parameterisation="pca" for FLAME's stand-in)."""
        return cls(PreviewHead.demo(parameterisation), device=device, **kwargs)

    @classmethod
    def from_flame_file(
        cls, path, landmarks=None, models_dir=None, n_exp: int | None = None, device: str = "cpu", **kwargs
    ) -> "PreviewEditor":
        """The preview tier on a user's FLAME file (see PreviewHead.from_flame_file)."""
        return cls(PreviewHead.from_flame_file(path, landmarks, models_dir, n_exp), device=device, **kwargs)

    @property
    def text_to_au(self) -> TextToAU:
        if self._text_to_au is None:
            self._text_to_au = TextToAU()
        return self._text_to_au

    # ------------------------------------------------------------------ queries
    def known_expressions(self) -> list[str]:
        return list(PAPER_PROMPTS) + [e.name for e in ENTRIES]

    def head_mesh(self) -> dict:
        """Also, on the ICT head, how the preview renders colour it: vertex_colours [V,3] in [0,1] (sRGB)
        and drawn_faces bool [F] (False: the helper meshes and the lash cards beyond their roots)."""
        return {**super().head_mesh(), "label": self.head.label, "n_edit": self.head.n_edit, **self._appearance}

    @functools.cached_property
    def _appearance(self) -> dict:
        """head_mesh's colours of the ICT head, computed once (about 45 ms; every hello asks); {} otherwise."""
        ict = self.head.info.get("ict")
        if ict is None:
            return {}
        from faceedit_core.render.ict_materials import part_colours, render_faces

        return {"vertex_colours": part_colours(ict), "drawn_faces": render_faces(ict)}

    # ------------------------------------------------------------------ the head's mapper
    def _head_key(self) -> dict:
        """What a head mapper must match to serve this editor (its manifest's 'head_key')."""
        return {
            "head": self.head_hash,
            "n_edit": self.head.n_edit,
            "coefficients": self.head.coefficients,
            "sides": bool(self.head.sides),
            "channels": list(CHANNELS),
            "version": MAPPER_VERSION,
        }

    def head_mapper_id(self) -> str:
        """'ph-<16 hex>' of (head hash, expression width, coefficient kind, training config, version)."""
        blob = json.dumps({**self._head_key(), "train": asdict(self.train_config)}, sort_keys=True)
        return "ph-" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _any_head_mapper(self) -> str | None:
        """The most recently trained head mapper of this head in the store (any configuration)."""
        key, found = self._head_key(), []
        for mid, stem in self.store.ids().items():
            if mid.startswith("ph-"):
                try:
                    if self.store.manifest(mid).get("head_key") == key:
                        found.append((stem.with_suffix(".json").stat().st_mtime, mid))
                except (InputError, OSError):
                    continue
        return max(found)[1] if found else None

    def head_mapper(self, progress: Callable | None = None, cancel: Callable | None = None) -> ConditionedMapper:
        """The head's conditioned mapper: from memory, from the store, or trained now (once)."""
        with self._lock:
            if self._head_mapper is None:
                mid = self.head_mapper_id()
                if not self.exact_config and not self.store.exists(mid):
                    mid = self._any_head_mapper() or mid
                with self.store.lock(mid):
                    if not self.store.exists(mid):
                        ckpt = self.head_checkpoint(mid)
                        mapper, summary = train_preview_mapper(
                            self.head,
                            self.train_config,
                            progress=progress,
                            cancel=cancel,
                            objective=self.objective,
                            checkpoint=ckpt,
                        )
                        self.store.save(
                            mid,
                            mapper,
                            {
                                "head_hash": self.head_hash,
                                "head": self.head.label,
                                "kind": "head",
                                "head_key": self._head_key(),
                                "summary": summary,
                            },
                        )
                        checkpoints.remove(ckpt)
                        self.head_training = summary
                self._head_mapper = self._load(mid).to(self.device)
                self._head_mapper_in_use = mid
            return self._head_mapper

    def head_checkpoint(self, mapper_id: str) -> Path:
        """The checkpoint stem a cancelled training of head mapper `mapper_id` resumes from (the id
        names the head and the training configuration, so another head or configuration never uses it)."""
        return self.store.folder / "checkpoints" / mapper_id

    def train_head(self, progress: Callable | None = None, cancel: Callable | None = None) -> str:
        """Train (or find) the head's mapper ahead of the first edit; returns its id."""
        self.head_mapper(progress, cancel)
        return self._head_mapper_in_use

    def _load(self, mapper_id: str) -> ConditionedMapper:
        mapper, manifest = self.store.load(mapper_id)
        if manifest.get("head_hash") != self.head_hash:
            raise InputError(
                f"mapper '{mapper_id}' was trained for {manifest.get('head', 'another head')} "
                f"(head {str(manifest.get('head_hash'))[:12]}), not for {self.head.label} "
                f"(head {self.head_hash[:12]}): heads' expression spaces are not interchangeable "
                "(FLAME 2020 and 2023 included)"
            )
        return mapper

    # ------------------------------------------------------------------ targets and ids
    def _targets_dir(self):
        return self.store.folder / "targets"

    def _check_target(self, target: dict[str, float], prompt: str | None = None) -> None:
        channels = expand_target(target)
        what = f"'{prompt}'" if prompt else "this target"
        if not self.head.sides:
            other = lambda a: a[:-1] + ("R" if a[-1] == "L" else "L")  # noqa: E731
            lopsided = [a for a in channels if "_" in a and channels.get(other(a)) != channels[a]]
            if lopsided:
                raise InputError(
                    f"{what} asks for one side of the face ({', '.join(sorted(lopsided))}), but {self.head.label}'s "
                    "expression components are all mirror-symmetric, so it cannot move one side alone; use a FLAME "
                    "file (--flame) or a head with left/right shapes"
                )
        if not self.objective.has_gaze and any(a in GAZE for a in channels):
            raise InputError(f"{what} moves the eyes, but {self.head.label} has no eyeballs")

    def mapper_id(self, target: AUTarget | dict[str, float]) -> str:
        """The id an edit returns for a target: its target id, or its fine-tune id with fine_tune_steps."""
        t = target.intensities if isinstance(target, AUTarget) else dict(target)
        tid = target_id(t)
        if not self.fine_tune_steps:
            return tid
        base = self._head_mapper_in_use or self.head_mapper_id()
        blob = json.dumps({"base": base, "target": target_key(t), "steps": self.fine_tune_steps})
        return "pv-f" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    def mapper_for(self, target: AUTarget, progress: Callable | None = None, cancel: Callable | None = None) -> str:
        """The id of a mapper for `target` (the head's mapper trained now if it does not exist yet)."""
        t = target.intensities
        self._check_target(t)
        base = self.head_mapper(progress, cancel)
        mid = self.mapper_id(t)
        if mid.startswith("pv-t"):
            path = self._targets_dir() / f"{mid}.json"
            if not path.is_file():
                atomic_write_text(path, json.dumps({"format": "faceedit.au_target", "target": t}))
        elif mid.startswith("pv-f"):
            with self._lock, self.store.lock(mid):
                if mid not in self._fine_tuned and not self.store.exists(mid):
                    cfg = replace(self.train_config, steps=self.fine_tune_steps, seed=self.train_config.seed + 1)
                    mapper, summary = train_preview_mapper(
                        self.head, cfg, target=t, init=base, progress=progress, cancel=cancel, objective=self.objective
                    )
                    self.store.save(
                        mid,
                        mapper,
                        {
                            "head_hash": self.head_hash,
                            "head": self.head.label,
                            "kind": "fine-tune",
                            "target": t,
                            "summary": summary,
                        },
                    )
        return mid

    def resolve(
        self, mapper_id: str, progress: Callable | None = None, cancel: Callable | None = None
    ) -> tuple[ConditionedMapper, dict[str, float]]:
        """(mapper, target) of an id: a target id ('pv-AU…', 'pv-t…') or a fine-tune id ('pv-f…')."""
        check_id(mapper_id)
        target = parse_target_id(mapper_id)
        if target is None and re.fullmatch(r"pv-t[0-9a-f]{16}", mapper_id):
            path = self._targets_dir() / f"{mapper_id}.json"
            if not path.is_file():
                raise InputError(f"unknown mapper id '{mapper_id}'")
            try:
                target = {str(k): float(v) for k, v in json.loads(path.read_text())["target"].items()}
                expand_target(target)
            except (ValueError, KeyError, TypeError, AttributeError):
                raise InputError(f"mapper id '{mapper_id}': its target file is damaged") from None
        if target is not None:
            self._check_target(target)
            return self.head_mapper(progress, cancel), target
        if not re.fullmatch(r"pv-f[0-9a-f]{16}", mapper_id):
            raise InputError(f"unknown mapper id '{mapper_id}'")
        with self._lock:
            if mapper_id not in self._fine_tuned:
                mapper = self._load(mapper_id).to(self.device)
                self._fine_tuned[mapper_id] = (mapper, dict(self.store.manifest(mapper_id).get("target") or {}))
            return self._fine_tuned[mapper_id]

    def train(self, prompt: str, progress: Callable | None = None, cancel: Callable | None = None) -> str:
        return self.mapper_for(self.text_to_au.parse(prompt), progress, cancel)

    # ------------------------------------------------------------------ rendering
    @property
    def renderer(self):
        if self._renderer is None:
            from faceedit_core.render.preview import PreviewRenderer

            m = self.layer.model
            if self.head.info.get("ict") is not None:  # part colours per vertex, helper meshes left out
                from faceedit_core.render.ict_materials import preview_renderer

                self._renderer = preview_renderer(self.head.info["ict"])
            elif self.head.info.get("parameterisation") == "procedural" and m.vt is not None:
                from faceedit_core.render.albedo import demo_albedo

                self._renderer = PreviewRenderer(m.f, m.vt, m.ft, demo_albedo())
            else:  # a FLAME file: no texture
                self._renderer = PreviewRenderer(m.f)
        return self._renderer

    def render(
        self, params: FlameParams, cameras, size: int = 512, progress: Progress = None, cancel: Cancel = None
    ) -> np.ndarray:
        """params [B] -> uint8 RGBA [B,N,H,W,4], one image per camera; progress per item."""
        from faceedit_core.render.images import to_uint8

        params = self.checked_params(params)
        with torch.no_grad():
            verts = self.layer(params.to(self.device)).vertices.cpu()
        out = []
        for b in range(params.batch_size):
            if cancel is not None and cancel():
                raise Cancelled(f"render cancelled after {b} of {params.batch_size} items")
            out.append(to_uint8(self.renderer.render(verts[b : b + 1], cameras, size)[0].numpy()))
            if progress is not None:
                progress({"stage": "render", "step": b + 1, "total": params.batch_size})
        return np.stack(out)

    # ------------------------------------------------------------------ editing
    def _edit(self, params, prompt, mapper_ids, intensity, progress, cancel) -> EditResult:
        """Editor.edit: intensity scales the residuals (expression coefficients, jaw and eye rotations)."""
        params = self.checked_params(params)
        if prompt is not None:
            parsed = self.text_to_au.parse(prompt)
            self._check_target(parsed.intensities, prompt)
            mapper_ids.insert(0, self.mapper_for(parsed, progress, cancel))
        resolved = [self.resolve(m, progress, cancel) for m in mapper_ids]
        channels: dict[str, float] = {}
        for _, t in resolved:
            for c, v in expand_target(t).items():
                channels[c] = max(channels.get(c, 0.0), v)
        with self._lock, torch.no_grad():
            p = params.to(self.device)
            edited, identity = p, self.objective.identity(p)
            for mapper, t in resolved:  # each residual from the unedited face (the paper's composition)
                dpsi, djaw, dgaze = mapper_residual(mapper, p, target_vector(t, self.device), identity)
                edited = apply_residual(edited, dpsi, djaw, dgaze, float(intensity))
            out = self.layer(edited)
            in_head_frame = all(not t.any() for t in (edited.global_pose, edited.neck_pose, edited.transl))
            au = self.objective.intensities(edited, posed=(out.vertices, out.landmarks) if in_head_frame else None)
        return EditResult(
            edited.to("cpu"),
            out.vertices.cpu(),
            out.landmarks.cpu(),
            {a: au[a].cpu().tolist() for a in AUS},
            compact_target(channels),
            mapper_ids,
        )
