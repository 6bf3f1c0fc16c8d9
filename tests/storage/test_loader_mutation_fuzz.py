"""A seeded mutation fuzz of every file loader (issue 20): valid files with bytes cut off, flipped,
inserted, deleted or repeated either load or raise FaceEdit's own errors, never a KeyError,
UnicodeDecodeError, ValueError or a library's own exception."""

from __future__ import annotations

import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
from PIL import Image

from faceedit_core.errors import FaceEditError
from faceedit_core.flame import load_flame_model, load_landmark_embedding
from faceedit_core.flame.io import save_flame_model, save_landmark_embedding
from faceedit_core.next3d.checkpoint import read_release_pickle
from faceedit_core.next3d.topology import read_uv_mask
from faceedit_core.paper.weights_file import read_state_dict
from faceedit_core.storage import checkpoints
from faceedit_core.storage.gltf import read_glb, write_glb
from faceedit_core.storage.mesh_io import read_obj, write_obj
from tests.helpers import hostile_files as H
from tests.helpers.flame import random_flame
from tests.next3d.test_next3d_hostile import _param

MUTATIONS = 50  # per file and test run; the seed is the file's name, so a failure reproduces


def _flame_pickle(path: Path) -> Path:
    model, _ = random_flame()
    data = {k: getattr(model, k).astype(np.float64) for k in ("v_template", "shapedirs", "posedirs", "weights")}
    data.update(
        kintree_table=np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
        f=model.f.astype(np.uint32),
        J_regressor=scipy.sparse.csc_matrix(model.J_regressor.astype(np.float64)),
    )
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def _obj(path: Path) -> Path:
    model, _ = random_flame()
    uvs = np.random.default_rng(0).random((len(model.v_template), 2))
    return write_obj(path, model.v_template, model.f, uvs, model.f)


def _glb(path: Path) -> Path:
    model, _ = random_flame()
    verts = model.v_template.astype(np.float32)
    return write_glb(path, verts, model.f.astype(np.uint32), [("smile", np.full_like(verts, 0.01))])


def _weights(path: Path) -> Path:
    torch.save({"w": torch.randn(4, 4), "b": torch.randn(4).half()}, path)
    return path


def _release(path: Path) -> Path:
    w = torch.arange(6.0).reshape(2, 3)
    state = {"_parameters": {"w": _param(w)}, "_modules": {"sub": H.persistent({"_parameters": {"b": _param(w[0])}})}}
    path.write_bytes(H.release_pickle(state))
    return path


def _uv_mask(path: Path) -> Path:
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(path)
    return path


# {file name: (writer of a valid file at a path, loader of a path)}
SINGLE_FILES = {
    "generic_model.pkl": (_flame_pickle, load_flame_model),
    "flame.npz": (lambda p: save_flame_model(random_flame()[0], p), load_flame_model),
    "landmarks.npz": (lambda p: save_landmark_embedding(random_flame()[1], p), load_landmark_embedding),
    "head_template.obj": (_obj, read_obj),
    "edits.glb": (_glb, read_glb),
    "ViT-B-32.pt": (_weights, read_state_dict),
    "next3d.pkl": (_release, read_release_pickle),
    "uv_face_eye_mask.png": (_uv_mask, read_uv_mask),
}


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random damage of `data`: cut short, bytes overwritten, inserted, deleted or one repeated."""
    i = rng.randrange(len(data))
    kind = rng.randrange(5)
    if kind == 0:
        return data[:i]
    if kind == 1:
        out = bytearray(data)
        for j in rng.sample(range(len(data)), min(len(data), rng.randint(1, 8))):
            out[j] = rng.randrange(256)
        return bytes(out)
    if kind == 2:
        return data[:i] + rng.randbytes(rng.randint(1, 16)) + data[i:]
    if kind == 3:
        return data[:i] + data[i + rng.randint(1, 64) :]
    return data[:i] + data[i : i + 1] * rng.randint(2, 9) + data[i + 1 :]


def assert_own_errors_only(load, path: Path, original: bytes, rng: random.Random) -> None:
    for n in range(MUTATIONS):
        path.write_bytes(mutate(original, rng))
        try:
            load(path)
        except FaceEditError:
            pass
        except Exception as exc:  # noqa: BLE001 - what is under test: nothing else may come out
            raise AssertionError(f"mutation {n} of {path.name}: {type(exc).__name__}: {exc}") from exc


@pytest.mark.parametrize("name", list(SINGLE_FILES))
def test_damaged_files_load_or_raise_faceedit_errors_only(tmp_path, name):
    write, load = SINGLE_FILES[name]
    path = write(tmp_path / name)
    load(path)  # the undamaged file loads
    assert_own_errors_only(load, path, path.read_bytes(), random.Random(name))


@pytest.mark.parametrize("part", ["manifest", "weights"])
def test_damaged_checkpoints_load_or_raise_faceedit_errors_only(tmp_path, part):
    checkpoints.save(tmp_path / "good" / "ck", {"a": torch.randn(3, 4), "b": torch.arange(5)}, {"kind": "test"})
    shutil.copytree(tmp_path / "good", tmp_path / "bad")
    stem = tmp_path / "bad" / "ck"
    path = checkpoints.manifest_path(stem) if part == "manifest" else checkpoints.weights_path(stem)
    assert_own_errors_only(lambda _: checkpoints.load(stem), path, path.read_bytes(), random.Random(part))
