"""Small model files that claim far more than they hold: the memory and CPU bombs of issue 20.

Each writer makes a file of a few KB (the TorchScript one about 1 MB) whose naive reading costs
hundreds of MB to GB of memory or hours of CPU. The pickles are written opcode by opcode where
Python's pickler would not produce them, so no module of the claimed class needs to exist.
"""

from __future__ import annotations

import io
import pickle
import struct
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch


class _Call:
    """Pickles as `func(*args)` (GLOBAL + REDUCE): how a pickle asks for any allowed callable."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def zero_stride_array(shape, dtype="<f8") -> _Call:
    """`numpy.ndarray(shape, dtype, buffer=<one item>, 0, strides=0...)`: every element aliases one item."""
    item = np.dtype(dtype).itemsize
    return _Call(np.ndarray, tuple(shape), np.dtype(dtype), b"\0" * item, 0, (0,) * len(shape))


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


class csc_matrix:  # pickled under this module's name, then renamed to scipy's (no scipy needed)
    pass


def _small_flame(verts: int = 2) -> dict:
    return {
        "v_template": np.zeros((verts, 3)),
        "shapedirs": np.zeros((verts, 3, 400)),
        "posedirs": np.zeros((verts, 3, 36)),
        "weights": np.zeros((verts, 5)),
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "f": np.zeros((1, 3), np.int64),
    }


def _flame_with_sparse_j_regressor(state: dict) -> bytes:
    """A FLAME pickle whose J_regressor is a scipy csc_matrix with `state` (NEWOBJ, then BUILD)."""
    sparse = csc_matrix()
    sparse.__dict__.update(state)
    data = pickle.dumps({**_small_flame(), "J_regressor": sparse}, protocol=3)
    ours = _global(__name__, "csc_matrix")
    assert data.count(ours) == 1
    return data.replace(ours, _global("scipy.sparse._csc", "csc_matrix"))


def flame_zero_stride(path: Path, verts: int = 150_000) -> Path:
    """A FLAME pickle whose shapedirs [V,3,400] is a zero-stride float64 view of 8 bytes (1.4 GB claimed)."""
    data = {
        "v_template": zero_stride_array((verts, 3)),
        "shapedirs": zero_stride_array((verts, 3, 400)),
        "posedirs": zero_stride_array((verts, 3, 36)),
        "J_regressor": zero_stride_array((5, verts)),
        "weights": zero_stride_array((verts, 5)),
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "f": np.zeros((1, 3), np.int64),
    }
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def flame_sparse_huge_shape(path: Path, side: int = 16384) -> Path:
    """A FLAME pickle whose J_regressor is a csc_matrix claiming side x side with no entries
    (its dense float64 copy is 2 GB, 1 GB as float32)."""
    indptr = np.zeros(side + 1, np.int32)  # every column empty
    state = {"_shape": (side, side), "maxprint": 50, "data": np.zeros(0), "indices": np.zeros(0, np.int32)}
    path.write_bytes(_flame_with_sparse_j_regressor({**state, "indptr": indptr}))
    return path


def flame_sparse_zero_stride_indptr(path: Path, n: int = 2_000_000_000) -> Path:
    """A FLAME pickle whose J_regressor is a 5 x 5 csc_matrix with a zero-stride indptr of n entries
    (a Python loop of n steps)."""
    state = {"_shape": (5, 5), "maxprint": 50, "data": np.zeros(0), "indices": np.zeros(0, np.int32)}
    path.write_bytes(_flame_with_sparse_j_regressor({**state, "indptr": zero_stride_array((n,), "<i8")}))
    return path


def codecs_amplification_pickle(copies: int = 1000, size: int = 1 << 20) -> bytes:
    """A list of `copies` calls of `_codecs.encode` on one memoized string of `size` characters:
    about 5 bytes of pickle per copy, `size` bytes of memory per copy (1 GB from 1 MB)."""
    out = b"\x80\x02" + _global("_codecs", "encode") + b"q\x00"
    out += b"X" + struct.pack("<I", size) + b"a" * size + b"X\x06\x00\x00\x00latin1\x86q\x01"
    return out + b"](" + b"h\x00h\x01R" * copies + b"e."


def deep_list_pickle(depth: int = 200_000) -> bytes:
    """`[[[...]]]` nested `depth` deep: a few hundred KB that recursive code cannot walk."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def torch_submodule_pickle() -> bytes:
    """31 bytes naming `torch._inductor`: looking it up with getattr imports ~900 modules."""
    return b"\x80\x02" + _global("torch", "_inductor") + b"."


def _legacy_storage_bytes(values: bytes, dtype_name: str, numel: int, claimed: int | None = None) -> bytes:
    """What `torch.storage._load_from_bytes` receives: the legacy torch.save of one storage."""
    out = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}):
        pickle.dump(obj, out, protocol=2)
    pid = b"(X\x07\x00\x00\x00storage" + _global("torch", dtype_name) + b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
    pid += b"J" + struct.pack("<i", claimed if claimed is not None else numel) + b"NtQ."
    out.write(b"\x80\x02" + pid)
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<q", numel) + values)
    return out.getvalue()


def _tensor_call(storage_bytes: bytes, size: tuple, stride: tuple) -> _Call:
    storage = _Call(torch.storage._load_from_bytes, storage_bytes)
    return _Call(torch._utils._rebuild_tensor_v2, storage, 0, size, stride, False, OrderedDict())


def _reconstruct_placeholder(meta):  # pickled by reference, then renamed to the release's reconstructor
    raise AssertionError("never called")


def _release_pickle(g_state: dict) -> bytes:
    """`{'G_ema': <persistent network>}` as the release writes it: the reconstructor by reference, meta inside."""
    data = pickle.dumps({"G_ema": persistent(g_state)}, protocol=2)
    return data.replace(_global(__name__, "_reconstruct_placeholder"), PERSISTENT_GLOBAL)


PERSISTENT_GLOBAL = _global("torch_utils.persistence", "_reconstruct_persistent_obj")


def persistent(state: dict) -> _Call:
    """A persistent network with `state` (pickled with the placeholder; `_release_pickle` renames it)."""
    return _Call(
        _reconstruct_placeholder, {"type": "class", "version": 6, "module_src": "", "class_name": "x.G", "state": state}
    )


def release_pickle(g_state: dict) -> bytes:
    """A Next3D-like release pickle `{'G_ema': <persistent network with g_state>}`."""
    return _release_pickle(g_state)


def next3d_zero_stride_parameter(path: Path, side: int = 16000) -> Path:
    """A Next3D-like pickle whose G_ema holds a Parameter of side x side viewing one float (1 GB on clone)."""
    storage = _legacy_storage_bytes(b"\0\0\0\0", "FloatStorage", 1)
    param = _Call(torch._utils._rebuild_parameter, _tensor_call(storage, (side, side), (0, 0)), False, OrderedDict())
    path.write_bytes(_release_pickle({"_parameters": {"w": param}}))
    return path


def next3d_oversized_storage_claim(path: Path, claimed: int = 2**31 - 1) -> Path:
    """A Next3D-like pickle whose embedded storage header claims `claimed` floats and holds one."""
    storage = _legacy_storage_bytes(b"\0\0\0\0", "FloatStorage", 1, claimed=claimed)
    path.write_bytes(_release_pickle({"_buffers": {"b": _tensor_call(storage, (1,), (1,))}}))
    return path


def torch_zip_expanded_half(path: Path, rows: int = 32768, cols: int = 16384) -> Path:
    """torch.save of a fp16 tensor expanded from one element: 1.6 KB on disk, 2 GB once made float32."""
    torch.save({"visual.proj": torch.zeros(1, 1, dtype=torch.float16).expand(rows, cols)}, path)
    return path


def _rezip(src: Path, dst: Path, replace: dict[str, bytes], compress: set[str]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = replace.get(info.filename, zin.read(info.filename))
            kind = zipfile.ZIP_DEFLATED if info.filename in compress else zipfile.ZIP_STORED
            zout.writestr(zipfile.ZipInfo(info.filename, info.date_time), data, compress_type=kind)
    return dst


class _TinyScript(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(4, dtype=torch.float16))

    def forward(self, x):
        return x


class _ExpandedScript(torch.nn.Module):
    def __init__(self, rows: int, cols: int):
        super().__init__()
        self.register_buffer("w", torch.zeros(1, 1, dtype=torch.float16).expand(rows, cols))

    def forward(self, x):
        return x


def _script_save(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():  # torch.jit.script is deprecated; the archives it writes are still shipped
        warnings.simplefilter("ignore")
        torch.jit.script(module).save(str(path))
    return path


def torchscript_compressed_storage(path: Path, half_elements: int = 1 << 29) -> Path:
    """A TorchScript archive whose only storage is `half_elements` fp16 zeros deflated to ~1 MB
    (1 GB inflated, 2 GB as float32); the pickle claims that many elements."""
    plain = _script_save(_TinyScript(), path.with_suffix(".plain.pt"))
    with zipfile.ZipFile(plain) as z:
        data_pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        prefix, pkl = data_pkl.split("/")[0], z.read(data_pkl)
    n = b"J" + struct.pack("<i", half_elements)
    assert pkl.count(b"K\x04tQ") == 1 and pkl.count(b"(K\x04t(K\x01t") == 1
    pkl = pkl.replace(b"K\x04tQ", n + b"tQ").replace(b"(K\x04t(K\x01t", b"(" + n + b"t(K\x01t")
    _rezip(plain, path, {data_pkl: pkl, f"{prefix}/data/0": bytes(2 * half_elements)}, {f"{prefix}/data/0"})
    plain.unlink()
    return path


def torchscript_expanded(path: Path, rows: int = 32768, cols: int = 16384) -> Path:
    """A TorchScript archive whose buffer is a (rows, cols) fp16 view of one element (2 KB, 1 GB as float32)."""
    return _script_save(_ExpandedScript(rows, cols), path)


def load_paper_mapper(manifest: Path):
    """MapperStore(folder, 'paper').load(id) for the manifest `<folder>/<id>.json` (a loader for `measure_load`)."""
    from faceedit_core.storage.mapper_store import MapperStore

    return MapperStore(manifest.parent, "paper").load(manifest.name.removesuffix(".json"))


_CHILD = r"""
import importlib, json, resource, sys, tracemalloc, warnings
warnings.simplefilter("ignore")
from pathlib import Path
import numpy, torch  # imported before the baseline: their own memory is not the loader's
module, name = sys.argv[2].rsplit(".", 1)
load = getattr(importlib.import_module(module), name)
modules = len(sys.modules)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
try:
    load(Path(sys.argv[1]))
    result = "loaded"
except Exception as exc:
    result = f"{type(exc).__module__}.{type(exc).__name__}: {str(exc)[:300]}"
traced = tracemalloc.get_traced_memory()[1]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"result": result, "rss_growth": (peak - before) * 1024, "traced_peak": traced,
                  "new_modules": len(sys.modules) - modules}))
"""


def measure_load(path: Path, loader: str, hang_guard_s: float = 300) -> dict:
    """Load `path` with `loader` ("module.function") in a fresh Python and report what it cost:
    {"result": "loaded" or "<exception type>: <message>", "rss_growth": bytes the peak RSS grew by,
    "traced_peak": peak bytes tracemalloc saw (numpy's allocations), "new_modules": modules imported}.

    The hang guard only stops a loader that would run for hours (the old sparse loop); it is no limit
    on how fast a refusal must be."""
    import json
    import os
    import subprocess
    import sys

    from tests.helpers.paths import REPO_ROOT

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), loader],
            capture_output=True,
            text=True,
            env=env,
            timeout=hang_guard_s,
        )
    except subprocess.TimeoutExpired:
        return {"result": f"still running after {hang_guard_s} s", "rss_growth": None, "traced_peak": None}
    if done.returncode != 0 or not done.stdout.strip():
        return {"result": f"child failed ({done.returncode}): {done.stderr[-1500:]}", "rss_growth": None}
    return json.loads(done.stdout.strip().splitlines()[-1])


MEMORY_BOUND = 256 << 20  # generous: every bomb here claims 700 MB or more; a refusal costs a few MB


def assert_refused(report: dict, match: str = "") -> None:
    """The load failed with FaceEdit's own error (UnsafeFileError or InputError), its message
    containing `match`, and its peak memory grew by less than MEMORY_BOUND."""
    result = report["result"]
    assert result.startswith(("faceedit_core.errors.UnsafeFileError", "faceedit_core.errors.InputError")), report
    assert match in result, report
    assert report["rss_growth"] < MEMORY_BOUND and report["traced_peak"] < MEMORY_BOUND, report


def refusal_test(loader: str, file_name: str, max_bytes: int, bombs: dict):
    """A pytest test parametrised over `bombs` ({test id: (writer, part of the message)}): each
    writer's file, under `max_bytes` on disk, is refused by `loader` with bounded memory."""
    import pytest

    @pytest.mark.parametrize("make, match", list(bombs.values()), ids=list(bombs))
    def test(tmp_path, make, match):
        path = make(tmp_path / file_name)
        assert path.stat().st_size < max_bytes
        assert_refused(measure_load(path, loader), match)

    return test


class _RunsCode:
    """Unpickles as a call of print: what a weights file must never be allowed to do."""

    def __reduce__(self):
        return (print, ("this must never run",))


def assert_weights_loader_checks(load, weights: Path, key: str, match: str, tmp: Path) -> None:
    """`load(path)` of the state dict at `weights` without `key` raises InputError naming `match`,
    and of a file whose `key` would run code on unpickling raises UnsafeFileError."""
    import pytest

    from faceedit_core.errors import InputError, UnsafeFileError

    sd = torch.load(weights, weights_only=True)
    del sd[key]
    torch.save(sd, tmp / "broken.pth")
    with pytest.raises(InputError, match=match):
        load(tmp / "broken.pth")
    torch.save({key: _RunsCode()}, tmp / "evil.pth")
    with pytest.raises(UnsafeFileError):
        load(tmp / "evil.pth")
