"""The glTF writer: what it writes reads back exactly, and the reader refuses malformed files."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from faceedit_core.errors import InputError
from faceedit_core.storage.gltf import glb_bytes, read_glb, write_glb


def tetra(n_extra: int = 0):
    rng = np.random.default_rng(0)
    positions = np.concatenate([np.eye(3), np.zeros((1, 3)), rng.normal(size=(n_extra, 3))]).astype(np.float32)
    indices = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]], np.int64)
    return positions, indices


def test_positions_indices_and_named_morph_targets_read_back_exactly(tmp_path):
    positions, indices = tetra()
    smile = np.full_like(positions, 0.25)
    brow = np.arange(positions.size, dtype=np.float32).reshape(positions.shape) / 100
    path = write_glb(tmp_path / "m.glb", positions, indices, [("smile", smile), ("raise brow", brow)], weights=[1, 0])
    back = read_glb(path)
    np.testing.assert_array_equal(back["positions"], positions)
    np.testing.assert_array_equal(back["indices"], indices)
    assert [n for n, _ in back["targets"]] == ["smile", "raise brow"]
    np.testing.assert_array_equal(back["targets"][0][1], smile)
    np.testing.assert_array_equal(back["targets"][1][1], brow)
    assert back["weights"] == [1.0, 0.0]
    assert np.allclose(np.linalg.norm(back["normals"], axis=1), 1, atol=1e-6)
    doc = back["json"]
    assert doc["asset"]["version"] == "2.0"
    assert doc["accessors"][doc["meshes"][0]["primitives"][0]["indices"]]["componentType"] == 5123  # uint16
    assert path.read_bytes() == glb_bytes(positions, indices, [("smile", smile), ("raise brow", brow)], [1, 0])


def test_large_meshes_switch_to_32_bit_indices():
    positions, indices = tetra(70_000)
    indices = np.concatenate([indices, [[0, 1, 70_003]]])
    back = read_glb(glb_bytes(positions, indices))
    doc = back["json"]
    assert doc["accessors"][doc["meshes"][0]["primitives"][0]["indices"]]["componentType"] == 5125
    np.testing.assert_array_equal(back["indices"], indices)


def test_malformed_files_and_inputs_are_refused():
    positions, indices = tetra()
    data = glb_bytes(positions, indices, [("e", positions * 0)])
    with pytest.raises(InputError, match="not a glTF 2.0 binary"):
        read_glb(b"GLTF" + data[4:])
    with pytest.raises(InputError, match="header length"):
        read_glb(data[:-4])
    # a POSITION min/max that disagrees with the data (what a validator checks)
    n = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + n])
    doc["accessors"][0]["max"] = [9.0, 9.0, 9.0]
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    bad = struct.pack("<III", 0x46546C67, 2, 20 + len(text) + len(data) - 20 - n) + struct.pack(
        "<II", len(text), 0x4E4F534A
    )
    with pytest.raises(InputError, match="min/max disagree"):
        read_glb(bad + text + data[20 + n :])
    with pytest.raises(InputError, match="indices must lie in"):
        glb_bytes(positions, indices + 10)
    with pytest.raises(InputError, match="morph target 'x' has shape"):
        glb_bytes(positions, indices, [("x", positions[:2])])
