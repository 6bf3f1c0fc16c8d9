"""OBJ, glTF binary and UV-mask files that are malformed (issue 20): FaceEdit's own InputError naming
the file, never a UnicodeDecodeError, KeyError, ValueError or an image library's error; an OBJ whose
faces point past its vertices is refused rather than returned; a mask header claiming a huge image
is refused before any pixel is decoded."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from faceedit_core.errors import InputError
from faceedit_core.next3d.topology import MAX_MASK_PIXELS, read_uv_mask
from faceedit_core.storage.gltf import glb_bytes, read_glb
from faceedit_core.storage.mesh_io import read_obj, write_obj
from tests.helpers import hostile_files as H

TRIANGLE = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n"


@pytest.mark.parametrize(
    "text, match",
    [
        (b"v 0 0 0\n# caf\xe9\nf 1 1 1\n", "UnicodeDecodeError"),  # latin-1, not UTF-8
        (TRIANGLE.encode() + b"v 1 2\nf 1 2 3\n", "every 'v' line needs 3 numbers"),
        (TRIANGLE.encode() + b"v 1 x 2\n", "ValueError"),
        (TRIANGLE.encode() + b"f 1 2 9\n", "indices must lie in 1..3"),
        (TRIANGLE.encode() + b"f -1 -2 -3\n", "indices must lie in 1..3"),
        (TRIANGLE.encode() + b"f 1/1 2/2 3/7\n", "indices must lie in 1..3"),
        (TRIANGLE.encode() + b"f 1/1 2/2 3/3\nf 1 2 3\n", "texture coordinates on 1 of 2 faces"),
        (TRIANGLE.encode() + b"f 1/a 2/2 3/3\n", "ValueError"),
    ],
    ids=[
        "not-utf8",
        "short-vertex",
        "bad-number",
        "face-past-vertices",
        "negative",
        "uv-past-uvs",
        "uv-on-some",
        "uv-not-a-number",
    ],
)
def test_malformed_obj_files_are_input_errors_naming_the_file(tmp_path, text, match):
    path = tmp_path / "head.obj"
    path.write_bytes(text)
    with pytest.raises(InputError, match=match) as caught:
        read_obj(path)
    assert "head.obj" in str(caught.value)


def test_a_written_obj_reads_back(tmp_path):
    verts, faces = np.random.default_rng(0).normal(size=(5, 3)), np.array([[0, 1, 2], [2, 3, 4]])
    uvs, uv_faces = np.random.default_rng(1).random((4, 2)), np.array([[0, 1, 2], [1, 2, 3]])
    v, f, t, tf = read_obj(write_obj(tmp_path / "m.obj", verts, faces, uvs, uv_faces))
    np.testing.assert_allclose(v, verts, atol=1e-6)
    np.testing.assert_allclose(t, uvs, atol=1e-6)
    np.testing.assert_array_equal(f, faces)
    np.testing.assert_array_equal(tf, uv_faces)


def _with_json(data: bytes, text: bytes) -> bytes:
    """The .glb `data` with its JSON chunk replaced by `text` (padded with spaces), lengths fixed up."""
    n = struct.unpack_from("<I", data, 12)[0]
    text += b" " * (-len(text) % 4)
    rest = data[20 + n :]
    return (
        struct.pack("<III", 0x46546C67, 2, 20 + len(text) + len(rest))
        + struct.pack("<II", len(text), 0x4E4F534A)
        + text
        + rest
    )


def _json_of(data: bytes) -> dict:
    return json.loads(data[20 : 20 + struct.unpack_from("<I", data, 12)[0]])


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda doc: b'{"asset": {"version": "2.0"}, "x": "caf\xe9"}', "UnicodeDecodeError"),
        (lambda doc: json.dumps({k: v for k, v in doc.items() if k != "buffers"}).encode(), "KeyError"),
        (lambda doc: json.dumps({**doc, "meshes": 7}).encode(), "TypeError"),
        (lambda doc: b"{not json", "JSONDecodeError"),
    ],
    ids=["not-utf8", "no-buffers", "meshes-not-a-list", "not-json"],
)
def test_malformed_glb_documents_are_input_errors(tmp_path, edit, match):
    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    data = glb_bytes(positions, np.array([[0, 1, 2]]))
    bad = _with_json(data, edit(_json_of(data)))
    with pytest.raises(InputError, match=match):
        read_glb(bad)
    (tmp_path / "edits.glb").write_bytes(bad)
    with pytest.raises(InputError, match="edits.glb"):
        read_glb(tmp_path / "edits.glb")


def _png_header(width: int, height: int) -> bytes:
    """A greyscale PNG whose IHDR claims width x height, followed by one tiny IDAT and IEND."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_corrupt_uv_mask_is_an_input_error(tmp_path):
    path = tmp_path / "uv_face_eye_mask.png"
    path.write_bytes(_png_header(256, 256)[:40] + b"\x00" * 30)
    with pytest.raises(InputError, match="UV mask .*uv_face_eye_mask.png"):
        read_uv_mask(path)


def test_a_uv_mask_claiming_a_huge_image_is_refused_with_bounded_memory(tmp_path):
    path = tmp_path / "uv_face_eye_mask.png"
    path.write_bytes(_png_header(60_000, 60_000))  # 3.6 G pixels in 120 bytes
    assert 60_000 * 60_000 > MAX_MASK_PIXELS and path.stat().st_size < 200
    H.assert_refused(H.measure_load(path, "faceedit_core.next3d.topology.read_uv_mask"), "uv_face_eye_mask.png")
    path.write_bytes(_png_header(5_000, 5_000))  # above the cap, below PIL's own decompression-bomb error
    H.assert_refused(H.measure_load(path, "faceedit_core.next3d.topology.read_uv_mask"), "the limit is")
