"""The FaceEdit wire protocol: msgpack maps, shared by the server and the Blender add-on.

Free of torch (the add-on ships this file): numpy is used for arrays when present.

Request   {"v": 1, "id": "<client-chosen>", "op": "<name>", "args": {...}}
Reply     {"v": 1, "id": ..., "ok": true, "result": {...}}
Error     {"v": 1, "id": ..., "ok": false, "error": {"code": ..., "message": ...}}
Progress  {"v": 1, "id": ..., "event": "progress", "data": {"stage", "step", "total", ...}}
Arrays    {"__nd__": true, "dtype": "float32", "shape": [..], "data": <bytes, C order, little endian>}
No pickle anywhere: msgpack with raw bytes only.
"""

from __future__ import annotations

import math

import msgpack

try:
    import numpy as np
except ImportError:  # pragma: no cover - Blender always has numpy
    np = None

from .limits import MAX_BATCH, MAX_ID_CHARS, MAX_INTENSITY, MAX_MESSAGE_BYTES, MAX_SIZE, MAX_VIEWS  # noqa: F401

PROTOCOL_VERSION = 1
DTYPES = ("float32", "float64", "int32", "int64", "uint8")
OPS = ("hello", "ping", "edit", "render", "train", "status", "cancel")

# error codes
BAD_REQUEST, UNKNOWN_OP, VERSION, INVALID_FIELD = "bad_request", "unknown_op", "version", "invalid_field"
PROMPT_NOT_UNDERSTOOD, TOO_LARGE, NOT_FOUND, CANCELLED, INTERNAL = (
    "prompt_not_understood",
    "too_large",
    "not_found",
    "cancelled",
    "internal",
)


class ProtocolError(ValueError):
    """A request that breaks the protocol; `code` is one of the error codes above."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def pack_array(arr) -> dict:
    a = np.ascontiguousarray(arr)
    if a.dtype.name not in DTYPES:
        raise ProtocolError(INVALID_FIELD, f"array dtype {a.dtype.name} is not one of {', '.join(DTYPES)}")
    return {
        "__nd__": True,
        "dtype": a.dtype.name,
        "shape": list(a.shape),
        "data": a.astype(a.dtype.newbyteorder("<")).tobytes(),
    }


def unpack_array(obj: dict):
    dtype, shape, data = obj.get("dtype"), obj.get("shape"), obj.get("data")
    if dtype not in DTYPES:
        raise ProtocolError(INVALID_FIELD, f"array dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape) or len(shape) > 6:
        raise ProtocolError(INVALID_FIELD, f"array shape {shape!r} must be a list of at most 6 non-negative integers")
    if not isinstance(data, bytes):
        raise ProtocolError(INVALID_FIELD, "array data must be bytes")
    dt = np.dtype(dtype).newbyteorder("<")
    if math.prod(shape) * dt.itemsize != len(data):
        raise ProtocolError(
            INVALID_FIELD,
            f"array of shape {shape} and dtype {dtype} needs {math.prod(shape) * dt.itemsize} bytes, got {len(data)}",
        )
    return np.frombuffer(data, dtype=dt).reshape(shape).astype(dtype)


def _encode_hook(obj):
    if np is not None and isinstance(obj, np.ndarray):
        return pack_array(obj)
    if np is not None and isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send a {type(obj).__name__}")


def _decode_hook(obj: dict):
    return unpack_array(obj) if obj.get("__nd__") is True else obj


def encode(message: dict) -> bytes:
    return msgpack.packb(message, default=_encode_hook, use_bin_type=True)


def decode(payload: bytes) -> dict:
    """bytes -> message dict; raises ProtocolError for anything that is not a valid message map."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ProtocolError(TOO_LARGE, f"message of {len(payload)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
    try:
        msg = msgpack.unpackb(
            payload,
            object_hook=_decode_hook,
            raw=False,
            strict_map_key=True,
            max_bin_len=MAX_MESSAGE_BYTES,
            max_str_len=1 << 20,
            max_array_len=1 << 16,
            max_map_len=1 << 12,
        )
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(BAD_REQUEST, f"message is not valid msgpack: {exc.__class__.__name__}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(BAD_REQUEST, "message must be a msgpack map")
    return msg


def request(req_id: str, op: str, args: dict | None = None) -> dict:
    return {"v": PROTOCOL_VERSION, "id": req_id, "op": op, "args": args or {}}


def reply(req_id, result: dict) -> dict:
    return {"v": PROTOCOL_VERSION, "id": req_id, "ok": True, "result": result}


def error(req_id, code: str, message: str) -> dict:
    return {"v": PROTOCOL_VERSION, "id": req_id, "ok": False, "error": {"code": code, "message": message}}


def progress(req_id, data: dict) -> dict:
    return {"v": PROTOCOL_VERSION, "id": req_id, "event": "progress", "data": data}


def check_request(msg: dict) -> tuple[str, str, dict]:
    """Validate the envelope of a request -> (id, op, args)."""
    req_id = msg.get("id")
    if not isinstance(req_id, str) or not 1 <= len(req_id) <= MAX_ID_CHARS:
        raise ProtocolError(BAD_REQUEST, f"field 'id' must be a string of 1..{MAX_ID_CHARS} characters")
    if msg.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            VERSION, f"protocol version {msg.get('v')!r} is not supported; this server speaks {PROTOCOL_VERSION}"
        )
    op = msg.get("op")
    if op not in OPS:
        raise ProtocolError(UNKNOWN_OP, f"unknown op {op!r}; known: {', '.join(OPS)}")
    args = msg.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(BAD_REQUEST, "field 'args' must be a map")
    return req_id, op, args


def get_array(
    args: dict, name: str, ndim: int, last: int | None = None, max_first: int | None = None, required: bool = True
):
    """A finite float array argument with `ndim` dims (and `last` columns); ProtocolError names the field."""
    if name not in args:
        if required:
            raise ProtocolError(INVALID_FIELD, f"field '{name}' is missing")
        return None
    a = args[name]
    if not isinstance(a, np.ndarray):
        raise ProtocolError(INVALID_FIELD, f"field '{name}' must be an array ({{dtype, shape, data}})")
    if a.dtype.kind != "f":
        raise ProtocolError(INVALID_FIELD, f"field '{name}' must be float32 or float64, got {a.dtype.name}")
    if a.ndim != ndim or (last is not None and a.shape[-1] != last):
        want = f"{ndim} dims" + (f" with {last} columns" if last is not None else "")
        raise ProtocolError(INVALID_FIELD, f"field '{name}' has shape {list(a.shape)}, expected {want}")
    if max_first is not None and not 1 <= a.shape[0] <= max_first:
        raise ProtocolError(TOO_LARGE, f"field '{name}' has {a.shape[0]} items, the limit is {max_first}")
    if not np.isfinite(a).all():
        raise ProtocolError(INVALID_FIELD, f"field '{name}' contains NaN or Inf")
    return a


def get_number(args: dict, name: str, default: float, lo: float, hi: float) -> float:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(INVALID_FIELD, f"field '{name}' must be a finite number")
    if not lo <= value <= hi:
        raise ProtocolError(
            TOO_LARGE if value > hi else INVALID_FIELD, f"field '{name}' = {value} is outside {lo}..{hi}"
        )
    return value
