"""FlameParams: validation messages, files, EMOCA import."""

import numpy as np
import pytest
import torch

from faceedit_core.errors import InputError
from faceedit_core.params import FlameParams


def _random(batch=2):
    p = FlameParams.zeros(batch, 100, 50)
    torch.manual_seed(1)
    for t in (p.shape, p.expression, p.jaw_pose, p.eye_pose):
        t.normal_(std=0.1)
    return p


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_load_round_trip(tmp_path, suffix):
    p = _random()
    q = FlameParams.load(p.save(tmp_path / f"p{suffix}"))
    for name, value in p.to_numpy().items():
        np.testing.assert_allclose(q.to_numpy()[name], value, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("expression", torch.full((2, 50), float("nan")), "'expression' contains NaN"),
        ("neck_pose", torch.tensor([[0.0, 0.1, float("-inf")], [0.0, 0.0, 0.0]]), "'neck_pose' contains NaN or Inf"),
        ("jaw_pose", torch.tensor([[0.0, float("nan"), 0.1], [0.0, 0.0, 0.0]]), "'jaw_pose' contains NaN"),
        ("jaw_pose", torch.zeros(2, 4), "'jaw_pose' must have 3 values"),
        ("shape", torch.full((2, 100), 50.0), "'shape' has magnitude 50"),
        ("eye_pose", torch.zeros(3, 6), "'eye_pose' has batch 3"),
        ("transl", torch.zeros(2, 3, dtype=torch.long), "'transl' must be floating point"),
    ],
)
def test_bad_fields_are_named(field, value, message):
    with pytest.raises(InputError, match=message):
        _random().replace(**{field: value}).validate()


def test_emoca_import_pads_expression_and_splits_pose(tmp_path):
    rng = np.random.default_rng(0)
    shape, exp, pose = rng.normal(size=100), rng.normal(size=50), rng.normal(scale=0.1, size=6)
    for name, arr in (("shape", shape), ("exp", exp), ("pose", pose)):
        np.save(tmp_path / f"{name}.npy", arr.astype(np.float32))
    p = FlameParams.from_emoca(tmp_path, n_exp=100)
    assert p.expression.shape == (1, 100)
    np.testing.assert_allclose(p.expression[0, :50].numpy(), exp, rtol=1e-6)
    assert p.expression[0, 50:].abs().max() == 0
    np.testing.assert_allclose(p.global_pose[0].numpy(), pose[:3], rtol=1e-6)
    np.testing.assert_allclose(p.jaw_pose[0].numpy(), pose[3:], rtol=1e-6)
    assert p.neck_pose.abs().max() == 0


def test_emoca_folder_missing_files(tmp_path):
    with pytest.raises(InputError, match="shape.npy, exp.npy, pose.npy"):
        FlameParams.from_emoca(tmp_path)


def test_npz_with_pickled_objects_is_rejected(tmp_path):
    np.savez(tmp_path / "evil.npz", shape=np.array([object()], dtype=object), expression=np.zeros(3))
    with pytest.raises(InputError, match="plain-array"):
        FlameParams.load(tmp_path / "evil.npz")


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = _random().save(tmp_path / "p.npz")
    before = path.read_bytes()
    monkeypatch.setattr(np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        _random(3).save(path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_full_pose_order_and_padding():
    p = _random(1)
    assert torch.equal(p.full_pose()[:, 6:9], p.jaw_pose)
    assert p.padded(n_exp=100).expression.shape == (1, 100)
    with pytest.raises(InputError, match="beyond the model's 20"):
        p.padded(n_exp=20)
