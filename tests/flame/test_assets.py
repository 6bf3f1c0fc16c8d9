"""The procedural head's cache (hash-checked, rebuilt when corrupt), the default head on the command line,
user model folders, OBJ export."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from faceedit_core.cli import main
from faceedit_core.errors import InputError
from faceedit_core.flame.default_head import demo_head, procedural_head
from faceedit_core.storage.mesh_io import read_obj, write_obj
from faceedit_core.storage.models_dir import ModelsDir


def test_cache_round_trip_and_corruption_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEEDIT_HOME", str(tmp_path))
    first = procedural_head()
    manifest = json.loads((first.folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"flame.npz", "landmarks.npz"}
    again = procedural_head()
    assert again.content_hash == first.content_hash
    np.testing.assert_array_equal(again.model.shapedirs, first.model.shapedirs)
    (first.folder / "flame.npz").write_bytes(b"garbage")  # a corrupted cache file is rebuilt, not used
    rebuilt = procedural_head()
    np.testing.assert_array_equal(rebuilt.model.v_template, first.model.v_template)


def test_the_default_head_is_the_ict_head_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEEDIT_HOME", str(tmp_path))
    head = demo_head()
    assert head.parameterisation == "semantic" and head.model.n_verts == 26719 and head.ict is not None
    assert head.coefficients == "activations" and len(head.components) == head.model.n_exp == 52
    assert head.model.n_shape == 100 and "mouthSmile_L" in {c.name for c in head.components}
    pca = demo_head("pca")
    assert pca.coefficients == "pca" and pca.model.n_exp == 50 and pca.content_hash != head.content_hash
    assert demo_head().content_hash == head.content_hash and not any(tmp_path.iterdir())


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
    neutral, smile, jaw = tmp_path / "n.obj", tmp_path / "s.obj", tmp_path / "j.obj"
    assert runner.invoke(main, ["head", "export", "--out", str(neutral)]).exit_code == 0
    result = runner.invoke(main, ["head", "export", "--expression", "mouthSmile_L=1", "--out", str(smile)])
    assert result.exit_code == 0, result.output
    vn, _, tn, _ = read_obj(neutral)
    vs, _, _, _ = read_obj(smile)
    moved = np.linalg.norm(vs - vn, axis=1)
    assert tn is not None and 0.002 < moved.max() < 0.02
    assert vn[moved.argmax(), 0] > 0  # mouthSmile_L moves the subject's left (+x)
    result = runner.invoke(main, ["head", "export", "--expression", "jawOpen=1", "--out", str(jaw)])
    assert result.exit_code == 0, result.output
    chin = demo_head().ict.landmark_vertices[8]
    assert read_obj(jaw)[0][chin, 1] < vn[chin, 1] - 0.01  # jawOpen is the jaw joint: the chin drops
    bad = runner.invoke(main, ["head", "export", "--expression", "grin=1", "--out", str(smile)])
    assert bad.exit_code != 0 and "unknown expression component 'grin'" in bad.output


def test_cli_info_lists_the_ict_components_with_sides():
    result = CliRunner().invoke(main, ["head", "info"])
    assert result.exit_code == 0, result.output
    assert "ICT Face Model" in result.output and "26719" in result.output
    rows = [re.match(r"\s+(\d+): (\S+)\s+(\S)\s+(\S+)", line) for line in result.output.splitlines()]
    lines = {m.group(2): list(m.groups()) for m in rows if m}
    assert lines["mouthSmile_L"][2:4] == ["L", "AU12"] and lines["eyeBlink_R"][2] == "R"
    assert len(lines) == 52 and "jawOpen" not in lines
    pca = CliRunner().invoke(main, ["head", "info", "--parameterisation", "pca"])
    assert pca.exit_code == 0 and "pca49" in pca.output
