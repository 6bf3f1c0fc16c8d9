"""Next3D release pickles that claim more than they hold, or are not shaped like the release (issue 20)."""

from __future__ import annotations

import sys
from collections import OrderedDict

import pytest
import torch

from faceedit_core.errors import InputError, UnsafeFileError
from faceedit_core.next3d.checkpoint import read_release_pickle
from tests.helpers import hostile_files as H

READ_RELEASE = "faceedit_core.next3d.checkpoint.read_release_pickle"


def test_a_zero_stride_parameter_is_refused_with_bounded_memory(tmp_path):
    path = H.next3d_zero_stride_parameter(tmp_path / "next3d_ffhq_512.pkl")  # 16000 x 16000 over 4 bytes
    assert path.stat().st_size < 2000
    H.assert_refused(H.measure_load(path, READ_RELEASE), "zero or negative strides")


def test_a_pickle_naming_a_torch_submodule_is_refused_without_importing_it(tmp_path):
    path = tmp_path / "next3d_ffhq_512.pkl"
    path.write_bytes(H.torch_submodule_pickle())
    report = H.measure_load(path, READ_RELEASE)
    H.assert_refused(report, "torch._inductor")
    assert report["new_modules"] < 10, report  # looking the name up on torch imported about 890


def _param(values: torch.Tensor) -> H._Call:
    storage = H._legacy_storage_bytes(values.numpy().tobytes(), "FloatStorage", values.numel())
    tensor = H._tensor_call(storage, tuple(values.shape), tuple(values.stride()))
    return H._Call(torch._utils._rebuild_parameter, tensor, False, OrderedDict())


def test_a_well_formed_release_like_pickle_loads():
    w = torch.arange(6.0).reshape(2, 3)
    state = {"_parameters": {"w": _param(w)}, "_modules": {"sub": H.persistent({"_parameters": {"b": _param(w[0])}})}}
    rel = read_release_pickle_bytes(H.release_pickle(state))
    assert torch.equal(rel.state_dict["w"], w) and torch.equal(rel.state_dict["sub.b"], w[0])


def read_release_pickle_bytes(data: bytes, tmp=None):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "next3d.pkl"
        path.write_bytes(data)
        return read_release_pickle(path)


def _nested(depth: int) -> dict:
    state: dict = {"_parameters": {}}
    for _ in range(depth):
        state = {"_modules": {"m": H.persistent(state)}}
    return state


@pytest.mark.parametrize(
    "state",
    [
        {"_parameters": ["not", "a", "dict"]},  # AttributeError before
        {"_buffers": {"b": 3.0}},
        {"_init_kwargs": ["a", "list"]},  # TypeError before
        {"_non_persistent_buffers_set": 5},
        {"_modules": {"m": "not a module"}},
        _nested(2000),  # RecursionError before
    ],
    ids=["parameters-list", "buffer-float", "init-kwargs-list", "nonpersistent-int", "module-str", "nested-2000"],
)
def test_malformed_release_pickles_raise_faceedit_errors_only(state):
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # only to write the 2000-deep test file
    try:
        data = H.release_pickle(state)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises((InputError, UnsafeFileError)):
        read_release_pickle_bytes(data)


def test_a_parameter_with_hooks_or_attributes_is_refused():
    w = torch.zeros(2)
    storage = H._legacy_storage_bytes(w.numpy().tobytes(), "FloatStorage", 2)
    hooked = H._Call(
        torch._utils._rebuild_parameter, H._tensor_call(storage, (2,), (1,)), False, OrderedDict([(1, "hook")])
    )
    with pytest.raises(UnsafeFileError, match="hooks"):
        read_release_pickle_bytes(H.release_pickle({"_parameters": {"w": hooked}}))
