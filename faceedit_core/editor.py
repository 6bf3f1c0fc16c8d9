"""The one editor interface both tiers implement (`faceedit_core.factory.build_editor` chooses the tier).

Server handlers, the CLI, benchmarks and scripts call `build_editor(...)` and then only the
methods of `Editor`: `edit`, `render`, `train`, `known_expressions`, `head_mesh`. The limits an
edit request must respect come from the wire (faceedit_wire.limits), so the add-on, the server
and the core refuse the same things.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from faceedit_core.au.critic import PRESENCE_THRESHOLD
from faceedit_core.au.objective import AUObjective
from faceedit_core.errors import InputError
from faceedit_core.flame.layer import FlameLayer
from faceedit_core.params import FlameParams
from faceedit_wire.limits import MAX_INTENSITY, MAX_MAPPERS
from faceedit_wire.prompts import PAPER_PROMPTS as PAPER_PROMPTS  # the paper's six: one list, in the wire

Progress = Callable[[dict], None] | None
Cancel = Callable[[], bool] | None


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
        """target, au and success per item: every target AU present at the intensity asked
        (threshold x min(1, target); the paper's rule for full targets, au.critic.target_met)."""
        present = {
            a: [v >= PRESENCE_THRESHOLD[a] * min(1.0, float(self.target[a])) for v in self.au[a]] for a in self.target
        }
        return {
            "target": self.target,
            "au": self.au,
            "success": [all(present[a][i] for a in self.target) for i in range(self.params.batch_size)],
        }


def check_edit_request(prompt: str | None, mapper_ids: list[str] | None, intensity: float) -> list[str]:
    """The checks every edit passes before any work: returns the mapper ids as a fresh list."""
    if not (-MAX_INTENSITY <= float(intensity) <= MAX_INTENSITY):
        raise InputError(f"intensity {intensity} is outside [-{MAX_INTENSITY}, {MAX_INTENSITY}]")
    ids = list(mapper_ids or [])
    if prompt is None and not ids:
        raise InputError("an edit needs a prompt or mapper ids")
    if len(ids) + (prompt is not None) > MAX_MAPPERS:
        raise InputError(f"{len(ids)} mapper ids given, the limit is {MAX_MAPPERS}")
    return ids


class Editor(abc.ABC):
    """Edits FLAME expressions of one head model. Thread-safe: one edit at a time per Editor.

    layer: the FLAME layer of the head; head_hash: its content hash (mappers are tied to it);
    tier: 'preview' or 'paper'."""

    tier: str = ""

    def __init__(self, layer: FlameLayer, head_hash: str, device: str = "cpu"):
        self.layer = layer.to(device)
        self.head_hash, self.device = head_hash, device
        self._objective: AUObjective | None = None
        self._lock = threading.RLock()

    @property
    def objective(self) -> AUObjective:
        """The geometric AU critic on this head (both tiers report AUs with it)."""
        if self._objective is None:
            self._objective = AUObjective(self.layer)
        return self._objective

    def checked_params(self, params: FlameParams) -> FlameParams:
        """params validated and brought to this head's widths: shorter vectors zero-padded (prefixes),
        longer ones cut when what is cut is zero (a client sending FLAME's 300 + 100 to a head with
        fewer columns), refused naming the field otherwise."""
        return params.validate().padded(self.layer.n_shape, self.layer.n_exp)

    def head_mesh(self) -> dict:
        """What a client needs to build the head: template verts [V,3], faces [F,3], UVs."""
        m = self.layer.model
        return {
            "vertices": m.v_template,
            "faces": m.f,
            "uvs": m.vt,
            "uv_faces": m.ft,
            "n_shape": self.layer.n_shape,
            "n_exp": self.layer.n_exp,
            "head_hash": self.head_hash,
        }

    @abc.abstractmethod
    def known_expressions(self) -> list[str]:
        """Prompts this editor can apply now (examples for the preview tier, trained sets for the paper tier)."""

    def edit(
        self,
        params: FlameParams,
        prompt: str | None = None,
        mapper_ids: list[str] | None = None,
        intensity: float = 1.0,
        progress: Progress = None,
        cancel: Cancel = None,
        **options,
    ) -> EditResult:
        """Edit params [B] by a prompt and/or mapper ids; intensity scales the residuals. The request
        passes `check_edit_request` before any work, then the tier's `_edit` does it; options are the
        tier's own (the paper tier's `ws`)."""
        ids = check_edit_request(prompt, mapper_ids, intensity)
        return self._edit(params, prompt, ids, intensity, progress, cancel, **options)

    @abc.abstractmethod
    def _edit(self, params: FlameParams, prompt, mapper_ids: list[str], intensity, progress, cancel) -> EditResult:
        """`edit` after the request's checks: mapper_ids is a fresh list the method may change."""

    @abc.abstractmethod
    def render(
        self, params: FlameParams, cameras, size: int = 512, progress: Progress = None, cancel: Cancel = None
    ) -> np.ndarray:
        """params [B] -> uint8 RGBA [B,N,H,W,4], one image per camera."""

    @abc.abstractmethod
    def train(self, prompt: str, progress: Progress = None, cancel: Cancel = None) -> str:
        """Train (or find) the mapper for prompt; returns its id."""
