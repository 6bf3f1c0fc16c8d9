"""The geometric AU critic: differentiable FACS action-unit intensities from mesh landmarks, per side.

Every measure compares an edited mesh with the neutral mesh of the same identity (zero
expression, jaw and eyes), both in the head's own frame (global pose, neck and translation
zeroed), through the 68 iBUG landmarks and a few probe vertices picked once per topology
(cheeks, nose sides, chin, and the pupils where the head has eyeballs). Displacements are
divided by the neutral inter-ocular distance IOD (outer eye corners 36-45), so every head reads
on one scale, then by the action's anatomical reference value (REFERENCE_MM below, over an adult
IOD of IOD_REF_MM = 90 mm): 1.0 is a clear full action on any head, whatever its size or its
expression basis.

Sides are the subject's: L is +x in FLAME axes (landmarks 22-26, 42-47, 54), R is -x (17-21,
36-41, 48). Actions FACS codes per side (LATERAL) are measured per side as `AU12_L`, `AU12_R`;
the bilateral reading `AU12` is the weaker side (FACS scores an action bilateral when both sides
show it, so "AU12 present" means both corners pulled). Midline actions (MIDLINE) and gaze (GAZE)
have one reading. Formulas, with d = edited - neutral / IOD, y up, z forward, s the side,
out_s = +1 for L and -1 for R (the side's outward x direction); sideways motion is taken relative
to the inner eye corners 39, 42 (so a lateral shift of the whole face is no action):

  AU1_s  inner brow raiser   dy(inner brow end: 21 R, 22 L)
  AU2_s  outer brow raiser   dy(outer brow end: 17 R, 26 L)
  AU4_s  brow lowerer        max(0, -mean dy(brow 17-20 R, 23-26 L)) + 2 x medial pull of the inner end
                             (the inner end's height is AU1's: sad's 1+4 raises it and pulls it in;
                             brows raised by AU1/AU2 count as no drop rather than a negative one, so
                             under fear's 1+2+4 AU4 reads by the medial pull alone: brows drawn
                             together by a full AU4's 2 mm a side read 0.5, present; the drop's
                             gradient is the unclipped one, as for every measure below)
  AU5_s  upper lid raiser    mean dy(upper lid 37,38 R; 43,44 L)
  AU6_s  cheek raiser        dy(cheek probe s)
  AU7_s  lid tightener       mean dy(lower lid 40,41 R; 46,47 L) - 0.6 x cheek rise
  AU9_s  nose wrinkler       dy(nose-side probe s)
  AU12_s lip corner puller   dy(corner 48 R, 54 L)
  AU14_s dimpler             -dz(corner) - 0.7 |dy(corner)| - 0.7 x outward corner motion
  AU15_s lip corner depr.    -dy(corner)
  AU20_s lip stretcher       2 x outward corner motion - 1.3 x corner rise
  AU43_s eyes closed         (1 - lid aperture / neutral aperture (37-41, 38-40 R; 43-47, 44-46 L))
                             / CLOSURE_REF, the closure of a full blink (AU45 blink, AU46 wink read
                             as AU43)
  AU17   chin raiser         dy(chin probe)
  AU18   lip pucker          mean dz(51, 57, 62, 66)
  AU23   lip tightener       -d width(48-54) - 2.2 x pucker forward motion
  AU24   lip pressor         -d outer lip height(51-57) - (0.5 pucker + 0.3 |corner| + 0.65 chin rise)
  AU25   lips part           d inner lip gap(62-66)
  AU26   jaw drop            -dy(chin probe)
  AU27   mouth stretch       -dy(chin probe), against a wide-open reference
  AU61/62 eyes turn left/right  +-mean dx(pupil - eyeball back pole) / 2  (the subject's left is +x)
  AU63/64 eyes up/down          +-mean dy(pupil - eyeball back pole) / 2
Each measure is clipped at 0 below (an action is present or absent, never negative); its gradient
is the unclipped measure's, so an optimiser starting from a face at rest sees a way up.

Reference values (REFERENCE_MM): the displacement of a clear, full (FACS "marked" to "severe")
action on an adult face, rounded. They are approximate figures of the magnitudes facial-motion
studies and animation rigs show (a full smile raises the lip corners about a centimetre, the
brows rise half a centimetre, a relaxed jaw drop lowers the chin about two), chosen once and
documented here, not fitted to any head: docs/evaluation.md reads every head against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SIDES = ("L", "R")  # the subject's left (+x) and right (-x)
LATERAL = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU12", "AU14", "AU15", "AU20", "AU43")
MIDLINE = ("AU17", "AU18", "AU23", "AU24", "AU25", "AU26", "AU27")
GAZE = ("AU61", "AU62", "AU63", "AU64")
# what training targets and measures: one channel per side of each lateral action
CHANNELS = tuple(f"{a}_{s}" for a in LATERAL for s in SIDES) + MIDLINE + GAZE
BILATERAL = tuple(sorted(LATERAL + MIDLINE + GAZE, key=lambda a: int(a[2:])))
# every reading: bilateral actions (numeric order), then the sided channels
AUS = BILATERAL + tuple(c for c in CHANNELS if "_" in c)

IOD_REF_MM = 90.0  # adult distance between the outer eye corners (exocanthion to exocanthion)
REFERENCE_MM = {
    "AU1": 6.0,  # inner brow end rises
    "AU2": 5.0,  # outer brow end rises
    "AU4": 8.0,  # brow drop (about 4 mm) + 2 x medial pull of the inner end (about 2 mm)
    "AU5": 2.0,  # upper lid margin lifts
    "AU6": 3.5,  # cheek rises
    "AU7": 1.5,  # lower lid rises (net of the cheek's push)
    "AU9": 3.0,  # skin beside the nose rises
    "AU12": 8.0,  # lip corner rises
    "AU14": 3.0,  # lip corner pulled back into the cheek
    "AU15": 6.0,  # lip corner drops
    "AU17": 3.0,  # chin boss rises
    "AU18": 6.0,  # lips push forward
    "AU20": 14.0,  # mouth widens (7 mm per corner)
    "AU23": 4.5,  # mouth narrows
    "AU24": 2.0,  # lips compress
    "AU25": 5.0,  # inner lips part
    "AU26": 18.0,  # chin drops (relaxed jaw drop)
    "AU27": 28.0,  # chin drops (jaw pulled wide open)
    "AU61": 4.0,  # pupils move sideways (about 20 degrees of eye rotation)
    "AU62": 4.0,
    "AU63": 4.0,  # pupils move up / down
    "AU64": 4.0,
}
# AU43: the lid aperture (landmarks on the lid margins) a full blink closes: the margins' landmarks
# stay about a lid-edge apart, so closure reads 0.87-0.89 on the procedural, stand-in and ICT heads
CLOSURE_REF = 0.9
SCALE = {au: mm / IOD_REF_MM for au, mm in REFERENCE_MM.items()} | {"AU43": CLOSURE_REF}
PRESENCE_THRESHOLD = {au: 0.5 for au in AUS} | {a: 0.75 for a in ("AU43", "AU43_L", "AU43_R")}


def base_au(name: str) -> str:
    """'AU12_L' -> 'AU12'; 'AU26' -> 'AU26'."""
    return name.split("_")[0]


def side_of(name: str) -> str | None:
    """'AU12_L' -> 'L', 'AU12' -> None."""
    return name.split("_")[1] if "_" in name else None


def expand_target(target: dict[str, float]) -> dict[str, float]:
    """{AU or AU_side: value} -> {channel: value}: a bilateral lateral AU targets both sides.

    Unknown names raise KeyError naming them (callers turn it into InputError)."""
    out: dict[str, float] = {}
    for name, value in target.items():
        base, side = base_au(name), side_of(name)
        if base in LATERAL:
            for s in SIDES if side is None else (side,):
                if s not in SIDES:
                    raise KeyError(name)
                out[f"{base}_{s}"] = max(out.get(f"{base}_{s}", 0.0), float(value))
        elif base in MIDLINE + GAZE and side is None:
            out[base] = max(out.get(base, 0.0), float(value))
        else:
            raise KeyError(name)
    return out


def compact_target(channels: dict[str, float]) -> dict[str, float]:
    """The inverse of expand_target for display: both sides equal -> the bilateral name."""
    out: dict[str, float] = {}
    for name, value in channels.items():
        base, side = base_au(name), side_of(name)
        other = f"{base}_{'R' if side == 'L' else 'L'}"
        if side is not None and channels.get(other) == value:
            out[base] = value
        else:
            out[name] = value
    return out


@dataclass
class Probes:
    """Probe vertex ids, each [2] as (right, left) unless noted: cheeks, nose sides; chin [1];
    pupils and the eyeballs' back poles [2] (right, left), or [0] on a head without eyeballs."""

    cheek: torch.Tensor
    nose: torch.Tensor
    chin: torch.Tensor
    pupil: torch.Tensor
    eye_back: torch.Tensor

    def all(self) -> torch.Tensor:
        return torch.cat([self.cheek, self.nose, self.chin, self.pupil, self.eye_back])

    def remapped(self, remap: torch.Tensor) -> "Probes":
        return Probes(*(remap[t] for t in (self.cheek, self.nose, self.chin, self.pupil, self.eye_back)))


def find_probes(
    verts: torch.Tensor, landmarks: torch.Tensor, eyeballs: tuple[torch.Tensor, torch.Tensor] | None = None
) -> Probes:
    """Pick probe vertices on a neutral mesh: verts [V,3], landmarks [68,3] (head frame);
    eyeballs: (right, left) vertex ids of the eyeballs, whose front-most vertex is the pupil and
    back-most the back pole."""

    def nearest_front(point: torch.Tensor) -> int:
        ok = verts[:, 2] > point[2] - 0.015
        d = ((verts[:, :2] - point[:2]) ** 2).sum(1) + (~ok) * 1e3
        return int(torch.argmin(d))

    cheek = [nearest_front(0.5 * (landmarks[a] + landmarks[b])) for a, b in ((41, 48), (46, 54))]
    nose = [nearest_front(0.5 * (landmarks[a] + landmarks[b])) for a, b in ((31, 39), (35, 42))]
    chin = [nearest_front(landmarks[57] + 0.6 * (landmarks[8] - landmarks[57]))]
    pupil, back = [], []
    if eyeballs is not None and all(len(e) for e in eyeballs):
        pupil = [int(e[torch.argmax(verts[e, 2])]) for e in eyeballs]
        back = [int(e[torch.argmin(verts[e, 2])]) for e in eyeballs]
    return Probes(*(torch.tensor(x, dtype=torch.long) for x in (cheek, nose, chin, pupil, back)))


# landmark ids per side: (right, left)
_INNER_BROW, _OUTER_BROW = (21, 22), (17, 26)
_BROW = (list(range(17, 21)), list(range(23, 27)))  # without the inner ends (AU1 raises those)
_UPPER_LID, _LOWER_LID = ([37, 38], [43, 44]), ([40, 41], [46, 47])
_LID_PAIRS = (((37, 41), (38, 40)), ((43, 47), (44, 46)))
_CORNER = (48, 54)
_OUT = (-1.0, 1.0)  # outward x direction of (right, left)


def au_intensities(
    lm: torch.Tensor, lm0: torch.Tensor, verts: torch.Tensor, verts0: torch.Tensor, probes: Probes
) -> dict[str, torch.Tensor]:
    """lm, lm0 [B,68,3] edited / neutral landmarks; verts, verts0 [B,V,3] (indexed by `probes`)
    -> {AU: [B]} for every name in AUS (bilateral readings and sided channels)."""
    iod = (lm0[:, 36] - lm0[:, 45]).norm(dim=-1)
    d = (lm - lm0) / iod[:, None, None]
    dv = (verts - verts0) / iod[:, None, None]
    dy = lambda idx: d[:, idx, 1].mean(1) if isinstance(idx, list) else d[:, idx, 1]  # noqa: E731
    width = lambda L: (L[:, 54] - L[:, 48]).norm(dim=-1)  # noqa: E731
    gap = lambda L, a, b: (L[:, a] - L[:, b]).norm(dim=-1)  # noqa: E731

    raw: dict[str, torch.Tensor] = {}
    ref_dx = d[:, [39, 42], 0].mean(1)  # the inner eye corners: lateral motion of the whole face
    for i, s in enumerate(("R", "L")):
        out = _OUT[i]
        cheek = dv[:, probes.cheek[i], 1]
        corner_dy = d[:, _CORNER[i], 1]
        corner_out = out * (d[:, _CORNER[i], 0] - ref_dx)
        medial = -out * (d[:, _INNER_BROW[i], 0] - ref_dx)
        aperture = sum(gap(lm, a, b) for a, b in _LID_PAIRS[i]) / 2
        aperture0 = sum(gap(lm0, a, b) for a, b in _LID_PAIRS[i]) / 2
        raw[f"AU1_{s}"] = dy(_INNER_BROW[i])
        raw[f"AU2_{s}"] = dy(_OUTER_BROW[i])
        raw[f"AU4_{s}"] = _clipped(-dy(_BROW[i])) + 2 * medial
        raw[f"AU5_{s}"] = dy(_UPPER_LID[i])
        raw[f"AU6_{s}"] = cheek
        raw[f"AU7_{s}"] = dy(_LOWER_LID[i]) - 0.6 * cheek.clamp(min=0)
        raw[f"AU9_{s}"] = dv[:, probes.nose[i], 1]
        raw[f"AU12_{s}"] = corner_dy
        raw[f"AU14_{s}"] = -d[:, _CORNER[i], 2] - 0.7 * corner_dy.abs() - 0.7 * corner_out.clamp(min=0)
        raw[f"AU15_{s}"] = -corner_dy
        raw[f"AU20_{s}"] = 2 * corner_out - 1.3 * corner_dy.clamp(min=0)
        raw[f"AU43_{s}"] = 1 - aperture / aperture0

    corner = d[:, [48, 54], 1].mean(1)
    chin = dv[:, probes.chin[0], 1]
    pucker = d[:, [51, 57, 62, 66], 2].mean(1)
    d_width = (width(lm) - width(lm0)) / iod
    raw |= {
        "AU17": chin,
        "AU18": pucker,
        "AU23": -d_width - 2.2 * pucker.clamp(min=0),
        "AU24": -(gap(lm, 51, 57) - gap(lm0, 51, 57)) / iod
        - 0.5 * pucker.clamp(min=0)
        - 0.3 * corner.abs()
        - 0.65 * chin.clamp(min=0),
        "AU25": (gap(lm, 62, 66) - gap(lm0, 62, 66)) / iod,
        "AU26": -chin,
        "AU27": -chin,
    }
    if len(probes.pupil):  # half the pupil's motion against its eyeball's back pole: rotation only
        gaze = 0.5 * (dv[:, probes.pupil] - dv[:, probes.eye_back]).mean(1)  # [B,3]
        raw |= {"AU61": gaze[:, 0], "AU62": -gaze[:, 0], "AU63": gaze[:, 1], "AU64": -gaze[:, 1]}
    else:
        raw |= {a: torch.zeros_like(chin) for a in GAZE}
    out = {name: _clipped(value / SCALE[base_au(name)]) for name, value in raw.items()}
    for a in LATERAL:
        out[a] = torch.minimum(out[f"{a}_L"], out[f"{a}_R"])
    return {name: out[name] for name in AUS}


def _clipped(x: torch.Tensor) -> torch.Tensor:
    """x clipped at 0 below, with the gradient of x itself (straight through): a face at rest reads
    exactly 0, and training still sees which way is up from there (clamp's gradient is 0 at 0)."""
    return x + (x.clamp(min=0) - x).detach()


def present(intensities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{AU: bool [B]} by the presence thresholds."""
    return {au: v >= PRESENCE_THRESHOLD[au] for au, v in intensities.items()}


def success(intensities: dict[str, torch.Tensor], target_aus) -> torch.Tensor:
    """The paper's rule: an edit succeeds when every AU of the target expression is present
    (a bilateral lateral AU: on both sides). [B] bool."""
    flags = present(intensities)
    out = torch.ones_like(next(iter(intensities.values())), dtype=torch.bool)
    for au in target_aus:
        out &= flags[au]
    return out


def target_met(intensities: dict[str, torch.Tensor], target: dict[str, float]) -> torch.Tensor:
    """[B] bool: every AU of target {AU: value} present at the intensity asked, i.e. at least its
    presence threshold x min(1, value). For full targets (1.0, the paper's six prompts) this is
    `success`; a slight smile (0.5) counts when the corners show half the full-action threshold."""
    out = torch.ones_like(next(iter(intensities.values())), dtype=torch.bool)
    for au, value in target.items():
        out &= intensities[au] >= PRESENCE_THRESHOLD[au] * min(1.0, float(value))
    return out


def asymmetry(intensities: dict[str, torch.Tensor], aus=LATERAL) -> torch.Tensor:
    """[B]: mean |AU_L - AU_R| over the lateral actions `aus` (0 for a perfectly symmetric face)."""
    return torch.stack([(intensities[f"{a}_L"] - intensities[f"{a}_R"]).abs() for a in aus]).mean(0)
