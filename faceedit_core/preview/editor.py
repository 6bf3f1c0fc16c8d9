"""The preview tier's editor: text -> FACS AU targets -> an Emotion Mapper trained against the
geometric AU critic (once, then cached) -> psi' = psi + intensity * dpsi.

Mappers are cached under FACEEDIT_HOME/mappers/preview/ by (AU target, head model hash,
training config), so "smile" and "happy" share one; two processes asking for the same mapper
train it once (a file lock around train-and-save).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Callable

import numpy as np
import torch

from faceedit_core.au.critic import AUS
from faceedit_core.editor import PAPER_PROMPTS, Editor, EditResult, check_edit_request
from faceedit_core.errors import Cancelled, InputError
from faceedit_core.flame.default_head import demo_head
from faceedit_core.flame.layer import FlameLayer
from faceedit_core.mappers import DualMappers, apply_mappers
from faceedit_core.params import FlameParams
from faceedit_core.preview.lexicon import ENTRIES
from faceedit_core.preview.text_to_au import AUTarget, TextToAU
from faceedit_core.preview.train import PreviewTrainConfig, train_emotion_mapper
from faceedit_core.storage.home import faceedit_home
from faceedit_core.storage.mapper_store import MapperStore


class PreviewEditor(Editor):
    """The preview tier on one head: n_components expression components are active in training."""

    tier = "preview"

    def __init__(
        self,
        layer: FlameLayer,
        head_hash: str,
        n_components: int,
        text_to_au: TextToAU | None = None,
        train_config: PreviewTrainConfig = PreviewTrainConfig(),
        device: str = "cpu",
    ):
        super().__init__(layer, head_hash, device)
        self.n_components, self.train_config = n_components, train_config
        self._text_to_au = text_to_au
        self._mappers: dict[str, DualMappers] = {}
        self._renderer = None
        self.store = MapperStore(faceedit_home() / "mappers" / "preview", "preview")

    @classmethod
    def default(cls, device: str = "cpu", **kwargs) -> "PreviewEditor":
        """The embedded default: the procedural demo head."""
        head = demo_head()
        layer = FlameLayer(head.model, head.landmarks)
        return cls(layer, head.content_hash, len(head.components), device=device, **kwargs)

    @property
    def text_to_au(self) -> TextToAU:
        if self._text_to_au is None:
            self._text_to_au = TextToAU()
        return self._text_to_au

    # ------------------------------------------------------------------ queries
    def known_expressions(self) -> list[str]:
        return list(PAPER_PROMPTS) + [e.name for e in ENTRIES]

    # ------------------------------------------------------------------ mappers
    def mapper_id(self, target: AUTarget | dict[str, float]) -> str:
        key = target.key() if isinstance(target, AUTarget) else AUTarget(dict(target), {}).key()
        blob = json.dumps({"target": key, "head": self.head_hash, "train": asdict(self.train_config)}, sort_keys=True)
        return "pv-" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    def mapper_for(self, target: AUTarget, progress: Callable | None = None, cancel: Callable | None = None) -> str:
        """The id of a mapper for `target`: from memory, from the store, or trained now."""
        mapper_id = self.mapper_id(target)
        with self._lock:
            if mapper_id in self._mappers:
                return mapper_id
            with self.store.lock(mapper_id):
                if not self.store.exists(mapper_id):
                    mapper, summary = train_emotion_mapper(
                        self.layer, target.intensities, self.n_components, self.train_config, progress, cancel
                    )
                    self.store.save(
                        mapper_id,
                        mapper,
                        {"target": target.intensities, "head_hash": self.head_hash, "summary": summary},
                    )
            self._mappers[mapper_id] = self._load_mapper(mapper_id)
            return mapper_id

    def _load_mapper(self, mapper_id: str) -> DualMappers:
        mapper, manifest = self.store.load(mapper_id)
        if manifest.get("head_hash") != self.head_hash:
            raise InputError(f"mapper '{mapper_id}' was trained for another head model")
        return mapper

    def mapper(self, mapper_id: str) -> DualMappers:
        with self._lock:
            if mapper_id not in self._mappers:
                self._mappers[mapper_id] = self._load_mapper(mapper_id)
            return self._mappers[mapper_id]

    def train(self, prompt: str, progress: Callable | None = None, cancel: Callable | None = None) -> str:
        return self.mapper_for(self.text_to_au.parse(prompt), progress, cancel)

    # ------------------------------------------------------------------ rendering
    @property
    def renderer(self):
        if self._renderer is None:
            from faceedit_core.render.albedo import demo_albedo
            from faceedit_core.render.preview import PreviewRenderer

            m = self.layer.model
            albedo = demo_albedo()
            self._renderer = PreviewRenderer(
                m.f, m.vt if albedo is not None else None, m.ft if albedo is not None else None, albedo
            )
        return self._renderer

    def render(
        self,
        params: FlameParams,
        cameras,
        size: int = 512,
        progress: Callable | None = None,
        cancel: Callable | None = None,
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
    def edit(
        self,
        params: FlameParams,
        prompt: str | None = None,
        mapper_ids: list[str] | None = None,
        intensity: float = 1.0,
        progress: Callable | None = None,
        cancel: Callable | None = None,
    ) -> EditResult:
        """Edit params [B] by a prompt and/or trained mapper ids; intensity scales the residuals."""
        mapper_ids = check_edit_request(prompt, mapper_ids, intensity)
        params = self.checked_params(params)
        target: dict[str, float] = {}
        if prompt is not None:
            parsed = self.text_to_au.parse(prompt)
            target = parsed.intensities
            mapper_ids.insert(0, self.mapper_for(parsed, progress, cancel))
        for mid in mapper_ids:
            if mid != mapper_ids[0] or prompt is None:
                target = {**target, **self._manifest_target(mid)}
        with self._lock, torch.no_grad():
            p = params.to(self.device)
            _, psi = apply_mappers([(self.mapper(m), float(intensity)) for m in mapper_ids], None, p.expression)
            edited = p.replace(expression=psi)
            out = self.layer(edited)
            in_head_frame = all(not t.any() for t in (edited.global_pose, edited.neck_pose, edited.transl))
            au = self.objective.intensities(edited, posed=(out.vertices, out.landmarks) if in_head_frame else None)
        return EditResult(
            edited.to("cpu"),
            out.vertices.cpu(),
            out.landmarks.cpu(),
            {a: au[a].cpu().tolist() for a in AUS},
            target,
            mapper_ids,
        )

    def _manifest_target(self, mapper_id: str) -> dict[str, float]:
        return dict(self.store.manifest(mapper_id).get("target") or {})
