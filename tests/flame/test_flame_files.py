"""Reading FLAME model and landmark files: official layouts, and refusing pickles that run code."""

import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch

from faceedit_core.errors import InputError, MissingModelError, UnsafeFileError
from faceedit_core.flame import FlameLayer, load_flame_model, load_landmark_embedding
from faceedit_core.flame.io import FlameModel, save_flame_model, save_landmark_embedding
from faceedit_core.flame.standin import official_pickle_dict
from faceedit_core.params import FlameParams
from faceedit_core.storage.unpickle import safe_load
from tests.helpers.flame import random_flame


def _official_dict(model):
    data = official_pickle_dict(model)
    assert data["kintree_table"].tolist() == [[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]  # FLAME's, as stored
    return data


def _fake_ch(x):
    """An object that pickles exactly as chumpy.ch.Ch does (NEWOBJ + BUILD with chumpy's state dict).

    A stand-in module `chumpy.ch` is registered only while the test pickles, then removed.
    """
    mod = sys.modules.get("chumpy.ch")
    if mod is None:
        mod = types.ModuleType("chumpy.ch")
        mod.Ch = type("Ch", (), {"__module__": "chumpy.ch"})
        sys.modules["chumpy"], sys.modules["chumpy.ch"] = types.ModuleType("chumpy"), mod
    obj = mod.Ch()
    obj.__dict__.update(
        {
            "x": x,
            "_dirty_vars": {"x"},
            "_itr": None,
            "_make_dense": False,
            "_make_sparse": False,
            "_depends_on_deps": {},
        }
    )
    return obj


@pytest.mark.parametrize("variant", ["dense", "sparse", "chumpy"])
def test_official_pickle_variants_load_to_the_same_model(tmp_path, variant):
    model, lm = random_flame()
    data = _official_dict(model)
    if variant in ("sparse", "chumpy"):
        data["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"])
    if variant == "chumpy":
        for key in ("v_template", "shapedirs", "posedirs", "weights"):
            data[key] = _fake_ch(data[key])
    path = tmp_path / f"{variant}.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    if variant == "chumpy":  # the reader must not need the module that wrote the file
        del sys.modules["chumpy.ch"], sys.modules["chumpy"]
    loaded = load_flame_model(path)
    np.testing.assert_allclose(loaded.J_regressor, model.J_regressor, rtol=1e-6)
    np.testing.assert_allclose(loaded.shapedirs, model.shapedirs, rtol=1e-6)
    assert loaded.parents.tolist() == [-1, 0, 1, 1, 1]
    assert loaded.f.dtype == np.int64


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps({"v_template": Payload()}))
    with pytest.raises(UnsafeFileError, match="system"):
        load_flame_model(path)
    assert not marker.exists()


def test_pickle_calling_builtins_eval_is_refused():
    payload = b"cbuiltins\neval\n(S'1+1'\ntR."
    with pytest.raises(UnsafeFileError, match="builtins.eval"):
        safe_load(payload)


def test_torch_tensors_allowed_only_in_embeddings():
    data = pickle.dumps({"t": torch.arange(3)})
    with pytest.raises(UnsafeFileError):
        safe_load(data)
    assert safe_load(data, allow_torch=True)["t"].tolist() == [0, 1, 2]


def test_npz_round_trip_and_layer_agree(tmp_path):
    model, lm = random_flame()
    save_flame_model(model, tmp_path / "m.npz")
    save_landmark_embedding(lm, tmp_path / "lm.npz")
    a = FlameLayer(model, lm)
    b = FlameLayer.from_files(tmp_path / "m.npz", tmp_path / "lm.npz")
    p = FlameParams.zeros(2, 20, 10)
    p.expression.normal_()
    torch.testing.assert_close(a(p).vertices, b(p).vertices)


def test_a_narrower_model_keeps_its_shape_width_through_a_file(tmp_path):
    model, lm = random_flame()
    dirs = np.concatenate([model.shapedirs[:, :, :100], model.shapedirs[:, :, 300:352]], axis=2)
    narrow = FlameModel(**{**model.__dict__, "shapedirs": dirs, "n_shape": 100})
    back = load_flame_model(save_flame_model(narrow, tmp_path / "narrow.npz"))
    assert back.n_shape == 100 and back.n_exp == 52
    np.testing.assert_array_equal(back.shapedirs, dirs)
    with np.load(save_flame_model(model, tmp_path / "flame.npz")) as npz:
        assert "n_shape" not in npz.files  # FLAME-width files are written as before


def test_missing_and_malformed_files_name_the_problem(tmp_path):
    with pytest.raises(MissingModelError, match="FLAME website"):
        load_flame_model(tmp_path / "generic_model.pkl")
    model, _ = random_flame()
    data = _official_dict(model)
    data["posedirs"] = data["posedirs"][:, :, :30]
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(data))
    with pytest.raises(InputError, match="posedirs"):
        load_flame_model(tmp_path / "bad.pkl")
    del data["weights"]
    (tmp_path / "bad2.pkl").write_bytes(pickle.dumps(data))
    with pytest.raises(InputError, match="weights"):
        load_flame_model(tmp_path / "bad2.pkl")


def test_landmark_npy_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    np.save(
        tmp_path / "landmark_embedding.npy",
        np.array({"static_lmk_faces_idx": Payload()}, dtype=object),
        allow_pickle=True,
    )
    with pytest.raises(UnsafeFileError):
        load_landmark_embedding(tmp_path / "landmark_embedding.npy")
    assert not marker.exists()
