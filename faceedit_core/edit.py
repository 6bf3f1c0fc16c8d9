"""The Editor: what the server, the CLI and scripts call to edit FLAME expressions.

One interface for both tiers. The preview tier (embedded default) turns a prompt into FACS AU
targets, trains (once, then caches) an Emotion Mapper against the geometric AU critic, and
applies it: psi' = psi + intensity * dpsi. Mapper sets are cached under FACEEDIT_HOME by
(AU target, head model hash, training config), so "smile" and "happy" share one.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from . import checkpoints
from .assets import demo_head, faceedit_home
from .errors import Cancelled, InputError
from .flame.layer import FlameLayer
from .guidance.au_critic import AUS, PRESENCE_THRESHOLD
from .guidance.facs_lexicon import ENTRIES
from .guidance.text_to_au import AUTarget, TextToAU
from .mappers import DualMappers, MapperConfig, apply_mappers
from .params import FlameParams
from .preview_train import AUObjective, PreviewTrainConfig, train_emotion_mapper

PAPER_PROMPTS = ("A person who is smiling", "A person who is angry", "A person who is sad",
                 "A person who is closing eyes", "A person who is raising brow", "A person who is frowning")
MAX_INTENSITY = 2.0
MAX_MAPPERS = 8


@dataclass
class EditResult:
    """params (edited), vertices [B,V,3], landmarks [B,68,3], au {AU: [B]} of the edit,
    target AUs parsed from the prompt, and the mapper ids applied."""

    params: FlameParams
    vertices: torch.Tensor
    landmarks: torch.Tensor
    au: dict[str, list[float]]
    target: dict[str, float] = field(default_factory=dict)
    mapper_ids: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        present = {a: [v >= PRESENCE_THRESHOLD[a] for v in vals] for a, vals in self.au.items()}
        return {"target": self.target, "au": self.au, "success": [all(present[a][i] for a in self.target)
                                                                    for i in range(self.params.batch_size)]}


class Editor:
    """Edits FLAME expressions from prompts. Thread-safe: one edit at a time per Editor."""

    def __init__(self, layer: FlameLayer, head_hash: str, n_components: int, tier: str = "preview",
                 text_to_au: TextToAU | None = None, train_config: PreviewTrainConfig = PreviewTrainConfig(),
                 device: str = "cpu"):
        self.layer = layer.to(device)
        self.head_hash, self.n_components, self.tier = head_hash, n_components, tier
        self.train_config, self.device = train_config, device
        self._text_to_au = text_to_au
        self._mappers: dict[str, DualMappers] = {}
        self._objective: AUObjective | None = None
        self._renderer = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def preview(cls, device: str = "cpu", **kwargs) -> "Editor":
        """The embedded default: the procedural demo head."""
        head = demo_head()
        layer = FlameLayer(head.model, head.landmarks)
        return cls(layer, head.content_hash, len(head.components), "preview", device=device, **kwargs)

    @staticmethod
    def from_models_dir(path, device: str = "cpu", **kwargs) -> "Editor":
        """The paper tier: FLAME, Next3D and the mapper sets in the user's model folder
        (paper_editor.PaperEditor; a missing file raises MissingModelError naming it and its folder)."""
        from .paper_editor import PaperEditor
        return PaperEditor.from_models_dir(path, device, **kwargs)

    @property
    def text_to_au(self) -> TextToAU:
        if self._text_to_au is None:
            self._text_to_au = TextToAU()
        return self._text_to_au

    @property
    def objective(self) -> AUObjective:
        if self._objective is None:
            self._objective = AUObjective(self.layer, self.n_components)
        return self._objective

    # ------------------------------------------------------------------ queries
    def known_expressions(self) -> list[str]:
        return list(PAPER_PROMPTS) + [e.name for e in ENTRIES]

    def head_mesh(self) -> dict:
        """What a client needs to build the head: template verts [V,3], faces [F,3], UVs."""
        m = self.layer.model
        return {"vertices": m.v_template, "faces": m.f, "uvs": m.vt, "uv_faces": m.ft,
                "n_shape": self.layer.n_shape, "n_exp": self.layer.n_exp, "head_hash": self.head_hash}

    # ------------------------------------------------------------------ mappers
    def mapper_id(self, target: AUTarget | dict[str, float]) -> str:
        key = target.key() if isinstance(target, AUTarget) else AUTarget(dict(target), {}).key()
        blob = json.dumps({"target": key, "head": self.head_hash, "train": asdict(self.train_config)}, sort_keys=True)
        return "pv-" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _mapper_path(self, mapper_id: str):
        return faceedit_home() / "mappers" / "preview" / mapper_id

    def mapper_for(self, target: AUTarget, progress: Callable | None = None, cancel: Callable | None = None) -> str:
        """The id of a mapper for `target`: from memory, from the cache, or trained now."""
        mapper_id = self.mapper_id(target)
        with self._lock:
            if mapper_id in self._mappers:
                return mapper_id
            path = self._mapper_path(mapper_id)
            if path.with_suffix(".json").is_file():
                self._mappers[mapper_id] = self._load_mapper(mapper_id)
                return mapper_id
            mapper, summary = train_emotion_mapper(self.layer, target.intensities, self.n_components,
                                                   self.train_config, progress, cancel)
            checkpoints.save(path, mapper.state_dict(), {
                "format": "faceedit.emotion_mapper", "tier": "preview", "target": target.intensities,
                "head_hash": self.head_hash, "mapper_config": mapper.config.to_dict(), "summary": summary})
            self._mappers[mapper_id] = mapper
            return mapper_id

    def _load_mapper(self, mapper_id: str) -> DualMappers:
        if not mapper_id.startswith("pv-") or not mapper_id[3:].isalnum():
            raise InputError(f"mapper id '{mapper_id}' is not a FaceEdit mapper id")
        tensors, manifest = checkpoints.load(self._mapper_path(mapper_id))
        if manifest.get("head_hash") != self.head_hash:
            raise InputError(f"mapper '{mapper_id}' was trained for another head model")
        mapper = DualMappers(MapperConfig.from_dict(manifest["mapper_config"]))
        mapper.load_state_dict(tensors)
        return mapper.eval()

    def mapper(self, mapper_id: str) -> DualMappers:
        with self._lock:
            if mapper_id not in self._mappers:
                if not self._mapper_path(mapper_id).with_suffix(".json").is_file():
                    raise InputError(f"unknown mapper id '{mapper_id}'")
                self._mappers[mapper_id] = self._load_mapper(mapper_id)
            return self._mappers[mapper_id]

    def train(self, prompt: str, progress: Callable | None = None, cancel: Callable | None = None) -> str:
        return self.mapper_for(self.text_to_au.parse(prompt), progress, cancel)

    # ------------------------------------------------------------------ rendering
    @property
    def renderer(self):
        if self._renderer is None:
            from .render.albedo import demo_albedo
            from .render.preview import PreviewRenderer
            m = self.layer.model
            albedo = demo_albedo() if self.tier == "preview" else None
            self._renderer = PreviewRenderer(m.f, m.vt if albedo is not None else None,
                                             m.ft if albedo is not None else None, albedo)
        return self._renderer

    def render(self, params: FlameParams, cameras, size: int = 512, progress: Callable | None = None,
               cancel: Callable | None = None) -> np.ndarray:
        """params [B] -> uint8 RGBA [B,N,H,W,4], one image per camera; progress per item."""
        from .render.images import to_uint8
        params = params.validate(self.layer.n_shape, self.layer.n_exp).padded(self.layer.n_shape, self.layer.n_exp)
        with torch.no_grad():
            verts = self.layer(params.to(self.device)).vertices.cpu()
        out = []
        for b in range(params.batch_size):
            if cancel is not None and cancel():
                raise Cancelled(f"render cancelled after {b} of {params.batch_size} items")
            out.append(to_uint8(self.renderer.render(verts[b:b + 1], cameras, size)[0].numpy()))
            if progress is not None:
                progress({"stage": "render", "step": b + 1, "total": params.batch_size})
        return np.stack(out)

    # ------------------------------------------------------------------ editing
    def edit(self, params: FlameParams, prompt: str | None = None, mapper_ids: list[str] | None = None,
             intensity: float = 1.0, progress: Callable | None = None, cancel: Callable | None = None) -> EditResult:
        """Edit params [B] by a prompt and/or trained mapper ids; intensity scales the residuals."""
        if not (-MAX_INTENSITY <= float(intensity) <= MAX_INTENSITY):
            raise InputError(f"intensity {intensity} is outside [-{MAX_INTENSITY}, {MAX_INTENSITY}]")
        if prompt is None and not mapper_ids:
            raise InputError("an edit needs a prompt or mapper ids")
        mapper_ids = list(mapper_ids or [])
        if len(mapper_ids) > MAX_MAPPERS:
            raise InputError(f"{len(mapper_ids)} mapper ids given, the limit is {MAX_MAPPERS}")
        params = params.validate(self.layer.n_shape, self.layer.n_exp).padded(self.layer.n_shape, self.layer.n_exp)
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
        return EditResult(edited.to("cpu"), out.vertices.cpu(), out.landmarks.cpu(),
                          {a: au[a].cpu().tolist() for a in AUS}, target, mapper_ids)

    def _manifest_target(self, mapper_id: str) -> dict[str, float]:
        path = self._mapper_path(mapper_id).with_suffix(".json")
        if not path.is_file():
            raise InputError(f"unknown mapper id '{mapper_id}'")
        return json.loads(path.read_text()).get("target", {})
