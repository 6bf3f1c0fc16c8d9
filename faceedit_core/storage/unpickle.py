"""A restricted unpickler for model files we did not write (FLAME pickles, DECA embeddings).

A pickle can name any importable callable and call it; this one resolves only an allow-list
of array-building globals and replaces the classes of chumpy and scipy.sparse with inert
stand-ins that just record their state. Anything else is refused with `UnsafeFileError`, so
a payload such as `os.system` never runs.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

import numpy as np
import torch

from faceedit_core.errors import UnsafeFileError


class StateRecord:
    """Inert stand-in for a pickled object: keeps the class path and the state it was given."""

    def __init__(self, class_path: str):
        self.class_path = class_path
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _make_record_class(class_path: str) -> type:
    # NEWOBJ calls cls.__new__(cls, *args); give each stand-in its own subclass so that
    # instances remember which class they stood in for.
    return type(
        class_path.replace(".", "_"),
        (StateRecord,),
        {
            "__new__": lambda cls, *a, **k: object.__new__(cls),
            "__init__": lambda self, *a, **k: StateRecord.__init__(self, class_path),
            "class_path": class_path,
        },
    )


def _storage_from_bytes(data: bytes):
    """torch.storage._load_from_bytes, but through torch's weights-only loader."""
    return torch.load(io.BytesIO(data), weights_only=True)


CHUMPY_CLASSES = {("chumpy.ch", "Ch"), ("chumpy.reordering", "Select"), ("chumpy.reordering", "transpose")}
SPARSE_CLASSES = {
    (mod, name)
    for mod in (
        "scipy.sparse._csc",
        "scipy.sparse.csc",
        "scipy.sparse._csr",
        "scipy.sparse.csr",
        "scipy.sparse._coo",
        "scipy.sparse.coo",
    )
    for name in ("csc_matrix", "csr_matrix", "coo_matrix")
}


def _numpy_global(module: str, name: str):
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    table = {
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy.core.multiarray", "scalar"): multiarray.scalar,
        ("numpy._core.multiarray", "scalar"): multiarray.scalar,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    return table.get((module, name))


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only array builders and inert stand-ins (see module docstring)."""

    def __init__(self, file: BinaryIO, *, allow_torch: bool = False, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.allow_torch = allow_torch

    def find_class(self, module: str, name: str):
        found = _numpy_global(module, name)
        if found is not None:
            return found
        if (module, name) in CHUMPY_CLASSES or (module, name) in SPARSE_CLASSES:
            return _make_record_class(f"{module}.{name}")
        if (module, name) == ("collections", "OrderedDict"):
            import collections

            return collections.OrderedDict
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset"):  # chumpy state
            return set if name == "set" else frozenset
        if (module, name) == ("_codecs", "encode"):
            import codecs

            return codecs.encode
        if self.allow_torch:
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return torch._utils._rebuild_tensor_v2
            if (module, name) == ("torch.storage", "_load_from_bytes"):
                return _storage_from_bytes
        raise UnsafeFileError(
            f"refusing to load '{module}.{name}' from a pickle: only numpy arrays, chumpy arrays "
            f"and scipy sparse matrices are allowed in model files"
        )

    def persistent_load(self, pid):
        raise UnsafeFileError("refusing a pickle with persistent ids (not a FLAME model file)")


def safe_load(file: str | BinaryIO | bytes, *, allow_torch: bool = False) -> Any:
    """Unpickle `file` (path, bytes or binary stream) with SafeUnpickler, then turn stand-ins into arrays."""
    if isinstance(file, bytes):
        file = io.BytesIO(file)
    if isinstance(file, str) or hasattr(file, "__fspath__"):
        with open(file, "rb") as f:
            return to_plain(SafeUnpickler(f, allow_torch=allow_torch).load())
    return to_plain(SafeUnpickler(file, allow_torch=allow_torch).load())


def to_plain(obj: Any) -> Any:
    """Recursively replace chumpy/scipy stand-ins by numpy arrays, tensors stay tensors."""
    if isinstance(obj, StateRecord):
        return _record_to_array(obj)
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def _record_to_array(record: StateRecord) -> np.ndarray:
    state = record.state
    if record.class_path.startswith("chumpy"):
        if not isinstance(state, dict) or "x" not in state:
            raise UnsafeFileError(f"chumpy object without its data 'x' in {record.class_path}")
        return np.asarray(state["x"])
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
        state = state[1]  # copyreg-style (None, dict) state
    if not isinstance(state, dict):
        raise UnsafeFileError(f"unexpected state for {record.class_path}")
    shape = tuple(int(s) for s in state.get("_shape", state.get("shape")))
    dense = np.zeros(shape, dtype=np.asarray(state["data"]).dtype)
    data = np.asarray(state["data"])
    if "csc" in record.class_path or "csr" in record.class_path:
        indices, indptr = np.asarray(state["indices"]), np.asarray(state["indptr"])
        for j in range(len(indptr) - 1):
            rows = indices[indptr[j] : indptr[j + 1]]
            vals = data[indptr[j] : indptr[j + 1]]
            if "csc" in record.class_path:
                np.add.at(dense, (rows, np.full_like(rows, j)), vals)
            else:
                np.add.at(dense, (np.full_like(rows, j), rows), vals)
        return dense
    row, col = np.asarray(state["row"]), np.asarray(state["col"])
    np.add.at(dense, (row, col), data)
    return dense
