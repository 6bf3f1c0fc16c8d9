"""A small glTF 2.0 binary (.glb) writer and reader: one triangle mesh with named morph targets.

Written for FaceEdit's batch output: the input head is the base mesh and each edit is a morph
target (a per-vertex position offset) whose name is the prompt, so a viewer or Blender (shape
keys) can dial the edit from 0 to 1. What is written:

- positions `[V,3]` float32 (POSITION, with the min/max the spec requires), smooth vertex normals
  (NORMAL), indices `[F,3]` (uint16 when V <= 65535, else uint32), mode TRIANGLES;
- one morph target per edit: POSITION offsets `[V,3]` (min/max too) and NORMAL offsets; the names
  go to `mesh.extras.targetNames` (the convention Blender, three.js and Babylon.js read), the
  default weights to `mesh.weights`.

FLAME's axes are glTF's (metres, y up, the face looks along +z), so vertices go in as they are.
Every buffer view starts on a 4-byte boundary; the JSON chunk is padded with spaces and the
binary chunk with zeros (glTF 2.0, section 4.4). `read_glb` parses what it needs to check a file
(header, chunks, accessors) and is how the writer is validated; it is not a general importer.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from faceedit_core.errors import InputError
from faceedit_core.storage.atomic import atomic_write
from faceedit_core.storage.reading import reading_errors

GLB_MAGIC = 0x46546C67  # b"glTF"
CHUNK_JSON = 0x4E4F534A  # b"JSON"
CHUNK_BIN = 0x004E4942  # b"BIN\0"
FLOAT, UINT16, UINT32 = 5126, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TRIANGLES = 4
_DTYPES = {FLOAT: np.dtype("<f4"), UINT16: np.dtype("<u2"), UINT32: np.dtype("<u4")}
_WIDTH = {"SCALAR": 1, "VEC3": 3}


def vertex_normals(positions: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V,3] of a triangle mesh (zero-area corners get +z)."""
    p = positions.astype(np.float64)
    tri = p[indices]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    n = np.zeros_like(p)
    for corner in range(3):
        np.add.at(n, indices[:, corner], face_n)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-20, n / np.maximum(length, 1e-20), np.array([0.0, 0.0, 1.0]))
    return n.astype(np.float32)


def _checked(positions, indices, morph_targets) -> tuple[np.ndarray, np.ndarray, list[tuple[str, np.ndarray]]]:
    positions = np.asarray(positions, np.float32)
    indices = np.asarray(indices)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) == 0:
        raise InputError(f"glTF positions must have shape [V,3] with V >= 1, got {positions.shape}")
    if not np.isfinite(positions).all():
        raise InputError("glTF positions contain NaN or Inf")
    if indices.ndim != 2 or indices.shape[1] != 3 or len(indices) == 0 or indices.dtype.kind not in "iu":
        raise InputError(
            f"glTF indices must be integers of shape [F,3] with F >= 1, got {indices.shape} {indices.dtype}"
        )
    if indices.min() < 0 or indices.max() >= len(positions):
        raise InputError(f"glTF indices must lie in [0, {len(positions) - 1}], got {indices.min()}..{indices.max()}")
    targets = []
    for name, deltas in morph_targets:
        deltas = np.asarray(deltas, np.float32)
        if not isinstance(name, str) or not name:
            raise InputError(f"morph target names must be non-empty strings, got {name!r}")
        if deltas.shape != positions.shape:
            raise InputError(f"morph target '{name}' has shape {deltas.shape}, the positions {positions.shape}")
        if not np.isfinite(deltas).all():
            raise InputError(f"morph target '{name}' contains NaN or Inf")
        targets.append((name, deltas))
    return positions, indices, targets


def glb_bytes(
    positions: np.ndarray,
    indices: np.ndarray,
    morph_targets: list[tuple[str, np.ndarray]] = (),
    weights: list[float] | None = None,
    name: str = "head",
    extras: dict | None = None,
) -> bytes:
    """positions [V,3] (metres), indices [F,3] (0-based), morph_targets [(name, offsets [V,3])] -> .glb bytes.

    weights: the default weight of each morph target (default 0: the base mesh shows);
    extras: JSON-able metadata stored in the mesh's extras beside targetNames.
    """
    positions, indices, targets = _checked(positions, indices, list(morph_targets))
    weights = [0.0] * len(targets) if weights is None else [float(w) for w in weights]
    if len(weights) != len(targets):
        raise InputError(f"{len(weights)} morph target weights given for {len(targets)} targets")
    normals = vertex_normals(positions, indices)
    index_type = UINT16 if len(positions) <= 0xFFFF else UINT32

    blob = bytearray()
    views, accessors = [], []

    def add(array: np.ndarray, component: int, kind: str, target: int | None, bounds: bool) -> int:
        data = np.ascontiguousarray(array, _DTYPES[component]).tobytes()
        blob.extend(b"\0" * (-len(blob) % 4))
        view = {"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        blob.extend(data)
        acc = {
            "bufferView": len(views) - 1,
            "componentType": component,
            "count": int(array.shape[0]) if kind != "SCALAR" else int(array.size),
            "type": kind,
        }
        if bounds:  # POSITION accessors must carry min and max (base and morph targets alike)
            acc["min"] = [float(v) for v in array.min(0)]
            acc["max"] = [float(v) for v in array.max(0)]
        accessors.append(acc)
        return len(accessors) - 1

    attributes = {
        "POSITION": add(positions, FLOAT, "VEC3", ARRAY_BUFFER, True),
        "NORMAL": add(normals, FLOAT, "VEC3", ARRAY_BUFFER, False),
    }
    index_acc = add(indices.reshape(-1), index_type, "SCALAR", ELEMENT_ARRAY_BUFFER, False)
    target_accs = []
    for _, deltas in targets:
        dn = vertex_normals(positions + deltas, indices) - normals
        target_accs.append(
            {
                "POSITION": add(deltas, FLOAT, "VEC3", ARRAY_BUFFER, True),
                "NORMAL": add(dn, FLOAT, "VEC3", ARRAY_BUFFER, False),
            }
        )
    blob.extend(b"\0" * (-len(blob) % 4))

    primitive = {"attributes": attributes, "indices": index_acc, "mode": TRIANGLES}
    mesh: dict = {"name": name, "primitives": [primitive]}
    if targets:
        primitive["targets"] = target_accs
        mesh["weights"] = weights
    mesh_extras = dict(extras or {})
    if targets:
        mesh_extras["targetNames"] = [n for n, _ in targets]
    if mesh_extras:
        mesh["extras"] = mesh_extras
    doc = {
        "asset": {"version": "2.0", "generator": "FaceEdit glTF writer"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [mesh],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(blob)
    return b"".join(
        [
            struct.pack("<III", GLB_MAGIC, 2, total),
            struct.pack("<II", len(text), CHUNK_JSON),
            text,
            struct.pack("<II", len(blob), CHUNK_BIN),
            bytes(blob),
        ]
    )


def write_glb(path: str | os.PathLike, positions, indices, morph_targets=(), **kwargs) -> Path:
    """Write a .glb atomically (see glb_bytes for the arguments)."""
    data = glb_bytes(positions, indices, morph_targets, **kwargs)
    return atomic_write(path, lambda f: f.write(data))


def _accessor(doc: dict, blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = _DTYPES.get(acc["componentType"])
    if dtype is None or acc["type"] not in _WIDTH:
        raise InputError(f"accessor {index}: unsupported componentType {acc['componentType']} / type {acc['type']}")
    width = _WIDTH[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    n_bytes = acc["count"] * width * dtype.itemsize
    if start % dtype.itemsize or start + n_bytes > view.get("byteOffset", 0) + view["byteLength"]:
        raise InputError(f"accessor {index} is misaligned or runs past its buffer view")
    if view.get("byteOffset", 0) + view["byteLength"] > len(blob):
        raise InputError(f"buffer view {acc['bufferView']} runs past the binary chunk")
    data = np.frombuffer(blob, dtype, acc["count"] * width, start)
    return data.reshape(acc["count"], width) if width > 1 else data.copy()


def read_glb(path_or_bytes: str | os.PathLike | bytes) -> dict:
    """Parse and check a .glb written by this module (or any single-buffer triangle mesh).

    -> {"json": the document, "positions" [V,3], "normals" [V,3] | None, "indices" [F,3],
    "targets": [(name, offsets [V,3])], "weights": [...]}. Raises InputError on a malformed file:
    bad magic, version, lengths, chunk types or padding, accessors out of range, POSITION min/max
    that disagree with the data; anything else malformed (JSON that is not UTF-8, a missing field,
    a field of the wrong type) is an InputError too.
    """
    if isinstance(path_or_bytes, bytes):
        with reading_errors("the .glb"):
            return _parse_glb(path_or_bytes)
    with reading_errors(str(path_or_bytes)):
        return _parse_glb(Path(path_or_bytes).read_bytes())


def _parse_glb(data: bytes) -> dict:
    """read_glb of the file's bytes; may raise any exception on a malformed document."""
    if len(data) < 28:
        raise InputError(f"a .glb needs at least 28 bytes, got {len(data)}")
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2:
        raise InputError(f"not a glTF 2.0 binary (magic {magic:#x}, version {version})")
    if total != len(data) or total % 4:
        raise InputError(f"header length {total} != file length {len(data)} (or not a multiple of 4)")
    json_len, json_type = struct.unpack_from("<II", data, 12)
    if json_type != CHUNK_JSON or json_len % 4:
        raise InputError("the first chunk must be JSON with a length that is a multiple of 4")
    doc = json.loads(data[20 : 20 + json_len].decode("utf-8"))
    offset = 20 + json_len
    blob = b""
    if offset < total:
        bin_len, bin_type = struct.unpack_from("<II", data, offset)
        if bin_type != CHUNK_BIN or bin_len % 4 or offset + 8 + bin_len != total:
            raise InputError("the second chunk must be BIN, padded to 4 bytes, and end the file")
        blob = data[offset + 8 : offset + 8 + bin_len]
    if doc.get("asset", {}).get("version") != "2.0":
        raise InputError("asset.version must be '2.0'")
    if doc["buffers"][0]["byteLength"] > len(blob):
        raise InputError("buffers[0].byteLength exceeds the binary chunk")
    for i, view in enumerate(doc["bufferViews"]):
        if view.get("byteOffset", 0) % 4:
            raise InputError(f"bufferViews[{i}] does not start on a 4-byte boundary")
    mesh = doc["meshes"][doc["nodes"][doc["scenes"][doc.get("scene", 0)]["nodes"][0]]["mesh"]]
    prim = mesh["primitives"][0]
    if prim.get("mode", TRIANGLES) != TRIANGLES:
        raise InputError(f"primitive mode {prim.get('mode')} is not TRIANGLES")

    def position(index: int, what: str) -> np.ndarray:
        arr = _accessor(doc, blob, index)
        acc = doc["accessors"][index]
        if "min" not in acc or "max" not in acc:
            raise InputError(f"{what}: POSITION accessor {index} lacks min/max")
        if not (np.allclose(arr.min(0), acc["min"]) and np.allclose(arr.max(0), acc["max"])):
            raise InputError(f"{what}: POSITION accessor {index} min/max disagree with its data")
        return arr

    positions = position(prim["attributes"]["POSITION"], "base")
    normals = _accessor(doc, blob, prim["attributes"]["NORMAL"]) if "NORMAL" in prim["attributes"] else None
    indices = _accessor(doc, blob, prim["indices"]).astype(np.int64)
    if len(indices) % 3 or (len(indices) and indices.max() >= len(positions)):
        raise InputError("indices are not triangles or point past the vertices")
    names = list(mesh.get("extras", {}).get("targetNames", []))
    targets = []
    for k, t in enumerate(prim.get("targets", [])):
        name = names[k] if k < len(names) else f"target_{k}"
        offsets = position(t["POSITION"], f"morph target '{name}'")
        if offsets.shape != positions.shape:
            raise InputError(f"morph target '{name}' has {len(offsets)} vertices, the base {len(positions)}")
        targets.append((name, offsets))
    return {
        "json": doc,
        "positions": positions,
        "normals": normals,
        "indices": indices.reshape(-1, 3),
        "targets": targets,
        "weights": list(mesh.get("weights", [0.0] * len(targets))),
    }
