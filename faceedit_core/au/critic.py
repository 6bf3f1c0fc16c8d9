"""The geometric AU critic: differentiable FACS action-unit intensities from mesh landmarks.

Every measure compares an edited mesh with the neutral mesh of the same identity, both in the
head's own frame (global pose, neck and translation zeroed), through the 68 iBUG landmarks and
three pairs of probe vertices (cheeks, nose sides) picked once per topology. Displacements are
divided by the neutral inter-ocular distance (outer eye corners 36-45), then by a per-AU scale,
so 1.0 is a clear full action. Formulas (d = edited - neutral, y up, z forward):

  AU1  inner brow raiser   mean dy(21, 22)                                    / 0.070
  AU2  outer brow raiser   mean dy(17, 26)                                    / 0.070
  AU4  brow lowerer        -mean dy(17..26) - d|x22 - x21|  (drop + drawing together)
  AU5  upper lid raiser    mean dy(37, 38, 43, 44)
  AU6  cheek raiser        mean dy(cheek probes)
  AU7  lid tightener       mean dy(40, 41, 46, 47) - 0.6 x cheek rise
  AU9  nose wrinkler       mean dy(nose-side probes)
  AU12 lip corner puller   mean dy(48, 54)
  AU15 lip corner depr.    -mean dy(48, 54)
  AU17 chin raiser         dy of the chin probe
  AU18 lip pucker          mean dz(51, 57, 62, 66)
  AU20 lip stretcher       d width(48-54) - 1.3 x corner rise
  AU23 lip tightener       -d width(48-54) - 2.2 x pucker forward motion
  AU24 lip pressor         -d outer lip height(51-57) - (0.5 pucker + 0.3 |corner| + 0.65 chin rise)
  AU25 lips part           d inner lip gap(62-66)
  AU26 jaw drop            -dy of the chin probe (the lower lip of the jaw follows)
  AU43 eyes closed         1 - aperture / neutral aperture, aperture = mean lid distance
                           (37-41, 38-40, 43-47, 44-46); measured, not scaled
Each measure is clipped at 0 below (an action is present or absent, never negative). The scales
were calibrated on the demo head so its component at coefficient 1.0 reads about 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AUS = (
    "AU1",
    "AU2",
    "AU4",
    "AU5",
    "AU6",
    "AU7",
    "AU9",
    "AU12",
    "AU15",
    "AU17",
    "AU18",
    "AU20",
    "AU23",
    "AU24",
    "AU25",
    "AU26",
    "AU43",
)
PRESENCE_THRESHOLD = {au: 0.5 for au in AUS} | {"AU43": 0.75}
SCALE = {
    "AU1": 0.070,
    "AU2": 0.057,
    "AU4": 0.145,
    "AU5": 0.016,
    "AU6": 0.039,
    "AU7": 0.014,
    "AU9": 0.036,
    "AU12": 0.085,
    "AU15": 0.075,
    "AU17": 0.033,
    "AU18": 0.071,
    "AU20": 0.170,
    "AU23": 0.048,
    "AU24": 0.0185,
    "AU25": 0.060,
    "AU26": 0.20,
    "AU43": 1.0,
}


@dataclass
class Probes:
    """Probe vertex ids [2] each: cheeks, nose sides; chin [1]."""

    cheek: torch.Tensor
    nose: torch.Tensor
    chin: torch.Tensor


def find_probes(verts: torch.Tensor, landmarks: torch.Tensor) -> Probes:
    """Pick probe vertices on a neutral mesh: verts [V,3], landmarks [68,3] (head frame)."""

    def nearest_front(point: torch.Tensor) -> int:
        ok = verts[:, 2] > point[2] - 0.015
        d = ((verts[:, :2] - point[:2]) ** 2).sum(1) + (~ok) * 1e3
        return int(torch.argmin(d))

    cheek = [nearest_front(0.5 * (landmarks[a] + landmarks[b])) for a, b in ((41, 48), (46, 54))]
    nose = [nearest_front(0.5 * (landmarks[a] + landmarks[b])) for a, b in ((31, 39), (35, 42))]
    chin = [nearest_front(landmarks[57] + 0.6 * (landmarks[8] - landmarks[57]))]
    return Probes(*(torch.tensor(x) for x in (cheek, nose, chin)))


def au_intensities(
    lm: torch.Tensor, lm0: torch.Tensor, verts: torch.Tensor, verts0: torch.Tensor, probes: Probes
) -> dict[str, torch.Tensor]:
    """lm, lm0 [B,68,3] edited / neutral landmarks; verts, verts0 [B,V,3] -> {AU: [B]}."""
    iod = (lm0[:, 36] - lm0[:, 45]).norm(dim=-1)
    d = (lm - lm0) / iod[:, None, None]
    dv = lambda idx: (verts[:, idx] - verts0[:, idx]) / iod[:, None, None]  # noqa: E731
    dy = lambda idx: d[:, idx, 1].mean(1)  # noqa: E731
    width = lambda L: (L[:, 54] - L[:, 48]).norm(dim=-1)  # noqa: E731
    gap = lambda L, a, b: (L[:, a] - L[:, b]).norm(dim=-1)  # noqa: E731
    aperture = lambda L: sum(gap(L, a, b) for a, b in ((37, 41), (38, 40), (43, 47), (44, 46))) / 4  # noqa: E731

    corner = dy([48, 54])
    cheek = dv(probes.cheek)[..., 1].mean(1)
    chin = dv(probes.chin)[:, 0, 1]
    pucker = d[:, [51, 57, 62, 66], 2].mean(1)
    d_width = (width(lm) - width(lm0)) / iod
    raw = {
        "AU1": dy([21, 22]),
        "AU2": dy([17, 26]),
        "AU4": -dy(list(range(17, 27))) - ((lm[:, 22, 0] - lm[:, 21, 0]) - (lm0[:, 22, 0] - lm0[:, 21, 0])) / iod,
        "AU5": dy([37, 38, 43, 44]),
        "AU6": cheek,
        "AU7": dy([40, 41, 46, 47]) - 0.6 * cheek.clamp(min=0),
        "AU9": dv(probes.nose)[..., 1].mean(1),
        "AU12": corner,
        "AU15": -corner,
        "AU17": chin,
        "AU18": pucker,
        "AU20": d_width - 1.3 * corner.clamp(min=0),
        "AU23": -d_width - 2.2 * pucker.clamp(min=0),
        "AU24": -(gap(lm, 51, 57) - gap(lm0, 51, 57)) / iod
        - 0.5 * pucker.clamp(min=0)
        - 0.3 * corner.abs()
        - 0.65 * chin.clamp(min=0),
        "AU25": (gap(lm, 62, 66) - gap(lm0, 62, 66)) / iod,
        "AU26": -chin,
        "AU43": 1 - aperture(lm) / aperture(lm0),
    }
    return {au: (raw[au] / SCALE[au]).clamp(min=0) for au in AUS}


def present(intensities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{AU: bool [B]} by the presence thresholds."""
    return {au: v >= PRESENCE_THRESHOLD[au] for au, v in intensities.items()}


def success(intensities: dict[str, torch.Tensor], target_aus) -> torch.Tensor:
    """The paper's rule: an edit succeeds when every AU of the target expression is present. [B] bool."""
    flags = present(intensities)
    out = torch.ones_like(next(iter(intensities.values())), dtype=torch.bool)
    for au in target_aus:
        out &= flags[au]
    return out
