"""A restricted unpickler for model files we did not write (FLAME pickles, DECA embeddings).

A pickle can name any importable callable and call it; this one resolves only an allow-list
of array-building globals and replaces the classes of chumpy and scipy.sparse with inert
stand-ins that just record their state. Anything else is refused with `UnsafeFileError`, so
a payload such as `os.system` never runs, and no module is imported to look a name up.

It also refuses files that claim more than they hold (docs/security.md):
- arrays are only rebuilt the way numpy pickles them (`_reconstruct` + state with its bytes);
  calling `numpy.ndarray(shape, dtype, buffer, offset, strides)` directly, which can make a
  zero-stride view that claims gigabytes over a few bytes, is refused;
- tensors (`allow_torch`) must lie inside their storage with positive strides and no more
  elements than the storage holds (no `expand`-ed views);
- every array, tensor, copied string and container made by a call is charged to a budget of
  `2 x the file's size + 1 MiB`, so memo references cannot multiply the file's data;
- sparse matrices are made dense only when their shape fits the same budget, by array
  arithmetic (no Python loop over a claimed `indptr`), after checking their index arrays;
- nesting deeper than `MAX_DEPTH` is refused before anything recursive walks it.
Any other failure while reading becomes an `InputError` naming the file.
"""

from __future__ import annotations

import codecs
import collections
import io
import math
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np
import torch

from faceedit_core.errors import InputError, UnsafeFileError
from faceedit_core.storage.reading import reading_errors

MAX_DEPTH = 64  # nesting of lists/dicts/records a model file may have (FLAME: 3, Next3D: about 12)
MAX_DIMS = 32  # dimensions of one array or tensor
BUDGET_FLOOR = 1 << 20  # bytes any file may make beyond twice its size
UNKNOWN_SIZE_BUDGET = 512 << 20  # the budget when the source's size cannot be known
CONTAINER_ITEM_BYTES = 64  # what one element of a set / OrderedDict made by a call is charged
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch's legacy (non-zip) serialisation
STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class Budget:
    """Bytes of data a load may make; `charge` raises UnsafeFileError past the limit."""

    def __init__(self, limit: int, source_size: int | None = None):
        self.limit, self.source_size, self.used = int(limit), source_size, 0

    @classmethod
    def for_size(cls, size: int | None) -> "Budget":
        return cls(UNKNOWN_SIZE_BUDGET if size is None else 2 * size + BUDGET_FLOOR, size)

    def charge(self, nbytes: int, what: str) -> None:
        self.used += int(nbytes)
        if self.used > self.limit:
            held = f"the file holds {self.source_size} bytes" if self.source_size is not None else "a stream"
            raise UnsafeFileError(
                f"{what}: the file asks for {self.used} bytes of data so far, over its limit of {self.limit} "
                f"({held}; a model file may make at most twice its size plus {BUDGET_FLOOR} bytes)"
            )


def source_size(file: Any) -> int | None:
    """Bytes left to read in a binary stream (None when unknown)."""
    if isinstance(file, io.BytesIO):
        return len(file.getbuffer()) - file.tell()
    try:
        return os.fstat(file.fileno()).st_size - file.tell()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


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


class _NdarrayName:
    """What `numpy.ndarray` resolves to: a name `_reconstruct` accepts, not a constructor."""

    def __call__(self, *args, **kwargs):
        raise UnsafeFileError(
            "refusing numpy.ndarray(...) called from a pickle: it can build views that claim more "
            "memory than the file holds (numpy itself pickles arrays with _reconstruct)"
        )


_NDARRAY = _NdarrayName()


class _CheckedArray(np.ndarray):
    """The array `_reconstruct` makes: its state (shape, dtype, bytes) is checked and charged
    before numpy reads it. `to_plain` turns it back into a plain ndarray."""

    _budget: Budget

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafeFileError("a pickled numpy array with a malformed state")
        shape, dtype, raw = state[-4], state[-3], state[-1]
        if not isinstance(dtype, np.dtype):
            raise UnsafeFileError("a pickled numpy array without a dtype")
        count = _checked_shape(shape, "numpy array")
        nbytes = count * dtype.itemsize
        if dtype.hasobject:
            if not isinstance(raw, list) or len(raw) != count:
                raise UnsafeFileError("a pickled object array whose items do not match its shape")
            nbytes = count * 8
        elif not isinstance(raw, (bytes, str)) or len(raw) != nbytes:
            raise UnsafeFileError(
                f"a pickled numpy array of shape {tuple(shape)} {dtype} needs {nbytes} bytes, the file gives "
                f"{len(raw) if isinstance(raw, (bytes, str)) else type(raw).__name__}"
            )
        self._budget.charge(nbytes, f"numpy array of shape {tuple(shape)}")
        np.ndarray.__setstate__(self, state)


def _checked_shape(shape: Any, what: str) -> int:
    """The element count of a shape claimed by a file, checked to be a short tuple of ints >= 0."""
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_DIMS:
        raise UnsafeFileError(f"{what} with a malformed shape")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise UnsafeFileError(f"{what} with a shape that is not non-negative integers")
    return math.prod(shape)


def _multiarray():
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    return multiarray


class _NoGlobals(pickle.Unpickler):
    """For the small headers of torch's legacy format: plain data only."""

    def find_class(self, module: str, name: str):
        raise UnsafeFileError(f"refusing '{module}.{name}' in a torch storage header")

    def persistent_load(self, pid):
        raise UnsafeFileError("refusing a persistent id in a torch storage header")


class _LegacyStorageRefs(_NoGlobals):
    """The legacy format's object pickle of one storage: records (dtype, numel) per key."""

    def __init__(self, file):
        super().__init__(file)
        self.claims: dict[str, tuple[torch.dtype, int]] = {}

    def find_class(self, module: str, name: str):
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise UnsafeFileError("a torch storage with an unexpected persistent id")
        _, dtype, key, _location, numel, view = pid
        if not isinstance(dtype, torch.dtype) or not isinstance(key, str) or view is not None:
            raise UnsafeFileError("a torch storage reference that is not a plain storage")
        if not isinstance(numel, int) or numel < 0:
            raise UnsafeFileError("a torch storage with a malformed element count")
        self.claims[key] = (dtype, numel)
        return key


def legacy_storage_from_bytes(data: bytes) -> torch.storage.TypedStorage:
    """One storage in torch's legacy format (what `torch.storage._load_from_bytes` receives), read
    without torch.load: each storage's element count is checked against the bytes that follow
    before anything is allocated."""
    f = io.BytesIO(data)
    if _NoGlobals(f).load() != LEGACY_MAGIC or _NoGlobals(f).load() != 1001:
        raise InputError("an embedded torch storage without torch's legacy header")
    info = _NoGlobals(f).load()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise InputError("an embedded torch storage that is not little-endian")
    refs = _LegacyStorageRefs(f)
    root = refs.load()
    keys = _NoGlobals(f).load()
    if not isinstance(keys, list) or root not in keys:
        raise InputError("an embedded torch storage whose key list does not name it")
    storages = {}
    for key in keys:
        if key not in refs.claims or key in storages:
            raise InputError("an embedded torch storage key list naming an unknown storage")
        dtype, numel = refs.claims[key]
        header = f.read(8)
        if len(header) != 8:
            raise InputError("an embedded torch storage cut short")
        (count,) = struct.unpack("<q", header)
        nbytes = count * dtype.itemsize
        left = len(data) - f.tell()
        if count != numel or count < 0 or nbytes > left:
            raise UnsafeFileError(
                f"an embedded torch storage claims {numel} (header {count}) {dtype} elements but holds {left} bytes"
            )
        raw = f.read(nbytes)
        untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
        storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
    return storages[root]


TORCH_UNREAD_ENTRIES = ("/code/", ".debug_pkl")  # TorchScript source and debug info: deflated, never read


def check_zip_sizes(file: Any, limit: int, what: str, unread: tuple[str, ...] = ()) -> None:
    """Refuse a zip archive whose entries (but those whose names contain one of `unread`) claim to
    unpack to more than `limit` bytes, before any is read; zipfile then reads no entry past the size
    it claims. Torch stores its tensors and pickles uncompressed, so for a torch archive `limit` is the
    archive's own size: a deflated gigabyte of zeros is not one of its files."""
    with zipfile.ZipFile(file) as z:
        claimed = sum(i.file_size for i in z.infolist() if not any(part in i.filename for part in unread))
    if claimed > limit:
        raise UnsafeFileError(f"{what}: its entries unpack to {claimed} bytes, over the {limit} bytes allowed")


def check_view(budget: Budget | None, held: int, itemsize: int, offset, size, stride, what: str = "tensor") -> None:
    """Refuse a tensor view a file asks for unless it lies inside its storage of `held` elements with
    positive strides and no more elements than the storage holds; charge its bytes to `budget`."""
    count = _checked_shape(size, what)
    if not isinstance(stride, (tuple, list)) or len(stride) != len(size):
        raise UnsafeFileError(f"a {what} whose strides do not match its shape")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in stride):
        raise UnsafeFileError(f"a {what} with strides that are not integers")
    if not isinstance(offset, int) or offset < 0:
        raise UnsafeFileError(f"a {what} with a malformed storage offset")
    if count:
        if any(s <= 0 for s, n in zip(stride, size) if n > 1):
            raise UnsafeFileError(
                f"a {what} of shape {tuple(size)} with strides {tuple(stride)}: zero or negative strides "
                "make one stored element stand for many (an expanded view), refused"
            )
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if count > held - offset or last >= held:
            raise UnsafeFileError(
                f"a {what} of shape {tuple(size)} claims {count} elements from a storage of {held} (offset {offset})"
            )
    if budget is not None:
        budget.charge(count * itemsize, f"{what} of shape {tuple(size)}")


def checked_tensor(budget: Budget | None, storage, offset, size, stride, what: str = "tensor") -> None:
    """check_view for a tensor about to be rebuilt on a TypedStorage."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafeFileError(f"a {what} whose storage is not a tensor storage")
    itemsize = storage.dtype.itemsize
    check_view(budget, storage._untyped_storage.nbytes() // itemsize, itemsize, offset, size, stride, what)


def check_loaded_tensor(budget: Budget | None, tensor: torch.Tensor, what: str = "tensor") -> None:
    """check_view for a tensor another loader (torch.load) has already rebuilt, before it is copied."""
    itemsize = tensor.element_size()
    held = tensor.untyped_storage().nbytes() // itemsize
    check_view(budget, held, itemsize, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), what)


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only array builders and inert stand-ins (see module docstring).

    `max_bytes`: the budget of data the file may make; by default twice the bytes left in `file`
    plus 1 MiB (`UNKNOWN_SIZE_BUDGET` when the stream's size cannot be known).
    """

    def __init__(
        self, file: BinaryIO, *, allow_torch: bool = False, encoding: str = "latin1", max_bytes: int | None = None
    ):
        super().__init__(file, encoding=encoding)
        self.allow_torch = allow_torch
        self.budget = Budget(max_bytes, None) if max_bytes is not None else Budget.for_size(source_size(file))
        self._array_class = type("_CheckedArray", (_CheckedArray,), {"_budget": self.budget})
        self._records: dict[str, type] = {}

    def record_class(self, class_path: str) -> type:
        """The inert stand-in class for `class_path` (one per name and load)."""
        if class_path not in self._records:
            self._records[class_path] = _make_record_class(class_path)
        return self._records[class_path]

    # ---- the callables a pickle may reach, each checking and charging what it makes
    def _reconstruct(self, cls, shape, dtype):
        if cls is not _NDARRAY or tuple(shape) != (0,) or dtype not in (b"b", "b"):
            raise UnsafeFileError("refusing numpy _reconstruct with arguments numpy never pickles")
        return _multiarray()._reconstruct(self._array_class, (0,), b"b")

    def _scalar(self, dtype, data=None):
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, str)):
            raise UnsafeFileError("refusing a numpy scalar that is not a numeric dtype and its bytes")
        if len(data) != dtype.itemsize:
            raise UnsafeFileError(f"a numpy {dtype} scalar of {len(data)} bytes")
        self.budget.charge(len(data), "numpy scalar")
        return _multiarray().scalar(dtype, data)

    def _dtype(self, spec, *args):
        if not isinstance(spec, str) or len(args) > 2 or not all(isinstance(a, bool) for a in args):
            raise UnsafeFileError("refusing a numpy dtype built from something other than its name")
        return np.dtype(spec, bool(args and args[0]), True)  # always a copy: its state may be set next

    def _encode(self, text, encoding="utf-8", *args):
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or args:
            raise UnsafeFileError("refusing _codecs.encode other than a latin-1 string (how bytes are pickled)")
        self.budget.charge(len(text), "bytes")
        return codecs.encode(text, "latin1")

    def _container(self, factory):
        def make(*args):
            if len(args) > 1 or (args and not isinstance(args[0], (list, tuple))):
                raise UnsafeFileError(f"refusing {factory.__name__} built from something other than a list")
            self.budget.charge(CONTAINER_ITEM_BYTES * (len(args[0]) if args else 0), factory.__name__)
            return factory(*args)

        return make

    def _rebuild_tensor(self, storage, storage_offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        if hooks or metadata:
            raise UnsafeFileError("refusing a pickled tensor with hooks or metadata")
        checked_tensor(self.budget, storage, storage_offset, size, stride)
        return torch._utils._rebuild_tensor_v2(
            storage, storage_offset, tuple(size), tuple(stride), bool(requires_grad), collections.OrderedDict()
        )

    def _storage_from_bytes(self, data):
        """torch.storage._load_from_bytes, without torch.load's own unpickler for the legacy format."""
        if not isinstance(data, bytes):
            raise UnsafeFileError("refusing a torch storage that is not bytes")
        self.budget.charge(len(data), "torch storage")
        if zipfile.is_zipfile(io.BytesIO(data)):
            check_zip_sizes(io.BytesIO(data), len(data), "an embedded torch storage", TORCH_UNREAD_ENTRIES)
            storage = torch.load(io.BytesIO(data), weights_only=True)
            if not isinstance(storage, torch.storage.TypedStorage):
                raise UnsafeFileError("an embedded torch archive that is not one storage")
            return storage
        return legacy_storage_from_bytes(data)

    def find_class(self, module: str, name: str):
        # Only names of this table are looked up; nothing is imported to resolve a name.
        numpy_core = ("numpy.core.multiarray", "numpy._core.multiarray")
        if module in numpy_core and name == "_reconstruct":
            return self._reconstruct
        if module in numpy_core and name == "scalar":
            return self._scalar
        if (module, name) == ("numpy", "ndarray"):
            return _NDARRAY
        if (module, name) == ("numpy", "dtype"):
            return self._dtype
        if (module, name) in CHUMPY_CLASSES or (module, name) in SPARSE_CLASSES:
            return self.record_class(f"{module}.{name}")
        if (module, name) == ("collections", "OrderedDict"):
            return self._container(collections.OrderedDict)
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset"):  # chumpy state
            return self._container(set if name == "set" else frozenset)
        if (module, name) == ("_codecs", "encode"):
            return self._encode
        if self.allow_torch:
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return self._rebuild_tensor
            if (module, name) == ("torch.storage", "_load_from_bytes"):
                return self._storage_from_bytes
        raise UnsafeFileError(
            f"refusing to load '{module}.{name}' from a pickle: only numpy arrays, chumpy arrays "
            f"and scipy sparse matrices are allowed in model files"
        )

    def persistent_load(self, pid):
        raise UnsafeFileError("refusing a pickle with persistent ids (not a FLAME model file)")


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


def safe_load(file: str | os.PathLike | BinaryIO | bytes, *, allow_torch: bool = False) -> Any:
    """Unpickle `file` (path, bytes or binary stream) with SafeUnpickler, then turn stand-ins into arrays."""
    if isinstance(file, bytes):
        file = io.BytesIO(file)
    what = str(file) if isinstance(file, (str, os.PathLike)) else "the pickle"
    with reading_errors(what):
        if isinstance(file, (str, os.PathLike)):
            with open(file, "rb") as f:
                unpickler = SafeUnpickler(f, allow_torch=allow_torch)
                return to_plain(unpickler.load(), unpickler.budget)
        unpickler = SafeUnpickler(file, allow_torch=allow_torch)
        return to_plain(unpickler.load(), unpickler.budget)


def to_plain(obj: Any, budget: Budget | None = None, _depth: int = 0) -> Any:
    """Recursively replace chumpy/scipy stand-ins by numpy arrays, tensors stay tensors.

    Dense copies of sparse matrices are charged to `budget` (default: UNKNOWN_SIZE_BUDGET).
    """
    if budget is None:
        budget = Budget(UNKNOWN_SIZE_BUDGET)
    if _depth > MAX_DEPTH:
        raise UnsafeFileError(f"a model file nested deeper than {MAX_DEPTH} levels (or referring to itself)")
    if isinstance(obj, StateRecord):
        return _record_to_array(obj, budget, _depth)
    if isinstance(obj, np.ndarray):
        return _plain_array(obj, budget, _depth)
    if isinstance(obj, dict):
        return {k: to_plain(v, budget, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v, budget, _depth + 1) for v in obj)
    return obj


def _plain_array(arr: np.ndarray, budget: Budget, depth: int) -> np.ndarray:
    if any(s <= 0 for s, n in zip(arr.strides, arr.shape) if n > 1):
        raise UnsafeFileError(f"an array of shape {arr.shape} with zero or negative strides {arr.strides}")
    arr = arr.view(np.ndarray) if type(arr) is not np.ndarray else arr
    if arr.dtype.hasobject:
        out = np.empty(arr.shape, dtype=object)
        for i, v in enumerate(arr.flat):
            out.flat[i] = to_plain(v, budget, depth + 1)
        return out
    return arr


def _index_array(state: dict, key: str, record: StateRecord, budget: Budget, depth: int) -> np.ndarray:
    value = state.get(key)
    if not isinstance(value, np.ndarray):
        raise UnsafeFileError(f"{record.class_path} without its '{key}' array")
    arr = _plain_array(value, budget, depth)
    if arr.ndim != 1 or arr.dtype.hasobject or arr.dtype.kind not in "biuf":
        raise UnsafeFileError(f"{record.class_path}: '{key}' is not a 1-D numeric array")
    return arr


def _record_to_array(record: StateRecord, budget: Budget, depth: int) -> np.ndarray:
    state = record.state
    if record.class_path.startswith("chumpy"):
        if not isinstance(state, dict) or "x" not in state:
            raise UnsafeFileError(f"chumpy object without its data 'x' in {record.class_path}")
        return np.asarray(to_plain(state["x"], budget, depth + 1))
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
        state = state[1]  # copyreg-style (None, dict) state
    if not isinstance(state, dict):
        raise UnsafeFileError(f"unexpected state for {record.class_path}")
    shape = state.get("_shape", state.get("shape"))
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise UnsafeFileError(f"{record.class_path} without a 2-D shape")
    _checked_shape(shape, record.class_path)
    rows, cols = shape
    data = _index_array(state, "data", record, budget, depth)
    budget.charge(rows * cols * data.dtype.itemsize, f"{record.class_path} of shape {rows} x {cols} made dense")
    dense = np.zeros((rows, cols), dtype=data.dtype)
    if "coo" in record.class_path:
        if isinstance(state.get("coords"), tuple) and len(state["coords"]) == 2:  # scipy >= 1.13 keeps (row, col)
            state = {**state, "row": state["coords"][0], "col": state["coords"][1]}
        row, col = (_index_array(state, k, record, budget, depth) for k in ("row", "col"))
        if not len(row) == len(col) == len(data):
            raise UnsafeFileError(f"{record.class_path}: row, col and data differ in length")
    else:
        compressed = cols if "csc" in record.class_path else rows  # one indptr entry per column (csc) / row
        indices = _index_array(state, "indices", record, budget, depth)
        indptr = _index_array(state, "indptr", record, budget, depth)
        if len(indptr) != compressed + 1 or indptr.dtype.kind not in "iu":
            raise UnsafeFileError(f"{record.class_path}: its indptr does not have {compressed + 1} integers")
        indptr = indptr.astype(np.int64)
        nnz = int(indptr[-1])
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or not nnz <= min(len(indices), len(data)):
            raise UnsafeFileError(f"{record.class_path}: its indptr does not fit a {rows} x {cols} matrix")
        outer = np.repeat(np.arange(compressed), np.diff(indptr))
        inner, data = indices[:nnz], data[:nnz]
        row, col = (inner, outer) if "csc" in record.class_path else (outer, inner)
    if row.dtype.kind not in "iu" or col.dtype.kind not in "iu":
        raise UnsafeFileError(f"{record.class_path}: its indices are not integers")
    if len(row) and (row.min() < 0 or row.max() >= rows or col.min() < 0 or col.max() >= cols):
        raise UnsafeFileError(f"{record.class_path}: an index lies outside its {rows} x {cols} shape")
    np.add.at(dense, (row, col), data)
    return dense
