"""The procedural demo head: FLAME layout, determinism, closed mesh, expressions that do what they say."""

import numpy as np
import pytest
import torch

from faceedit_core.flame import FlameLayer
from faceedit_core.flame.procedural import build_demo_head
from faceedit_core.flame.procedural_expressions import BY_NAME, COMPONENTS, component_regions
from faceedit_core.params import FlameParams


@pytest.fixture(scope="module")
def head():
    return build_demo_head()


@pytest.fixture(scope="module")
def layer(head):
    return FlameLayer(head.model, head.landmarks)


def _out(layer, jaw=0.0, **weights):
    p = FlameParams.zeros(1, 300, 100)
    for name, w in weights.items():
        p.expression[0, BY_NAME[name].index] = w
    p.jaw_pose[0, 0] = jaw
    return layer(p)


def test_flame_layout(head):
    m = head.model
    V = m.n_verts
    assert m.shapedirs.shape == (V, 3, 400) and m.posedirs.shape == (V, 3, 36)
    assert m.J_regressor.shape == (5, V) and np.allclose(m.J_regressor.sum(1), 1)
    assert m.weights.shape == (V, 5) and np.allclose(m.weights.sum(1), 1, atol=1e-6)
    assert m.parents.tolist() == [-1, 0, 1, 1, 1]
    assert m.ft.shape == m.f.shape and m.vt.min() >= 0 and m.vt.max() <= 1
    assert 0.14 < np.ptp(m.v_template[:, 0]) < 0.18  # head width like a real FLAME head


def test_build_is_deterministic(head):
    assert build_demo_head().content_hash() == head.content_hash()


def test_mesh_is_closed_and_consistently_wound(head):
    f = head.model.f
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    # every directed edge appears once and its reverse once: closed and consistently oriented
    directed = {tuple(e) for e in edges.tolist()}
    assert len(directed) == len(edges)
    assert all((b, a) in directed for a, b in directed)


def test_each_component_stays_in_its_region(head):
    regions = component_regions(head.model.shapedirs[:, :, 300:])
    assert len(COMPONENTS) >= 14
    for comp in COMPONENTS:
        d = np.linalg.norm(head.model.shapedirs[:, :, 300 + comp.index], axis=1)
        assert d.max() > 0.002, comp.name  # a visible action at full strength
        inside = regions[comp.index] > 0
        assert d[inside].sum() / d.sum() > 0.95, comp.name
        assert inside.mean() < 0.25, comp.name  # localised


def test_eyes_closed_brings_upper_lid_onto_lower(layer):
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        open_gap = (_out(layer).landmarks[0, upper, 1] - _out(layer).landmarks[0, lower, 1]).item()
        closed = _out(layer, eyes_closed=1.0).landmarks[0]
        assert open_gap > 0.006
        assert abs((closed[upper, 1] - closed[lower, 1]).item()) < 0.1 * open_gap


def test_jaw_opens_the_mouth_and_moves_only_the_lower_face(layer):
    rest, opened = _out(layer).landmarks[0], _out(layer, jaw=0.25).landmarks[0]
    assert (opened[66, 1] - opened[62, 1]).item() < (rest[66, 1] - rest[62, 1]).item() - 0.01
    torch.testing.assert_close(opened[17:48], rest[17:48])  # brows, nose, eyes stay


def test_smile_and_brow_raise_move_the_landmarks_that_measure_them(layer):
    rest = _out(layer).landmarks[0]
    smile = _out(layer, lip_corner_pull=1.0).landmarks[0]
    assert (smile[48, 1] - rest[48, 1]).item() > 0.003 and (smile[54, 1] - rest[54, 1]).item() > 0.003
    assert (smile[54, 0] - smile[48, 0]).item() > (rest[54, 0] - rest[48, 0]).item() + 0.005
    raised = _out(layer, inner_brow_raise=1.0).landmarks[0]
    assert (raised[21, 1] - rest[21, 1]).item() > 0.004 and (raised[22, 1] - rest[22, 1]).item() > 0.004


def test_landmarks_in_ibug_order(layer):
    lm = _out(layer).landmarks[0].numpy()
    assert lm[36, 0] < lm[39, 0] < 0 < lm[42, 0] < lm[45, 0]  # right eye on -x, left on +x
    assert lm[8, 1] < lm[57, 1] < lm[51, 1] < lm[30, 1] < lm[27, 1] < lm[19, 1]  # chin to brow
    assert lm[0, 0] < lm[8, 0] < lm[16, 0]
