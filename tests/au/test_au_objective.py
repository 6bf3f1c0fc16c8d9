"""The AU objective: readings against the neutral face, and the losses the conditioned mapper trains on."""

import pytest
import torch

from faceedit_core.au.critic import CHANNELS
from faceedit_core.au.objective import CHANNEL_INDEX, LOW_BAND, AUObjective, au_loss, channel_loss, target_vector
from faceedit_core.flame.default_head import load_procedural_flame
from faceedit_core.params import FlameParams

K = len(CHANNELS)


def _vec(**channels) -> torch.Tensor:
    out = torch.zeros(1, K)
    for name, v in channels.items():
        out[0, CHANNEL_INDEX[name]] = v
    return out


def test_target_vector_puts_each_side_in_its_channel():
    t = target_vector({"AU12": 1.0, "AU43_L": 0.8})
    assert t[CHANNEL_INDEX["AU12_L"]] == t[CHANNEL_INDEX["AU12_R"]] == 1.0
    assert t[CHANNEL_INDEX["AU43_L"]] == pytest.approx(0.8) and t[CHANNEL_INDEX["AU43_R"]] == 0
    assert int((t > 0).sum()) == 3


def test_loss_is_zero_at_the_target_and_grows_below_it():
    target = _vec(AU12_L=1.0, AU12_R=1.0)
    start = torch.zeros(1, K)
    assert channel_loss(target.clone(), start, target, 0.5, 2.0).item() == pytest.approx(0.0)
    assert channel_loss(0.5 * target, start, target, 0.5, 2.0).item() > 0.2


def test_a_one_sided_target_penalises_the_other_side_rising():
    """A wink is one eye: closing the right eye too costs, even within the generic 0.3 allowance."""
    target = _vec(AU43_L=1.0)
    start = torch.zeros(1, K)
    alone = target.clone()
    both = _vec(AU43_L=1.0, AU43_R=0.25)
    assert channel_loss(alone, start, target, 0.5, 2.0).item() == pytest.approx(0.0)
    assert channel_loss(both, start, target, 0.5, 2.0).item() > 0.02
    assert channel_loss(both, start, target, 0.5, 0.0).item() == pytest.approx(0.0)  # only the side term sees it


def test_a_symmetric_target_penalises_drifting_apart_and_companions_are_free():
    target = _vec(AU12_L=1.0, AU12_R=1.0)
    start = torch.zeros(1, K)
    lopsided = _vec(AU12_L=1.3, AU12_R=0.9)
    even = _vec(AU12_L=1.1, AU12_R=1.1)
    assert channel_loss(lopsided, start, target, 0.5, 2.0).item() > channel_loss(even, start, target, 0.5, 2.0).item()
    with_cheeks = _vec(AU12_L=1.0, AU12_R=1.0, AU6_L=0.8, AU6_R=0.8)  # AU6 comes with a smile
    with_frown = _vec(AU12_L=1.0, AU12_R=1.0, AU4_L=0.8, AU4_R=0.8)
    assert channel_loss(with_cheeks, start, target, 0.5, 2.0).item() == pytest.approx(0.0)
    assert channel_loss(with_frown, start, target, 0.5, 2.0).item() > 0.1


def test_the_lips_part_as_far_as_the_jaw_drops():
    """AU25 beyond its target costs when asked alone, not under a jaw drop (which also frees the
    corners' AU15/AU23 that ride down with the jaw)."""
    start = torch.zeros(1, K)
    lips = _vec(AU25=1.0)
    jaw = _vec(AU25=1.0, AU26=1.0)
    wide = _vec(AU25=3.5)
    assert channel_loss(wide, start, lips, 0.5, 2.0).item() > 0.5
    opened = _vec(AU25=3.5, AU26=1.1, AU15_L=1.1, AU15_R=1.1, AU23=0.6)
    assert channel_loss(opened, start, jaw, 0.5, 2.0).item() == pytest.approx(0.001, abs=0.001)


def test_au_loss_takes_bilateral_and_sided_names():
    au = {c: torch.zeros(2) for c in CHANNELS}
    au["AU12_L"] = torch.tensor([1.0, 0.0])
    start = {c: torch.zeros(2) for c in CHANNELS}
    loss = au_loss(au, start, {"AU12_L": 1.0}, 0.5)
    assert loss[0].item() == pytest.approx(0.0) and loss[1].item() > 0.5


def test_neutral_shortcut_equals_posing_the_neutral_face():
    layer = load_procedural_flame()
    objective = AUObjective(layer)
    p = FlameParams.zeros(3, 40, 16)
    g = torch.Generator().manual_seed(1)
    p.shape.normal_(generator=g)
    p.expression.uniform_(0, 0.5, generator=g)
    p.jaw_pose[:, 0] = 0.1
    p.eye_pose[:, 1] = 0.2
    verts, lms = objective.neutral(p)
    z = torch.zeros_like
    posed = objective.subset(p.replace(expression=z(p.expression), jaw_pose=z(p.jaw_pose), eye_pose=z(p.eye_pose)))
    torch.testing.assert_close(verts, posed[0], rtol=0, atol=1e-7)
    torch.testing.assert_close(lms, posed[1], rtol=0, atol=1e-7)


def test_a_channel_asked_below_full_strength_is_held_within_its_band():
    """t < 1: a reading above LOW_BAND x t costs its squared excess (a slight smile stays slight); a full
    target (t = 1) keeps only the gentle pull back, so a strong reading there is not fought."""

    def loss(t: float, reading: float) -> float:
        target, au = torch.zeros(1, len(CHANNELS)), torch.zeros(1, len(CHANNELS))
        target[0, CHANNEL_INDEX["AU6_L"]], au[0, CHANNEL_INDEX["AU6_L"]] = t, reading
        return channel_loss(au, torch.zeros_like(au), target, spurious_weight=0.0).item()

    inside = 0.99 * LOW_BAND * 0.5
    assert loss(0.5, inside) == pytest.approx(0.1 * (inside - 0.5) ** 2)
    assert loss(0.5, 1.0) == pytest.approx(0.1 * 0.5**2 + (1.0 - LOW_BAND * 0.5) ** 2)
    assert loss(1.0, 1.6) == pytest.approx(0.1 * 0.6**2)
