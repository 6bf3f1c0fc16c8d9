"""The AU objective both tiers use: AU intensities of FLAME parameters against their neutral face,
and the hinge losses towards an AU target (the preview tier trains on them; the paper tier can add one).

`AUObjective(layer)` poses only the landmark and probe vertices (FlameSubset): exact and about ten
times cheaper than the full mesh. Targets come in two forms: a dict {AU or AU_side: value} (one
target for a whole batch, `au_loss`) or a tensor [B, len(CHANNELS)] (one target per item, what the
conditioned Emotion Mapper trains on, `channel_loss`). `AUObjective.identity(params)` describes each
face's identity anatomically (its neutral landmarks against the template's) for the mapper to read:
one edit does not close every eye, wider-open eyes need more.
"""

from __future__ import annotations

import torch

from faceedit_core.au.critic import (
    CHANNELS,
    GAZE,
    LATERAL,
    MIDLINE,
    SIDES,
    au_intensities,
    base_au,
    expand_target,
    find_probes,
    side_of,
)
from faceedit_core.flame.landmarks import landmarks_from_faces
from faceedit_core.flame.layer import FlameLayer, KeptResult
from faceedit_core.params import FlameParams

# AUs that come along with a target AU on any face (FACS co-occurrences), never penalised. The jaw's:
# the lip corners ride down and inwards with the jaw, which the critic's corner measures read as AU15
# and AU23 (a 0.2 rad drop: AU15 1.1, AU23 0.6 on the ICT head; wide open also AU14); without them
# the mapper closed the lips over an open jaw (mouthClose) to hide those readings
COMPANIONS = {
    "AU26": {"AU25", "AU27", "AU15", "AU23"},
    "AU27": {"AU25", "AU26", "AU15", "AU23", "AU14"},
    "AU43": {"AU7"},
    "AU12": {"AU6", "AU14"},
    "AU14": {"AU24", "AU23"},
    "AU4": {"AU7"},  # not AU43: with it free the mapper closed the eyes to lower the brow skin further
    "AU1": {"AU5"},  # the upper lid's skin rides up with the brows (ICT's brow raise: AU5 0.3)
    "AU2": {"AU5"},
    "AU23": {"AU24"},
    "AU24": {"AU23"},
    "AU9": {"AU4", "AU7"},
    "AU20": {"AU25"},
}
CHANNEL_INDEX = {c: i for i, c in enumerate(CHANNELS)}
# a target channel whose extent another target action sets: only its hinge from below applies (no pull
# back to the value asked). The lips part as far as the jaw drops (FACS scores AU25 under AU26/27 by
# presence): a 0.2 rad jaw drop parts them 17 mm, 3.5 x AU25's reference
SET_BY = {"AU25": ("AU26", "AU27")}
# a channel asked at t < 1 reads at most LOW_BAND x t (the evaluation's rule for low-intensity prompts is 1.5 x t)
LOW_BAND = 1.3
# symmetric pairs of channels (left index, right index), one per lateral action
PAIRS = torch.tensor([(CHANNEL_INDEX[f"{a}_L"], CHANNEL_INDEX[f"{a}_R"]) for a in LATERAL])
# the identity descriptor (AUObjective.identity): the 68 neutral landmarks, centred and IOD-normalised, less the
# template's, x IDENTITY_GAIN. Between identities (shape ~ N(0,1)) each value spreads about 0.025 on the ICT,
# FLAME-format and procedural heads (the ICT head's lid aperture: 0.07-0.13 IOD); x 2 makes that about 0.05.
# Larger gains let the identity crowd the rest: on the ICT PCA head x 25 took a wink's accuracy to 0.12, on the
# ICT semantic head x 5 took sad's from 1.00 to 0.83 (x 2: 0.98)
IDENTITY_FEATURES = 68 * 3
IDENTITY_GAIN = 2.0


def _companion_matrix() -> torch.Tensor:
    """[K,K] bool: entry (i, j) when channel j may rise along with target channel i (same side)."""
    K = len(CHANNELS)
    allowed = torch.eye(K, dtype=torch.bool)
    for i, c in enumerate(CHANNELS):
        side = side_of(c)
        for comp in COMPANIONS.get(base_au(c), ()):
            if comp in LATERAL:
                for s in SIDES if side is None else (side,):
                    allowed[i, CHANNEL_INDEX[f"{comp}_{s}"]] = True
            elif comp in MIDLINE + GAZE:
                allowed[i, CHANNEL_INDEX[comp]] = True
    return allowed


COMPANION_MATRIX = _companion_matrix()


def target_vector(target: dict[str, float], device=None) -> torch.Tensor:
    """{AU or AU_side: value} -> [len(CHANNELS)] (zero where not targeted)."""
    out = torch.zeros(len(CHANNELS), device=device)
    for c, v in expand_target(target).items():
        out[CHANNEL_INDEX[c]] = v
    return out


def stack_channels(au: dict[str, torch.Tensor]) -> torch.Tensor:
    """{AU: [B]} -> [B, len(CHANNELS)] in CHANNELS order."""
    return torch.stack([au[c] for c in CHANNELS], 1)


class AUObjective:
    """Scores expressions of a FLAME model against AU targets, on the landmark subset."""

    def __init__(self, layer: FlameLayer):
        with torch.no_grad():
            neutral = layer(FlameParams.zeros(1, layer.n_shape, layer.n_exp))
            probes = find_probes(neutral.vertices[0], neutral.landmarks[0], eyeball_vertices(layer))
        self.subset = layer.subset(probes.all())
        self.probes = probes.remapped(self.subset.remap)
        self.has_gaze = bool(len(probes.pupil))
        self.n_exp = layer.n_exp
        self._last_neutral = KeptResult()  # shape [B,S] -> neutral
        self._template = _landmark_form(self.neutral(FlameParams.zeros(1, 1, 1))[1])  # [1,68,3]

    def intensities(
        self,
        params: FlameParams,
        neutral: tuple[torch.Tensor, torch.Tensor] | None = None,
        posed: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict:
        """{AU: [B]} of params against the same identities with zero expression, jaw and eyes.

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
        """(subset vertices, landmarks) of the same identities with zero expression, jaw and eyes.

        Every joint is at rest in the head frame, so the posed mesh is the shaped template: no
        skinning (the same values as posing it; tested)."""
        s = self.subset
        shape = params.shape.to(s.v_template)
        verts = s.v_template + (shape @ s.shapedirs[: shape.shape[1]]).view(shape.shape[0], -1, 3)
        f = s.full
        contour = landmarks_from_faces(verts, s.faces, f.dynamic_faces[0], f.dynamic_bary[0])
        static = landmarks_from_faces(verts, s.faces, f.static_faces, f.static_bary)
        return verts, torch.cat([contour, static], dim=1)

    def identity(self, params: FlameParams, neutral: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """[B, IDENTITY_FEATURES]: what the mapper reads of each face's identity, from its neutral landmarks
        (`neutral` when already computed): zero for the template, the same whatever the head's pose or size."""
        if neutral is None:
            neutral = self._neutral_of_identity(params)
        return IDENTITY_GAIN * (_landmark_form(neutral[1]) - self._template).flatten(1)

    def _neutral_of_identity(self, params: FlameParams) -> tuple[torch.Tensor, torch.Tensor]:
        """`neutral` without gradient, kept for the last identity: it depends only on the shape,
        and repeated edits of one face would otherwise pose it every time."""
        neutral = self._last_neutral.get(params.shape)
        if neutral is None:
            with torch.no_grad():
                neutral = self.neutral(params)
            self._last_neutral.keep(params.shape, neutral)
        return neutral


def _landmark_form(lm: torch.Tensor) -> torch.Tensor:
    """[B,68,3] landmarks -> their form: centred on their mean, in units of the inter-ocular distance."""
    iod = (lm[:, 36] - lm[:, 45]).norm(dim=-1)
    return (lm - lm.mean(1, keepdim=True)) / iod[:, None, None]


def eyeball_vertices(layer: FlameLayer) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(right, left) eyeball vertex ids: vertices skinned wholly to the eye joints (4 right, 3 left),
    or None when the head has no eyeballs."""
    w = layer.lbs_weights
    right, left = (torch.nonzero(w[:, j] > 0.99).squeeze(1).cpu() for j in (4, 3))
    return (right, left) if len(right) and len(left) else None


def _head_frame(params: FlameParams) -> FlameParams:
    """The same face with global pose, neck and translation zeroed (expressions do not depend on them)."""
    z = torch.zeros_like
    return params.replace(global_pose=z(params.global_pose), neck_pose=z(params.neck_pose), transl=z(params.transl))


def channel_loss(
    au: torch.Tensor,
    start_au: torch.Tensor,
    target: torch.Tensor,
    spurious_weight: float,
    symmetry_weight: float = 0.0,
    target_weight: float = 1.0,
    margin: float = 0.0,
) -> torch.Tensor:
    """[B]: per-item loss towards target [B,K] (zero = not targeted); au, start_au [B,K] in CHANNELS order.

    Squared hinge up to each targeted channel (+ margin; x target_weight, with a tenth of the squared
    miss either way, except for a channel another target sets: SET_BY), and for channels asked below
    full strength a hinge above LOW_BAND x their target; a hinge on
    every channel neither targeted nor a companion rising above where it started (at least 0.3);
    and, for each lateral action whose two sides have the same target, the change of its left-right
    difference (so symmetric prompts stay symmetric), and where only one side is targeted, the other
    side rising above where it started (at least 0.1: one-sided prompts stay one-sided).
    """
    on = target > 0
    allowed = (on.float() @ COMPANION_MATRIX.to(au.device).float()) > 0
    pulled = on & ~_set_by_another(on)
    # a channel asked below full strength stays within LOW_BAND x its target (a slight smile is not a full one)
    capped = pulled & (target < 1)
    loss = on * torch.relu(target + margin - au) ** 2 + pulled * 0.1 * (au - target) ** 2
    loss = target_weight * (loss + capped * torch.relu(au - LOW_BAND * target) ** 2).sum(1)
    spurious = (~allowed) * torch.relu(au - start_au.clamp(min=0.3)) ** 2
    loss = loss + spurious_weight * spurious.sum(1)
    if symmetry_weight:
        left, right = PAIRS[:, 0].to(au.device), PAIRS[:, 1].to(au.device)
        same = target[:, left] == target[:, right]
        drift = (au[:, left] - au[:, right]) - (start_au[:, left] - start_au[:, right])
        loss = loss + symmetry_weight * (same * drift**2).sum(1)
        # one side targeted, the other not: the other side stays where it was (a wink is one eye)
        for mine, other in ((left, right), (right, left)):
            alone = (target[:, mine] > 0) & (target[:, other] == 0) & ~allowed[:, other]
            rise = torch.relu(au[:, other] - start_au[:, other].clamp(min=0.1))
            loss = loss + symmetry_weight * (alone * rise**2).sum(1)
    return loss


def _set_by_another(on: torch.Tensor) -> torch.Tensor:
    """[B,K] bool: channels whose extent another targeted action of the item sets (SET_BY), from on [B,K]."""
    out = torch.zeros_like(on)
    for channel, setters in SET_BY.items():
        out[:, CHANNEL_INDEX[channel]] = on[:, [CHANNEL_INDEX[a] for a in setters]].any(1)
    return out


def au_loss(au: dict, start_au: dict, target: dict[str, float], spurious_weight: float) -> torch.Tensor:
    """[B]: `channel_loss` for one target {AU or AU_side: value} shared by the batch; au, start_au {AU: [B]}."""
    a, s = stack_channels(au), stack_channels(start_au)
    t = target_vector(target, a.device).expand_as(a)
    return channel_loss(a, s, t, spurious_weight)
