"""The geometric AU critic on hand-built landmark sets and on the demo head: per side, on one scale."""

import pytest
import torch

from faceedit_core.au.critic import (
    AUS,
    CHANNELS,
    CLOSURE_REF,
    LATERAL,
    REFERENCE_MM,
    SCALE,
    asymmetry,
    au_intensities,
    compact_target,
    expand_target,
    find_probes,
    present,
    success,
    target_met,
)
from faceedit_core.au.objective import eyeball_vertices
from faceedit_core.flame.default_head import load_procedural_flame
from faceedit_core.flame.procedural_expressions import COMPONENTS
from faceedit_core.params import FlameParams


@pytest.fixture(scope="module")
def demo():
    layer = load_procedural_flame()
    neutral = layer(FlameParams.zeros(1, 300, 100))
    return layer, neutral, find_probes(neutral.vertices[0], neutral.landmarks[0], eyeball_vertices(layer))


def _measure(demo, lms, verts):
    _, neutral, probes = demo
    return au_intensities(lms, neutral.landmarks, verts, neutral.vertices, probes)


def test_hand_built_brow_raise_is_au1_au2_not_au4(demo):
    _, neutral, _ = demo
    lms = neutral.landmarks.clone()
    lms[:, 17:27, 1] += 0.008  # both brows up by 8 mm
    au = _measure(demo, lms, neutral.vertices)
    flags = present(au)
    assert flags["AU1"].item() and flags["AU2"].item() and not flags["AU4"].item()
    assert success(au, ["AU1", "AU2"]).item() and not success(au, ["AU4"]).item()


def test_brows_drawn_together_read_as_au4_under_raised_brows(demo):
    """Fear's 1+2+4: raised brows are no negative drop; their medial pull still reads as AU4."""
    _, neutral, _ = demo
    iod = (neutral.landmarks[0, 36] - neutral.landmarks[0, 45]).norm().item()
    pull = 2.0 / 90 * iod  # a full AU4's medial pull (2 mm a side on an adult face)
    raised = neutral.landmarks.clone()
    raised[:, 17:27, 1] += 0.006
    drawn = raised.clone()
    drawn[:, 21, 0] += pull  # the right inner brow end (-x side) moves towards the midline
    drawn[:, 22, 0] -= pull
    assert _measure(demo, raised, neutral.vertices)["AU4"].item() == 0.0
    au = _measure(demo, drawn, neutral.vertices)
    assert au["AU4"].item() == pytest.approx(2 * 2.0 / REFERENCE_MM["AU4"], abs=0.02)  # 0.5: present
    assert au["AU1"].item() >= 0.5 and au["AU2"].item() >= 0.5


def test_invariant_to_scale_and_translation(demo):
    _, neutral, probes = demo
    lms = neutral.landmarks.clone()
    lms[:, 48, 1] += 0.006
    lms[:, 54, 1] += 0.006
    base = au_intensities(lms, neutral.landmarks, neutral.vertices, neutral.vertices, probes)
    s, t = 1.3, torch.tensor([0.1, -0.2, 0.05])
    moved = au_intensities(
        lms * s + t, neutral.landmarks * s + t, neutral.vertices * s + t, neutral.vertices * s + t, probes
    )
    for au in base:
        torch.testing.assert_close(moved[au], base[au], atol=1e-5, rtol=1e-4)
    assert base["AU12"].item() > 0.5


@pytest.mark.parametrize("comp", COMPONENTS, ids=lambda c: c.name)
def test_each_demo_component_reads_as_its_own_action_unit(demo, comp):
    layer, neutral, _ = demo
    p = FlameParams.zeros(1, 300, 100)
    p.expression[0, comp.index] = 1.0
    out = layer(p)
    au = _measure(demo, out.landmarks, out.vertices)
    assert present(au)[comp.facs].item(), {k: round(v.item(), 2) for k, v in au.items()}
    # the demo head's components are mirror-symmetric: both sides read alike
    assert asymmetry(au).item() < 0.05, {a: (au[f"{a}_L"].item(), au[f"{a}_R"].item()) for a in LATERAL}


def test_scales_are_the_documented_reference_values_over_an_adult_iod():
    assert SCALE["AU12"] == pytest.approx(REFERENCE_MM["AU12"] / 90.0) and SCALE["AU43"] == CLOSURE_REF == 0.9
    assert set(AUS) >= set(CHANNELS) and all(a in AUS for a in ("AU12", "AU12_L", "AU12_R", "AU26", "AU61"))


def test_one_side_reads_on_its_side_and_the_bilateral_reading_needs_both(demo):
    _, neutral, _ = demo
    lms = neutral.landmarks.clone()
    lms[:, 22:27, 1] += 0.008  # the subject's left brow (+x) up by 8 mm
    left = _measure(demo, lms, neutral.vertices)
    assert lms[0, 22:27, 0].min() > 0  # FLAME axes: the subject's left is +x
    assert present(left)["AU1_L"].item() and present(left)["AU2_L"].item()
    assert left["AU1_R"].item() == 0 and not present(left)["AU1"].item()
    assert success(left, ["AU1_L", "AU2_L"]).item() and not success(left, ["AU1", "AU2"]).item()
    lms[:, 17:22, 1] += 0.008  # and now the right one
    both = _measure(demo, lms, neutral.vertices)
    assert success(both, ["AU1", "AU2"]).item() and asymmetry(both).item() < 1e-4


def test_a_lateral_shift_of_the_whole_face_is_no_action(demo):
    _, neutral, _ = demo
    lms = neutral.landmarks.clone()
    lms[..., 0] += 0.005
    verts = neutral.vertices.clone()
    verts[..., 0] += 0.005
    au = _measure(demo, lms, verts)
    assert max(v.abs().max().item() for v in au.values()) < 1e-4


def test_eye_rotation_reads_as_gaze(demo):
    layer, neutral, _ = demo
    p = FlameParams.zeros(1, 300, 100)
    p.eye_pose[0, [1, 4]] = 0.35  # both eyes turn about +y: towards +x, the subject's left
    out = layer(p)
    au = _measure(demo, out.landmarks, out.vertices)
    assert present(au)["AU61"].item() and au["AU62"].item() == 0 and not present(au)["AU43"].item()


def test_targets_expand_per_side_and_compact_back():
    assert expand_target({"AU12": 1.0, "AU26": 0.5}) == {"AU12_L": 1.0, "AU12_R": 1.0, "AU26": 0.5}
    assert expand_target({"AU12_R": 0.9}) == {"AU12_R": 0.9}
    assert compact_target({"AU12_L": 1.0, "AU12_R": 1.0, "AU43_L": 1.0}) == {"AU12": 1.0, "AU43_L": 1.0}
    for bad in ({"AU99": 1.0}, {"AU26_L": 1.0}, {"AU12_X": 1.0}):
        with pytest.raises(KeyError):
            expand_target(bad)


def test_intensity_scaled_targets_are_met_at_the_scaled_threshold():
    au = {a: torch.tensor([0.3, 0.6]) for a in AUS}
    assert target_met(au, {"AU12": 0.5}).tolist() == [True, True]
    assert target_met(au, {"AU12": 1.0}).tolist() == [False, True] == success(au, ["AU12"]).tolist()


def test_gradient_flows_to_the_expression(demo):
    layer, neutral, probes = demo
    p = FlameParams.zeros(1, 300, 100)
    p.expression.requires_grad_(True)
    out = layer(p)
    au = au_intensities(out.landmarks, neutral.landmarks, out.vertices, neutral.vertices, probes)
    (au["AU12"] + 0.0 * sum(au.values())).sum().backward()
    assert p.expression.grad is not None  # gradient of the (zero-clipped) measure exists
    p2 = FlameParams.zeros(1, 300, 100)
    p2.expression[0, 7] = 0.5
    p2.expression.requires_grad_(True)
    out2 = layer(p2)
    au2 = au_intensities(out2.landmarks, neutral.landmarks, out2.vertices, neutral.vertices, probes)
    au2["AU12"].sum().backward()
    assert p2.expression.grad[0, 7] > 0


def test_works_on_a_flame_file_with_its_landmark_embedding(golden_flame_dir):
    """The critic needs only landmarks and vertices: a FLAME-layout model from a file works too."""
    from faceedit_core.flame import FlameLayer

    layer = FlameLayer.from_files(
        golden_flame_dir / "synthetic_flame_sparse.pkl", golden_flame_dir / "landmark_embedding.npy"
    )
    neutral = layer(FlameParams.zeros(1, 100, 50))
    probes = find_probes(neutral.vertices[0], neutral.landmarks[0], eyeball_vertices(layer))
    opened = FlameParams.zeros(1, 100, 50)
    opened.jaw_pose[0, 0] = 0.3
    out = layer(opened)
    au = au_intensities(out.landmarks, neutral.landmarks, out.vertices, neutral.vertices, probes)
    assert present(au)["AU26"].item() and not present(au)["AU1"].item()
    still = au_intensities(neutral.landmarks, neutral.landmarks, neutral.vertices, neutral.vertices, probes)
    assert all(v.item() == 0 for v in still.values())


def test_a_face_at_rest_reads_zero_but_shows_the_way_up(demo):
    """Readings are clipped at 0, their gradients are not: training from a neutral face can start."""
    layer, neutral, probes = demo
    p = FlameParams.zeros(1, 300, 100)
    eyes = torch.zeros(1, 6, requires_grad=True)
    out = layer(p.replace(eye_pose=eyes))
    au = au_intensities(out.landmarks, neutral.landmarks, out.vertices, neutral.vertices, probes)
    assert au["AU61"].item() == 0
    au["AU61"].sum().backward()
    assert eyes.grad[0, 1] > 0 and eyes.grad[0, 4] > 0  # turning both eyes about +y reads as AU61
