"""Properties of the FLAME layer that hold for any model in the FLAME layout."""

import numpy as np
import pytest
import torch

from faceedit_core.errors import InputError
from faceedit_core.flame import FlameLayer
from faceedit_core.flame.io import FlameModel
from faceedit_core.flame.layer import KeptResult
from faceedit_core.params import FlameParams
from tests.helpers.flame import random_flame


@pytest.fixture(scope="module")
def layer():
    return FlameLayer(*random_flame())


def test_zero_parameters_give_the_template(layer):
    out = layer(FlameParams.zeros(1, 10, 10))
    torch.testing.assert_close(out.vertices[0], layer.v_template)


def test_jaw_rotation_moves_only_jaw_weighted_vertices(layer):
    p = FlameParams.zeros(1, 10, 10)
    p.jaw_pose[:, 0] = 0.3
    moved = (layer(p).vertices[0] - layer.v_template).norm(dim=1) > 1e-7
    jaw_weighted = layer.lbs_weights[:, 2] > 0
    assert moved.any()
    # pose correctives move every vertex a little; skinning displacement is confined to the jaw
    no_correctives = FlameLayer(*random_flame())
    no_correctives.posedirs.zero_()
    moved = (no_correctives(p).vertices[0] - no_correctives.v_template).norm(dim=1) > 1e-7
    assert torch.equal(moved, jaw_weighted)


def test_batch_equals_per_item(layer):
    torch.manual_seed(0)
    p = FlameParams.zeros(4, 20, 30)
    for t in (p.shape, p.expression, p.global_pose, p.neck_pose, p.jaw_pose, p.eye_pose, p.transl):
        t.normal_(std=0.2)
    batched = layer(p)
    for i in range(4):
        single = layer(p.index(i))
        torch.testing.assert_close(batched.vertices[i : i + 1], single.vertices)
        torch.testing.assert_close(batched.landmarks[i : i + 1], single.landmarks)


def test_gradients_flow_to_every_parameter(layer):
    p = FlameParams.zeros(2, 10, 10)
    p = p._map(lambda t: (t + 0.05).requires_grad_())
    out = layer(p)
    (out.vertices.sum() + out.landmarks.sum()).backward()
    for name in ("shape", "expression", "global_pose", "neck_pose", "jaw_pose", "transl"):
        grad = getattr(p, name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_float64_and_device_agnostic(layer):
    out = layer.double()(FlameParams.zeros(1, 5, 5, dtype=torch.float64))
    assert out.vertices.dtype == torch.float64
    layer.float()


def test_too_many_coefficients_rejected(layer):
    with pytest.raises(InputError, match="'expression' has 120"):
        layer(FlameParams.zeros(1, 10, 120))


def test_subset_layer_matches_the_full_mesh(layer):
    torch.manual_seed(3)
    p = FlameParams.zeros(3, 20, 30)
    for t in (p.shape, p.expression, p.global_pose, p.neck_pose, p.jaw_pose, p.transl):
        t.normal_(std=0.2)
    extra = torch.tensor([5, 7])
    sub = layer.subset(extra)
    verts, lms = sub(p)
    full = layer(p)
    torch.testing.assert_close(lms, full.landmarks)
    torch.testing.assert_close(verts, full.vertices[:, sub.vertex_ids])
    assert set(extra.tolist()) <= set(sub.vertex_ids.tolist())


def test_identity_cache_gives_fresh_results(layer):
    # edits reuse the last identity's shaped template; changing identity or expression must show
    gen = torch.Generator().manual_seed(3)
    a, b = FlameParams.zeros(1, 10, 10), FlameParams.zeros(1, 10, 10)
    a.shape.normal_(generator=gen)
    b.shape.normal_(generator=gen)
    fresh = FlameLayer(*random_flame())
    for p in (a, a.replace(expression=torch.randn(1, 10, generator=gen)), b, a):
        with torch.no_grad():
            got = layer(p).vertices
        fresh._identity = KeptResult()  # no cache: computed afresh
        torch.testing.assert_close(got, fresh(p).vertices, rtol=0, atol=0)


def test_gradients_at_rest_pose_and_through_a_cached_identity(layer):
    # the pose correctives are skipped at rest only when no gradient is wanted
    p = FlameParams.zeros(1, 10, 10)
    with torch.no_grad():
        layer(p)  # caches this identity
    p = p._map(lambda t: t.clone().requires_grad_())
    out = layer(p)
    out.vertices.sum().backward()
    assert p.jaw_pose.grad is not None and p.jaw_pose.grad.abs().sum() > 0
    assert p.shape.grad is not None and p.shape.grad.abs().sum() > 0


def test_all_zero_components_are_skipped_without_changing_the_mesh():
    # the demo head fills only some of FLAME's component slots; blends skip the empty ones
    model, lm = random_flame()
    model.shapedirs[:, :, 5:300] = 0
    model.shapedirs[:, :, 300 + 7 :] = 0
    layer = FlameLayer(model, lm)
    assert layer._live["shapedirs"].rows == [0, 1, 2, 3, 4] and layer._live["exprdirs"].rows == list(range(7))
    gen = torch.Generator().manual_seed(1)
    for n_shape, n_exp in ((300, 100), (3, 4), (10, 7)):
        p = FlameParams.zeros(1, n_shape, n_exp)
        p.shape.normal_(generator=gen)
        p.expression.normal_(generator=gen)
        want = (
            layer.v_template
            + (p.shape @ layer.shapedirs[:n_shape]).view(1, -1, 3)
            + (p.expression @ layer.exprdirs[:n_exp]).view(1, -1, 3)
        )
        with torch.no_grad():
            torch.testing.assert_close(layer(p).vertices, want, rtol=0, atol=1e-7)
    p = FlameParams.zeros(1, 300, 100)._map(lambda t: t.clone().requires_grad_())
    layer(p).vertices.sum().backward()
    assert p.shape.grad[0, :5].abs().sum() > 0 and not p.shape.grad[0, 5:].any()


def _narrow(model, n_shape: int, n_exp: int):
    """The same random model with only its first n_shape identity and n_exp expression columns."""
    dirs = np.concatenate([model.shapedirs[:, :, :n_shape], model.shapedirs[:, :, 300 : 300 + n_exp]], axis=2)
    return FlameModel(**{**model.__dict__, "shapedirs": dirs, "n_shape": n_shape})


def test_a_narrower_model_splits_at_its_own_shape_width():
    """A model with n_shape = 100 and 52 expression columns (the ICT head's widths) poses exactly as
    the 300 + 100 model whose other columns are zero; its widths are the layer's."""
    model, lm = random_flame()
    narrow = _narrow(model, 100, 52)
    padded = model.shapedirs.copy()
    padded[:, :, 100:300] = 0
    padded[:, :, 352:] = 0
    wide = FlameLayer(FlameModel(**{**model.__dict__, "shapedirs": padded}), lm)
    layer = FlameLayer(narrow, lm)
    assert (layer.n_shape, layer.n_exp) == (100, 52) and (wide.n_shape, wide.n_exp) == (300, 100)
    gen = torch.Generator().manual_seed(3)
    p = FlameParams.zeros(2, 100, 52)
    p.shape.normal_(generator=gen)
    p.expression.normal_(generator=gen)
    p.jaw_pose[:, 0] = 0.2
    with torch.no_grad():
        torch.testing.assert_close(layer(p).vertices, wide(p).vertices, rtol=0, atol=1e-6)
        verts, lms = layer.subset()(p)
        torch.testing.assert_close(lms, layer(p).landmarks, rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="'expression' has 53 coefficients, the model has 52"):
        layer(FlameParams.zeros(1, 100, 53))


@pytest.mark.parametrize(
    "n_shape, columns, ok",
    [(300, 400, True), (300, 350, True), (300, 352, False), (300, 301, False), (100, 152, True), (100, 200, True)]
    + [(100, 100, False), (100, 201, False), (0, 10, False), (301, 401, False)],
)
def test_shape_width_is_checked(n_shape, columns, ok):
    """FLAME's files keep exactly their two layouts (300 + 100 or 50); another width takes 1..100
    expression columns after its identity columns."""
    model, _ = random_flame()
    V = model.n_verts
    m = FlameModel(**{**model.__dict__, "shapedirs": np.zeros((V, 3, columns), np.float32), "n_shape": n_shape})
    if ok:
        assert m.validate().n_exp == columns - n_shape
    else:
        with pytest.raises(InputError, match="shapedirs|n_shape"):
            m.validate()


def test_a_transposed_shapedirs_is_used_in_place():
    """shapedirs [V,3,L] that is a view of a C-contiguous [L,V,3] array (the ICT loader's layout) is
    not copied by the layer."""
    model, lm = random_flame()
    rows = np.ascontiguousarray(model.shapedirs.transpose(2, 0, 1))
    layer = FlameLayer(FlameModel(**{**model.__dict__, "shapedirs": rows.transpose(1, 2, 0)}), lm)
    assert np.shares_memory(layer.shapedirs.numpy(), rows) and np.shares_memory(layer.exprdirs.numpy(), rows)
    torch.testing.assert_close(layer.shapedirs, FlameLayer(model, lm).shapedirs, rtol=0, atol=0)
