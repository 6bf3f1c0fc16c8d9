"""The AU objective both tiers use: AU intensities of FLAME parameters against their neutral face,
and the hinge loss towards an AU target (the preview tier trains on it; the paper tier can add it).

`AUObjective(layer)` poses only the landmark and probe vertices (FlameSubset):
exact and about ten times cheaper than the full mesh.
"""

from __future__ import annotations

import torch

from faceedit_core.au.critic import AUS, au_intensities, find_probes
from faceedit_core.flame.layer import FlameLayer
from faceedit_core.params import FlameParams

# AUs that come along with a target AU on any face (FACS co-occurrences), never penalised
COMPANIONS = {
    "AU26": {"AU25"},
    "AU43": {"AU7"},
    "AU12": {"AU6"},
    "AU4": {"AU7", "AU43"},
    "AU23": {"AU24"},
    "AU24": {"AU23"},
    "AU9": {"AU4", "AU7"},
}


class AUObjective:
    """Scores expressions of a FLAME model against AU targets, on the landmark subset."""

    def __init__(self, layer: FlameLayer):
        with torch.no_grad():
            neutral = layer(FlameParams.zeros(1, layer.n_shape, layer.n_exp))
            probes = find_probes(neutral.vertices[0], neutral.landmarks[0])
        self.subset = layer.subset(torch.cat([probes.cheek, probes.nose, probes.chin]))
        remap = self.subset.remap
        self.probes = type(probes)(remap[probes.cheek], remap[probes.nose], remap[probes.chin])
        self.n_exp = layer.n_exp
        self._last_neutral: tuple[torch.Tensor, tuple] | None = None  # (shape and eye pose [B,S+6], neutral)

    def intensities(
        self,
        params: FlameParams,
        neutral: tuple[torch.Tensor, torch.Tensor] | None = None,
        posed: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict:
        """{AU: [B]} of params against the same identities with zero expression and jaw.

        posed: (full-mesh vertices [B,V,3], landmarks [B,68,3]) already computed for params in the
        head frame (global pose, neck and translation zero), to skip posing the subset again.
        """
        if neutral is None:
            neutral = self._neutral_of_identity(params)
        if posed is None:
            verts, lms = self.subset(_head_frame(params))
        else:
            verts, lms = posed[0][:, self.subset.vertex_ids], posed[1]
        return au_intensities(lms, neutral[1], verts, neutral[0], self.probes)

    def neutral(self, params: FlameParams) -> tuple[torch.Tensor, torch.Tensor]:
        p = _head_frame(params)
        return self.subset(p.replace(expression=torch.zeros_like(p.expression), jaw_pose=torch.zeros_like(p.jaw_pose)))

    def _neutral_of_identity(self, params: FlameParams) -> tuple[torch.Tensor, torch.Tensor]:
        """`neutral` without gradient, kept for the last identity: it depends only on the shape
        and eye pose, and repeated edits of one face would otherwise pose it every time."""
        key = torch.cat([params.shape, params.eye_pose], 1).detach()
        last = self._last_neutral
        if (
            last is not None
            and last[0].shape == key.shape
            and last[0].device == key.device
            and last[0].dtype == key.dtype
            and torch.equal(last[0], key)
        ):
            return last[1]
        with torch.no_grad():
            neutral = self.neutral(params)
        self._last_neutral = (key.clone(), neutral)
        return neutral


def _head_frame(params: FlameParams) -> FlameParams:
    """The same face with global pose, neck and translation zeroed (expressions do not depend on them)."""
    z = torch.zeros_like
    return params.replace(global_pose=z(params.global_pose), neck_pose=z(params.neck_pose), transl=z(params.transl))


def au_loss(au: dict, start_au: dict, target: dict[str, float], spurious_weight: float) -> torch.Tensor:
    """[B]: squared hinge up to each target AU, plus a hinge on other AUs rising above where they started."""
    allowed = set(target)
    for a in target:
        allowed |= COMPANIONS.get(a, set())
    loss = 0.0
    for a in AUS:
        if a in target:
            loss = loss + torch.relu(target[a] - au[a]) ** 2 + 0.1 * (au[a] - target[a]) ** 2
        elif a not in allowed:
            loss = loss + spurious_weight * torch.relu(au[a] - torch.clamp(start_au[a], min=0.3)) ** 2
    return loss
