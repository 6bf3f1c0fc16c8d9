"""The FLAME-format stand-in: FLAME's sizes, tree and file layout, read through the loader users' files take."""

import numpy as np
import pytest
import torch

from faceedit_core.au.critic import PRESENCE_THRESHOLD, au_intensities, find_probes
from faceedit_core.au.objective import eyeball_vertices
from faceedit_core.flame.layer import FlameLayer
from faceedit_core.flame.standin import N_FACES, N_VERTS, build_flame_standin
from faceedit_core.params import FlameParams
from faceedit_core.preview.head import PreviewHead
from tests.helpers.flame import write_flame_standin


@pytest.fixture(scope="module")
def standin():
    return build_flame_standin("2020")


@pytest.fixture(scope="module")
def layer(standin):
    return FlameLayer(standin.model, standin.landmarks)


def test_has_flames_sizes_tree_and_components(standin):
    m, lm = standin.model, standin.landmarks
    assert m.v_template.shape == (N_VERTS, 3) == (5023, 3) and m.f.shape == (N_FACES, 3) == (9976, 3)
    assert m.parents.tolist() == [-1, 0, 1, 1, 1]
    assert m.shapedirs.shape == (5023, 3, 400) and m.posedirs.shape == (5023, 3, 36)
    norms = np.linalg.norm(m.shapedirs.reshape(-1, 400), axis=0)
    assert (norms[:300] > 0).all() and (norms[300:] > 0).all()  # 300 identity + 100 live expression components
    assert np.abs(m.posedirs[:, :, 9:18]).max() > 0  # jaw correctives
    assert np.allclose(m.weights.sum(1), 1, atol=1e-5)
    assert lm.dynamic_faces.shape == (79, 17) and not np.array_equal(lm.dynamic_faces[0], lm.dynamic_faces[30])


def test_expression_components_are_entangled_and_span_the_actions(standin, layer):
    """No coefficient is one action (as FLAME's PCA), yet each action is exactly a coefficient vector."""
    exprdirs = standin.model.shapedirs[:, :, 300:].reshape(-1, 100)
    for name in ("AU12_L", "AU43_R", "AU1_L", "AU25"):
        coeffs = standin.action_coefficients[name]
        share = np.sort(np.abs(coeffs))[::-1]
        assert share[0] < 0.8 * np.abs(coeffs).sum(), f"{name} is one component"
        rebuilt = (exprdirs @ coeffs).reshape(-1, 3)
        np.testing.assert_allclose(rebuilt, standin.actions[name], atol=1e-6)


@pytest.mark.parametrize(
    "name, variant, style", [("generic_model.pkl", "2020", "2020"), ("flame2023_Open.pkl", "2023", "2023")]
)
def test_files_load_through_the_users_loader(tmp_path, standin, name, variant, style):
    path = write_flame_standin(tmp_path, name, variant, style)
    if style == "2020":
        assert b"chumpy.ch" in path.read_bytes() and b"scipy.sparse" in path.read_bytes()
    head = PreviewHead.from_flame_file(path)
    assert head.label.startswith("FLAME 2020" if variant == "2020" else "FLAME 2023 Open")
    assert head.n_edit == 50 and head.sides and head.coefficients == "pca"
    ref = FlameLayer(*(lambda s: (s.model, s.landmarks))(build_flame_standin(variant)))
    p = FlameParams.zeros(2, 300, 100)
    g = torch.Generator().manual_seed(0)
    p.shape.normal_(generator=g)
    p.expression.normal_(generator=g)
    p.jaw_pose[:, 0] = 0.2
    p.global_pose[:, 1] = torch.tensor([0.0, 0.5])  # a turned head uses another contour row
    got, want = head.layer(p), ref(p)
    torch.testing.assert_close(got.vertices, want.vertices, rtol=0, atol=1e-7)
    torch.testing.assert_close(got.landmarks, want.landmarks, rtol=0, atol=1e-7)


def test_the_two_variants_are_different_heads(tmp_path):
    a = PreviewHead.from_flame_file(write_flame_standin(tmp_path / "a", "generic_model.pkl", "2020", "2020"))
    b = PreviewHead.from_flame_file(write_flame_standin(tmp_path / "b", "flame2023.pkl", "2023", "2023"))
    assert a.head_hash != b.head_hash
    assert not torch.equal(a.layer.exprdirs, b.layer.exprdirs) and torch.equal(a.layer.v_template, b.layer.v_template)


@pytest.mark.parametrize("action", ["AU12_L", "AU12_R", "AU43_L", "AU1_R", "AU4_L", "AU14_R"])
def test_one_sided_actions_read_on_their_side_only(standin, layer, action):
    """The critic measures each side: the stand-in's one-sided action reads on that side, not the other."""
    p = FlameParams.zeros(1, 300, 100)
    p.expression[0] = torch.from_numpy(standin.action_coefficients[action])
    neutral = layer(FlameParams.zeros(1, 300, 100))
    out = layer(p)
    probes = find_probes(neutral.vertices[0], neutral.landmarks[0], eyeball_vertices(layer))
    au = au_intensities(out.landmarks, neutral.landmarks, out.vertices, neutral.vertices, probes)
    base, side = action.split("_")
    other = f"{base}_{'R' if side == 'L' else 'L'}"
    assert au[action].item() >= PRESENCE_THRESHOLD[action], {k: round(v.item(), 2) for k, v in au.items()}
    assert au[other].item() < 0.3 * au[action].item()
