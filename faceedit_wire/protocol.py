"""The FaceEdit wire protocol: msgpack maps, shared by the server and the Blender add-on.

Free of torch (the add-on ships this file): numpy is used for arrays when present.
The server decodes a request without turning array maps into arrays (`decode(payload,
arrays=False)`), checks the envelope's types before its values (`check_request`) and unpacks an
array only where a handler expects one (`get_array`), so no field can smuggle an array into a
comparison.

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
MAX_DIMS, MAX_DIM = 6, 2**31 - 1  # what an array map's shape may claim (its data must match it exactly)
OPS = ("hello", "ping", "edit", "render", "train", "invert", "status", "cancel")

# error codes
BAD_REQUEST, UNKNOWN_OP, VERSION, INVALID_FIELD = "bad_request", "unknown_op", "version", "invalid_field"
PROMPT_NOT_UNDERSTOOD, TOO_LARGE, NOT_FOUND, CANCELLED, INTERNAL, BUSY = (
    "prompt_not_understood",
    "too_large",
    "not_found",
    "cancelled",
    "internal",
    "busy",
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
    """An array map {"__nd__", dtype, shape, data} -> numpy array; ProtocolError for anything else."""
    dtype, shape, data = obj.get("dtype"), obj.get("shape"), obj.get("data")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ProtocolError(INVALID_FIELD, f"array dtype must be one of {', '.join(DTYPES)}, got {shown(dtype)}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(type(s) is int and 0 <= s <= MAX_DIM for s in shape)
    ):
        raise ProtocolError(
            INVALID_FIELD,
            f"array shape must be a list of at most {MAX_DIMS} integers in 0..{MAX_DIM}, got {shown(shape)}",
        )
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


def is_array_map(obj) -> bool:
    return isinstance(obj, dict) and obj.get("__nd__") is True


def _decode_hook(obj: dict):
    return unpack_array(obj) if is_array_map(obj) else obj


def shown(value, limit: int = 40) -> str:
    """A short description of a received value for an error message (never the whole of a big one)."""
    if is_array_map(value) or (np is not None and isinstance(value, np.ndarray)):
        return "an array"
    for kind, word in ((dict, "a map"), ((list, tuple), "a list"), ((bytes, bytearray), "bytes")):
        if isinstance(value, kind):
            return word
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encode(message: dict) -> bytes:
    return msgpack.packb(message, default=_encode_hook, use_bin_type=True)


def decode(payload: bytes, arrays: bool = True) -> dict:
    """bytes -> message dict; raises ProtocolError for anything that is not a valid message map.

    arrays: turn array maps into numpy arrays (replies, on the client); the server decodes
    requests with arrays=False and unpacks each array where it is expected (`get_array`).
    """
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ProtocolError(TOO_LARGE, f"message of {len(payload)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
    try:
        msg = msgpack.unpackb(
            payload,
            object_hook=_decode_hook if arrays else None,
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


def request_id(msg: dict) -> str | None:
    """The request's id when it is a valid one (error replies echo it), else None."""
    req_id = msg.get("id")
    return req_id if isinstance(req_id, str) and 1 <= len(req_id) <= MAX_ID_CHARS else None


def check_request(msg: dict) -> tuple[str, str, dict]:
    """Validate the envelope of a request -> (id, op, args). Each field's type is checked before
    its value is compared, so an array, a map or a list anywhere in the envelope is a clean error."""
    req_id = request_id(msg)
    if req_id is None:
        raise ProtocolError(
            BAD_REQUEST, f"field 'id' must be a string of 1..{MAX_ID_CHARS} characters, got {shown(msg.get('id'))}"
        )
    version = msg.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(VERSION, f"field 'v' (protocol version) must be {PROTOCOL_VERSION}, got {shown(version)}")
    op = msg.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise ProtocolError(UNKNOWN_OP, f"field 'op' must be one of {', '.join(OPS)}, got {shown(op)}")
    args = msg.get("args", {})
    if not isinstance(args, dict) or is_array_map(args):
        raise ProtocolError(BAD_REQUEST, f"field 'args' must be a map, got {shown(args)}")
    return req_id, op, args


def get_array(
    args: dict, name: str, ndim: int, last: int | None = None, max_first: int | None = None, required: bool = True
):
    """A finite float array argument with `ndim` dims (and `last` columns); ProtocolError names the field.

    The value is an array map as sent (unpacked here) or an array already."""
    if name not in args:
        if required:
            raise ProtocolError(INVALID_FIELD, f"field '{name}' is missing")
        return None
    a = args[name]
    if is_array_map(a):
        try:
            a = unpack_array(a)
        except ProtocolError as exc:
            raise ProtocolError(exc.code, f"field '{name}': {exc}") from None
    if not isinstance(a, np.ndarray):
        raise ProtocolError(INVALID_FIELD, f"field '{name}' must be an array ({{dtype, shape, data}}), got {shown(a)}")
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
    """A finite number argument in lo..hi (default when absent); ProtocolError names the field and the range."""
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(INVALID_FIELD, f"field '{name}' must be a finite number, got {shown(value)}")
    if not lo <= value <= hi:
        raise ProtocolError(
            TOO_LARGE if value > hi else INVALID_FIELD, f"field '{name}' = {value} is outside {lo}..{hi}"
        )
    return value


def get_map(args: dict, name: str) -> dict:
    """A map argument ({} when absent); ProtocolError names the field."""
    value = args.get(name, {})
    if not isinstance(value, dict) or is_array_map(value):
        raise ProtocolError(INVALID_FIELD, f"field '{name}' must be a map, got {shown(value)}")
    return value


def get_flag(args: dict, name: str, default: bool = False) -> bool:
    """A true/false argument (default when absent); ProtocolError names the field."""
    value = args.get(name, default)
    if not isinstance(value, bool):
        raise ProtocolError(INVALID_FIELD, f"field '{name}' must be true or false, got {shown(value)}")
    return value
