"""FLAME files that claim more than they hold (issue 20): refused before anything is allocated.

Each file is loaded in a fresh Python (tests/helpers/hostile_files.measure_load) so the peak of its
memory can be measured; the old loader made +719 MB to +1 GB from files of 1-90 KB, or looped over
a claimed indptr of 2e9 entries for hours.
"""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest
import scipy.sparse

from faceedit_core.errors import InputError, UnsafeFileError
from faceedit_core.flame import load_flame_model, load_landmark_embedding
from faceedit_core.flame.io import save_flame_model
from tests.helpers import hostile_files as H
from tests.helpers.flame import random_flame

LOAD_FLAME = "faceedit_core.flame.io.load_flame_model"


PICKLE_BOMBS = {
    "zero-stride-array": (H.flame_zero_stride, "numpy.ndarray(...)"),
    "sparse-16384x16384": (H.flame_sparse_huge_shape, "16384 x 16384"),
    "zero-stride-indptr-2e9": (H.flame_sparse_zero_stride_indptr, "numpy.ndarray(...)"),
}
test_flame_pickle_bombs_are_refused_with_bounded_memory = H.refusal_test(
    LOAD_FLAME, "generic_model.pkl", 100_000, PICKLE_BOMBS
)


def test_a_compressed_npz_that_unpacks_to_a_gigabyte_is_refused_unread(tmp_path):
    path = tmp_path / "flame.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:  # what np.savez_compressed writes
        with z.open("shapedirs.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (150_000, 3, 400)}
            )
            block = bytes(1 << 24)
            for _ in range(150_000 * 3 * 400 * 8 // len(block) + 1):
                f.write(block)
    assert path.stat().st_size < 2_000_000
    H.assert_refused(H.measure_load(path, LOAD_FLAME), "unpack to")


def test_sparse_matrices_with_bad_indices_are_refused_and_good_ones_load(tmp_path):
    model, _ = random_flame()
    data = {k: getattr(model, k).astype(np.float64) for k in ("v_template", "shapedirs", "posedirs", "weights")}
    data.update(kintree_table=np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]), f=model.f.astype(np.uint32))
    for kind in ("csc", "csr", "coo"):
        data["J_regressor"] = getattr(scipy.sparse, f"{kind}_matrix")(model.J_regressor.astype(np.float64))
        (tmp_path / f"{kind}.pkl").write_bytes(pickle.dumps(data, protocol=2))
        np.testing.assert_array_equal(load_flame_model(tmp_path / f"{kind}.pkl").J_regressor, model.J_regressor)
    bad = scipy.sparse.csc_matrix(model.J_regressor.astype(np.float64))
    bad.indices[0] = 10_000  # a row outside the 5 x V shape
    data["J_regressor"] = bad
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(UnsafeFileError, match="outside"):
        load_flame_model(tmp_path / "bad.pkl")


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps({"v_template": [1, 2], "kintree_table": "x"}),  # missing keys, wrong types
        pickle.dumps({k: np.zeros(3) for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "f")})
        + b"",
        pickle.dumps({"v_template": np.zeros((3, 3)), "kintree_table": np.zeros(5), "f": np.zeros((1, 3))}),
        b"\x80\x02}q\x00.",  # an empty dict
        b"\x80\x02]q\x00(K\x01K\x02e.",  # a list, not a dict
        b"not a pickle at all",
        b"\x80\x02",  # cut short
        H.deep_list_pickle(),  # nested 200 000 deep: RecursionError in a recursive walk
    ],
)
def test_malformed_flame_files_raise_faceedit_errors_only(tmp_path, payload):
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(payload)
    with pytest.raises((InputError, UnsafeFileError)):
        load_flame_model(path)


def test_npz_with_object_arrays_or_text_is_an_input_error(tmp_path):
    model, _ = random_flame()
    save_flame_model(model, tmp_path / "ok.npz")
    arrays = dict(np.load(tmp_path / "ok.npz"))
    arrays["shapedirs"] = np.array(["a", "b"])
    np.savez(tmp_path / "text.npz", **arrays)
    with pytest.raises(InputError, match="shapedirs"):
        load_flame_model(tmp_path / "text.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError):
        load_flame_model(tmp_path / "junk.npz")


def test_landmark_npy_that_is_not_an_embedding_is_an_input_error(tmp_path):
    (tmp_path / "landmark_embedding.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8'}\n")
    with pytest.raises(InputError):
        load_landmark_embedding(tmp_path / "landmark_embedding.npy")
    np.save(tmp_path / "lm2.npy", np.array({"static_lmk_faces_idx": np.zeros(3)}, dtype=object), allow_pickle=True)
    with pytest.raises(InputError):
        load_landmark_embedding(tmp_path / "lm2.npy")
