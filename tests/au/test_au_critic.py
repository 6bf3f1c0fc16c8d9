"""The geometric AU critic on hand-built landmark sets and on the demo head."""

import pytest
import torch

from faceedit_core.au.critic import au_intensities, find_probes, present, success
from faceedit_core.flame.default_head import load_demo_flame
from faceedit_core.flame.procedural_expressions import COMPONENTS
from faceedit_core.params import FlameParams


@pytest.fixture(scope="module")
def demo():
    layer = load_demo_flame()
    neutral = layer(FlameParams.zeros(1, 300, 100))
    return layer, neutral, find_probes(neutral.vertices[0], neutral.landmarks[0])


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
    probes = find_probes(neutral.vertices[0], neutral.landmarks[0])
    opened = FlameParams.zeros(1, 100, 50)
    opened.jaw_pose[0, 0] = 0.3
    out = layer(opened)
    au = au_intensities(out.landmarks, neutral.landmarks, out.vertices, neutral.vertices, probes)
    assert present(au)["AU26"].item() and not present(au)["AU1"].item()
    still = au_intensities(neutral.landmarks, neutral.landmarks, neutral.vertices, neutral.vertices, probes)
    assert all(v.item() == 0 for v in still.values())
