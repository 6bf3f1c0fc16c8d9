"""The restricted unpickler against files that multiply their own data, nest without end, or
ask for tensor views larger than their storage (issue 20). Errors are FaceEdit's own."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch

from faceedit_core.errors import InputError, UnsafeFileError
from faceedit_core.storage.unpickle import safe_load
from tests.helpers import hostile_files as H

SAFE_LOAD = "faceedit_core.storage.unpickle.safe_load"


def test_memo_references_cannot_multiply_a_string_into_a_gigabyte(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(H.codecs_amplification_pickle(copies=1000, size=1 << 20))  # 1 MB -> 1 GB
    H.assert_refused(H.measure_load(path, SAFE_LOAD), "over its limit")


def test_sets_built_again_and_again_from_one_list_are_charged(tmp_path):
    items = pickle.dumps(list(range(100_000)), protocol=2)[2:-1]  # the list's opcodes
    body = b"\x80\x02" + H._global("__builtin__", "set") + b"q\xc8" + items + b"\x85q\xc9"
    path = tmp_path / "model.pkl"
    path.write_bytes(body + b"](" + b"h\xc8h\xc9R" * 2000 + b"e.")  # 2000 sets of 100k ints: ~8 GB
    H.assert_refused(H.measure_load(path, SAFE_LOAD), "over its limit")


def test_nesting_deeper_than_the_limit_is_an_unsafe_file_error():
    with pytest.raises(UnsafeFileError, match="nested deeper"):
        safe_load(H.deep_list_pickle())
    loop = b"\x80\x02]q\x00h\x00a."  # a list that contains itself
    with pytest.raises(UnsafeFileError, match="nested deeper"):
        safe_load(loop)


def test_numpy_arrays_load_as_plain_arrays_and_direct_ndarray_calls_are_refused():
    arrays = {"a": np.arange(12.0).reshape(3, 4), "b": np.asfortranarray(np.ones((2, 3), np.float32)), "c": 7}
    loaded = safe_load(pickle.dumps(arrays, protocol=2))
    assert type(loaded["a"]) is np.ndarray and type(loaded["b"]) is np.ndarray
    np.testing.assert_array_equal(loaded["a"], arrays["a"])
    np.testing.assert_array_equal(loaded["b"], arrays["b"])
    assert safe_load(pickle.dumps(np.float64(2.5), protocol=2)) == 2.5
    with pytest.raises(UnsafeFileError, match=r"numpy.ndarray\(\.\.\.\)"):
        safe_load(pickle.dumps(H.zero_stride_array((4, 4)), protocol=2))


def test_numpy_states_that_do_not_match_their_bytes_are_refused():
    good = pickle.dumps(np.arange(4, dtype=np.int64), protocol=2)
    claim = good.replace(b"K\x04\x85", b"J" + struct.pack("<i", 10**8) + b"\x85")  # shape (4,) -> (1e8,)
    assert claim != good
    with pytest.raises(UnsafeFileError, match="needs 800000000 bytes"):
        safe_load(claim)


def test_tensor_views_must_lie_inside_their_storage_with_positive_strides():
    base = torch.arange(20.0).reshape(4, 5)
    for legit in (base, base.t(), base[1:, ::2]):  # transposed and strided views are fine
        assert torch.equal(safe_load(pickle.dumps(legit), allow_torch=True), legit)
    storage = H._legacy_storage_bytes(struct.pack("<4f", 1, 2, 3, 4), "FloatStorage", 4)
    for size, stride, match in [
        ((1000, 1000), (0, 0), "zero or negative"),
        ((3,), (-1,), "zero or negative"),
        ((2000, 2000), (1, 1), "claims"),  # overlapping windows over 4 floats
        ((5,), (1,), "claims"),  # past the end
    ]:
        with pytest.raises(UnsafeFileError, match=match):
            safe_load(pickle.dumps(H._tensor_call(storage, size, stride)), allow_torch=True)


def test_a_storage_header_claiming_more_than_it_holds_is_refused():
    t = H._tensor_call(H._legacy_storage_bytes(b"\0" * 4, "FloatStorage", 1, claimed=2**31 - 1), (1,), (1,))
    with pytest.raises(UnsafeFileError, match="claims 2147483647"):
        safe_load(pickle.dumps(t), allow_torch=True)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x02" + H._global("scipy.sparse._csc", "csc_matrix") + b")\x81}b.",  # no data (KeyError before)
        b"\x80\x02" + H._global("scipy.sparse._csc", "csc_matrix") + b")\x81}X\x06\x00\x00\x00_shapeNsb.",  # TypeError
        b"\x80\x02" + H._global("chumpy.ch", "Ch") + b")\x81]b.",  # state of the wrong type
        b"\x80\x02" + H._global("numpy", "dtype") + b"K\x01\x85R.",  # dtype from an int
        b"\x80\x02" + H._global("_codecs", "encode") + b"X\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.",
        b"\x80\x02" + H._global("numpy.core.multiarray", "_reconstruct") + b"K\x01K\x02K\x03\x87R.",
        b"\x80\x02}q\x00(K\x01",  # cut short
        b"\x80\x05\x95",  # garbage
    ],
)
def test_malformed_pickles_raise_faceedit_errors_only(payload):
    with pytest.raises((InputError, UnsafeFileError)):
        safe_load(payload)
