"""The demo head cache (hash-checked, rebuilt when corrupt), user model folders, OBJ export."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from faceedit_core.cli import main
from faceedit_core.errors import InputError
from faceedit_core.flame.default_head import demo_head
from faceedit_core.storage.mesh_io import read_obj, write_obj
from faceedit_core.storage.models_dir import ModelsDir


def test_cache_round_trip_and_corruption_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEEDIT_HOME", str(tmp_path))
    first = demo_head()
    manifest = json.loads((first.folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"flame.npz", "landmarks.npz"}
    again = demo_head()
    assert again.content_hash == first.content_hash
    np.testing.assert_array_equal(again.model.shapedirs, first.model.shapedirs)
    (first.folder / "flame.npz").write_bytes(b"garbage")  # a corrupted cache file is rebuilt, not used
    rebuilt = demo_head()
    np.testing.assert_array_equal(rebuilt.model.v_template, first.model.v_template)


def test_models_dir_says_what_is_missing(tmp_path):
    (tmp_path / "flame").mkdir()
    (tmp_path / "flame" / "generic_model.pkl").write_bytes(b"x")
    md = ModelsDir(tmp_path)
    assert md.present()["flame"].endswith("generic_model.pkl")
    assert md.present()["next3d"] is None
    text = md.describe()
    assert "found" in text and "MISSING: put the Next3D checkpoint" in text


def test_obj_round_trip(tmp_path):
    verts = np.random.default_rng(0).normal(size=(10, 3))
    faces = np.array([[0, 1, 2], [2, 3, 4]])
    uvs = np.random.default_rng(1).uniform(size=(6, 2))
    uv_faces = np.array([[0, 1, 2], [3, 4, 5]])
    v, f, t, tf = read_obj(write_obj(tmp_path / "m.obj", verts, faces, uvs, uv_faces))
    np.testing.assert_allclose(v, verts, atol=1e-6)
    np.testing.assert_array_equal(f, faces)
    np.testing.assert_allclose(t, uvs, atol=1e-6)
    np.testing.assert_array_equal(tf, uv_faces)
    with pytest.raises(InputError, match="NaN"):
        write_obj(tmp_path / "bad.obj", verts * np.nan, faces)


def test_cli_export_writes_an_expression(tmp_path):
    runner = CliRunner()
    neutral, smile = tmp_path / "n.obj", tmp_path / "s.obj"
    assert runner.invoke(main, ["head", "export", "--out", str(neutral)]).exit_code == 0
    result = runner.invoke(main, ["head", "export", "--expression", "lip_corner_pull=1", "--out", str(smile)])
    assert result.exit_code == 0, result.output
    vn, _, tn, _ = read_obj(neutral)
    vs, _, _, _ = read_obj(smile)
    assert tn is not None and 0.002 < np.abs(vs - vn).max() < 0.02
    bad = runner.invoke(main, ["head", "export", "--expression", "grin=1", "--out", str(smile)])
    assert bad.exit_code != 0 and "unknown expression component 'grin'" in bad.output


def test_cli_info(tmp_path):
    result = CliRunner().invoke(main, ["head", "info"])
    assert result.exit_code == 0, result.output
    assert "eyes_closed" in result.output and "AU12" in result.output
