"""The ICT Face Model head (faceedit_core.flame.ict): asset, layout, rig, landmarks, PCA, colours.

Figures checked against the bounds stated in docs/ict_head.md. The conversion test needs the
upstream mirror (a bare git directory) and skips without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from faceedit_core.flame import ict_pca
from faceedit_core.flame.ict import load_ict_head
from faceedit_core.flame.ict_asset import DATA_DIR, array_digest, read_asset, sparse_unpack
from faceedit_core.flame.layer import FlameLayer
from faceedit_core.params import FlameParams
from faceedit_core.render.ict_materials import part_colours, render_faces

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("ICT_FACEKIT_MIRROR", "/work/.mirror/ICT-VGL+ICT-FaceKit/repo"))
V, F = 26719, 52220
# bounds documented in docs/ict_head.md
JAW_BOUND_MAX_M = 0.0005  # jaw joint (with its corrective) vs jawOpen, any vertex
JAW_RIGID_ONLY_RMS_M = 0.004  # skinning alone (no corrective) vs jawOpen, face RMS
PCA_MIX_MAX_M = 0.0002  # 50 PCA components vs held-out semantic mixes, any vertex
PCA_UNIT_MAX_M = 0.001  # 50 PCA components vs each single semantic shape, any vertex
FLOAT16_MAX_M = 0.00002  # stored offsets vs upstream
ASSET_MAX_BYTES = 25 * 10**6


@pytest.fixture(scope="module")
def sem():
    return load_ict_head("semantic")


@pytest.fixture(scope="module")
def pca():
    return load_ict_head("pca")


@pytest.fixture(scope="module")
def asset():
    return read_asset()


def run_layer(head, expression=None, jaw=None, global_pose=None, posedirs=True):
    model = head.model
    if not posedirs:
        model = type(model)(**{**model.__dict__, "posedirs": np.zeros_like(model.posedirs)})
    layer = FlameLayer(model, head.landmarks)
    p = FlameParams.zeros(1, layer.n_shape, layer.n_exp)
    if expression is not None:
        p.expression[0] = torch.as_tensor(expression, dtype=torch.float32)
    if jaw is not None:
        p.jaw_pose[0] = torch.as_tensor(jaw, dtype=torch.float32)
    if global_pose is not None:
        p.global_pose[0] = torch.as_tensor(global_pose, dtype=torch.float32)
    with torch.no_grad():
        out = layer(p)
    return {k: getattr(out, k)[0].double().numpy() for k in ("vertices", "joints", "landmarks", "landmarks_full")}


def upstream_delta(asset, name: str) -> np.ndarray:
    arrays, manifest = asset
    col = manifest["expression_names"].index(name)
    delta = sparse_unpack(arrays["exp_index"], arrays["exp_delta"], arrays["exp_ptr"], V, [col])
    return delta[:, :, 0].astype(np.float64)


# ------------------------------------------------------------------------------------ layout
@pytest.mark.parametrize(
    "param,flame_widths,n_shape,width,n_live",
    [("semantic", False, 100, 52, 52), ("pca", False, 100, 50, 50), ("semantic", True, 300, 100, 52)]
    + [("pca", True, 300, 50, 50)],
)
def test_both_parameterisations_have_flame_layout(param, flame_widths, n_shape, width, n_live):
    """Compact by default (100 identity + the live expression columns); flame_widths=True pads to
    FLAME's 300 + 100 (or + 50) for tools that only read those widths."""
    head = load_ict_head(param, flame_widths=flame_widths)
    m = head.model.validate()
    assert m.v_template.shape == (V, 3) and m.f.shape == (F, 3) and m.ft.shape == (F, 3)
    assert m.shapedirs.shape == (V, 3, n_shape + width) and m.n_shape == n_shape and m.n_exp == width
    assert m.posedirs.shape == (V, 3, 36) and m.J_regressor.shape == (5, V) and m.weights.shape == (V, 5)
    assert m.parents.tolist() == [-1, 0, 1, 1, 1]
    assert m.vt.shape[1] == 2 and 0 <= m.ft.min() and m.ft.max() < len(m.vt)
    assert np.allclose(m.weights.sum(1), 1, atol=1e-5) and m.weights.min() >= -1e-6
    # identity in columns 0..99 (zeros up to n_shape); live expressions first, zeros past them
    assert np.abs(m.shapedirs[:, :, :100]).max(axis=(0, 1)).min() > 0
    assert np.abs(m.shapedirs[:, :, 100:n_shape]).max(initial=0) == 0
    live = np.abs(m.shapedirs[:, :, n_shape:]).max(axis=(0, 1))
    assert (live[:n_live] > 0).all() and (live[n_live:] == 0).all()
    assert head.n_exp == n_live == len(head.components)
    head.landmarks.validate(n_faces=F)
    layer = FlameLayer(m, head.landmarks)
    assert (layer.n_shape, layer.n_exp) == (n_shape, width)


def test_padded_and_compact_heads_pose_alike(sem):
    wide = load_ict_head("semantic", flame_widths=True)
    w = {"mouthSmile_L": 0.8, "browInnerUp_L": 0.5, "eyeBlink_R": 1.0}
    a = run_layer(sem, expression=sem.expression_vector(w), jaw=sem.jaw_pose(0.4))["vertices"]
    b = run_layer(wide, expression=wide.expression_vector(w), jaw=wide.jaw_pose(0.4))["vertices"]
    assert np.abs(a - b).max() < 1e-7
    assert sem.model.shapedirs.nbytes == V * 3 * 152 * 4  # 48.7 MB, not the padded 128 MB


def test_compact_layout_and_n_exp():
    head = load_ict_head("pca", n_exp=20)
    assert head.model.shapedirs.shape == (V, 3, 120) and head.n_exp == 20
    assert load_ict_head("semantic", n_exp=10).model.shapedirs.shape == (V, 3, 110)
    assert load_ict_head("semantic", n_exp=10, flame_widths=True).model.shapedirs.shape == (V, 3, 350)
    with pytest.raises(ValueError, match="n_exp"):
        load_ict_head("pca", n_exp=60)
    with pytest.raises(ValueError, match="parameterisation"):
        load_ict_head("blend")


def test_loader_returns_fresh_arrays(sem):
    """(Its speed is a benchmark: benchmarks/bench_ict_head.py, docs/performance.md.)"""
    again = load_ict_head("semantic")
    again.model.v_template[0] += 1.0
    again.model.shapedirs[0, 0, 0] += 1.0
    assert not np.shares_memory(again.model.shapedirs, sem.model.shapedirs)
    assert again.model.v_template[0, 0] != sem.model.v_template[0, 0]
    assert again.model.shapedirs[0, 0, 0] != sem.model.shapedirs[0, 0, 0]


def test_asset_size_and_licence():
    total = sum(p.stat().st_size for p in DATA_DIR.iterdir() if p.is_file())
    assert total <= ASSET_MAX_BYTES, f"data/ict holds {total / 1e6:.1f} MB"
    licence = (DATA_DIR / "LICENSE").read_text()
    assert "MIT License" in licence and "USC Institute for Creative Technologies" in licence


def test_stored_arrays_match_manifest_digests(asset):
    arrays, manifest = asset
    assert array_digest(arrays) == manifest["arrays_sha256"]


# ------------------------------------------------------------------------------ units, axes
def test_units_are_metres(sem):
    v = sem.model.v_template
    eye_y = sem.model.J_regressor[3] @ v
    skull = v[sem.part_mask("face", "head_neck") & (v[:, 1] > eye_y[1] + 0.02)]
    width = skull[:, 0].max() - skull[:, 0].min()
    assert 0.14 <= width <= 0.2, width
    eyes = sem.model.J_regressor[3:5] @ v
    assert 0.05 <= np.linalg.norm(eyes[0] - eyes[1]) <= 0.075  # interpupillary distance


def test_axes_are_flames(sem):
    v = sem.model.v_template
    lm = sem.landmark_vertices
    assert np.linalg.norm(v[np.argmax(v[:, 2])] - v[lm[30]]) < 0.005  # nose tip is the front-most point
    top = v[np.argmax(v[:, 1])]
    assert abs(top[0]) < 0.01 and top[1] > v[lm[27], 1] + 0.05  # crown on top, on the midline
    assert v[sem.part_mask("eyeball_left")][:, 0].min() > 0  # left eye at +x
    assert (sem.model.J_regressor[3] @ v)[0] > 0 > (sem.model.J_regressor[4] @ v)[0]
    assert v[lm[45], 0] > 0 > v[lm[36], 0]  # iBUG 45 is the left eye's corner


# --------------------------------------------------------------------------------- landmarks
def test_landmarks_sit_on_upstream_vertices(sem, asset):
    out = run_layer(sem)
    v = sem.model.v_template.astype(np.float64)
    ids = np.array(asset[1]["landmarks68"])
    assert np.abs(out["landmarks_full"] - v[ids]).max() < 1e-6
    assert np.abs(out["landmarks"][17:] - v[ids[17:]]).max() < 1e-6
    assert np.abs(out["landmarks"][:17] - v[ids[:17]]).max() < 1e-6  # row 0: frontal contour
    face = sem.part_labels.index("face")
    assert (sem.face_part[sem.landmarks.full_faces] == face).all()
    assert (sem.face_part[sem.landmarks.dynamic_faces] == face).all()
    if (MIRROR / "HEAD").exists():
        readme = _git_show("README.md").decode()
        listed = readme.split("Multi-PIE 68 point facial landmarks indices:")[1].strip().split("\n")[0]
        assert [int(x) for x in listed.split(",")] == ids.tolist()


def test_dynamic_contour_follows_the_silhouette(sem):
    """Head turned +30 deg about y (towards its left): the contour on the far side (+x, points
    11..15) slides forwards, the near side's (points 1..5) backwards towards the ear; points
    6..10 (no jawline substitute, around the chin) stay."""
    rest = run_layer(sem)["landmarks"][:17]
    yaw = np.radians(30)
    out = run_layer(sem, global_pose=[0, yaw, 0])
    root = out["joints"][0]
    R = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    back = (out["landmarks"][:17] - root) @ R + root  # undo the turn (about the root joint)
    far, near = slice(11, 16), slice(1, 6)
    assert (back[far, 2] - rest[far, 2]).mean() > 0.002
    assert (back[near, 2] - rest[near, 2]).mean() < -0.002
    assert np.abs(back[6:11] - rest[6:11]).max() < 1e-6
    out = run_layer(sem, global_pose=[0, -yaw, 0])
    mirrored = (out["landmarks"][:17] - root) @ R.T + root
    assert np.abs(mirrored[::-1] * [-1, 1, 1] - back).max() < 0.002  # symmetric


# --------------------------------------------------------------------------------------- jaw
def test_jaw_rotation_moves_lower_teeth_rigidly(sem):
    v = sem.model.v_template.astype(np.float64)
    posed = run_layer(sem, jaw=sem.jaw_pose(0.7))["vertices"]
    upper, lower = sem.part_mask("teeth_upper"), sem.part_mask("teeth_lower")
    assert np.abs(posed[upper] - v[upper]).max() < 1e-7
    moved = np.linalg.norm(posed[lower] - v[lower], axis=1)
    assert moved.min() > 0.002
    idx = np.random.default_rng(0).choice(np.nonzero(lower)[0], 300, replace=False)
    d0 = np.linalg.norm(v[idx, None] - v[None, idx], axis=-1)
    d1 = np.linalg.norm(posed[idx, None] - posed[None, idx], axis=-1)
    assert np.abs(d1 - d0).max() < 1e-6
    eyes = sem.part_mask("eyeball_left", "eyeball_right")
    assert np.abs(posed[eyes] - v[eyes]).max() < 1e-7
    # the jaw opens downwards with a positive angle about the fitted (+x) axis
    assert sem.jaw_axis[0] > 0.99 and sem.jaw_open_angle > 0
    assert posed[sem.landmark_vertices[8], 1] < v[sem.landmark_vertices[8], 1] - 0.01


def test_jaw_joint_reproduces_jaw_open(sem, asset):
    target = sem.model.v_template.astype(np.float64) + upstream_delta(asset, "jawOpen")
    posed = run_layer(sem, jaw=sem.jaw_pose(1.0))["vertices"]
    err = np.linalg.norm(posed - target, axis=1)
    assert err.max() < JAW_BOUND_MAX_M, err.max()
    rigid = run_layer(sem, jaw=sem.jaw_pose(1.0), posedirs=False)["vertices"]
    face = sem.part_mask("face")
    rms = np.sqrt(np.mean(np.linalg.norm(rigid - target, axis=1)[face] ** 2))
    assert rms < JAW_RIGID_ONLY_RMS_M, rms
    figures = asset[1]["figures"]["rig"]
    assert abs(rms - figures["lbs_only_face_rms_m"]) < 2e-5
    half = run_layer(sem, jaw=sem.jaw_pose(0.5))["vertices"]
    chin = sem.landmark_vertices[8]
    assert target[chin, 1] < half[chin, 1] < sem.model.v_template[chin, 1]  # halfway is in between


def test_jaw_open_is_not_an_expression_column(sem):
    assert "jawOpen" not in [c.name for c in sem.components]
    with pytest.raises(ValueError, match="jaw"):
        sem.expression_vector({"jawOpen": 1.0})


# ------------------------------------------------------------------------------ expressions
def test_semantic_metadata(sem):
    by = {c.name: c for c in sem.components}
    assert by["mouthSmile_L"].facs == ("AU12",) and by["mouthSmile_L"].side == "L"
    assert by["eyeLookOut_L"].facs == ("AU61",) and by["eyeLookIn_L"].facs == ("AU62",)
    assert by["mouthPucker"].side == "" and by["mouthClose"].facs == ()
    for c in sem.components:
        assert c.region.shape == (V,) and 0 <= c.region.min() and c.region.max() == pytest.approx(1)
    assert [c.index for c in sem.components] == list(range(52))


def test_smile_left_moves_the_left_corner(sem):
    v = sem.model.v_template.astype(np.float64)
    out = run_layer(sem, expression=sem.expression_vector({"mouthSmile_L": 1.0}))["vertices"]
    left, right = sem.landmark_vertices[54], sem.landmark_vertices[48]
    assert v[left, 0] > 0 > v[right, 0]
    moved = np.linalg.norm(out - v, axis=1)
    assert moved[left] > 3 * moved[right] and moved[left] > 0.003
    assert out[left, 1] > v[left, 1]  # the corner rises


def test_blink_closes_both_eyes(sem):
    v = sem.model.v_template.astype(np.float64)
    lm = sem.landmark_vertices
    out = run_layer(sem, expression=sem.expression_vector({"eyeBlink_L": 1, "eyeBlink_R": 1}))["vertices"]
    for top, bottom in ((43, 47), (38, 40)):
        assert v[lm[top], 1] - v[lm[bottom], 1] > 0.004
        assert abs(out[lm[top], 1] - out[lm[bottom], 1]) < 0.0015


def test_pca_basis_is_orthogonal_and_scaled(pca):
    B = pca.model.shapedirs[:, :, 100:150].reshape(-1, 50).astype(np.float64)
    G = B.T @ B
    d = np.sqrt(np.diag(G))
    off = G / np.outer(d, d) - np.eye(50)
    assert np.abs(off).max() < 1e-4
    W = ict_pca.sample_weights(pca.semantic_names, 2000, seed=99)
    c = pca.semantic_coefficients(W)
    assert np.mean(np.abs(c) <= 3) > 0.99  # [-3, 3] covers them
    assert np.abs(c).max(0).min() > 1.0  # and each is used
    energy = np.mean(c**2, axis=0) * np.diag(G)  # held-out samples' energy
    assert (np.diff(energy) < 0).sum() >= 40 and energy[0] > 5 * energy[10]  # in decreasing order


def test_pca_reproduces_semantic_combinations(pca, sem):
    S = sem.model.shapedirs[:, :, 100:152].reshape(-1, 52).astype(np.float64)
    B = pca.model.shapedirs[:, :, 100:150].reshape(-1, 50).astype(np.float64)
    W = ict_pca.sample_weights(pca.semantic_names, 100, seed=7)
    err = np.linalg.norm(((W @ S.T) - pca.semantic_coefficients(W) @ B.T).reshape(len(W), -1, 3), axis=2)
    assert err.max() < PCA_MIX_MAX_M, err.max()
    unit = np.linalg.norm((S.T - pca.semantic_coefficients(np.eye(52)) @ B.T).reshape(52, -1, 3), axis=2)
    assert unit.max() < PCA_UNIT_MAX_M, unit.max()
    # a component moves many shapes at once (entangled, like FLAME's expression space)
    assert (np.abs(pca.pca_mix[:, :5]) > 0.05 * np.abs(pca.pca_mix[:, :5]).max(0)).sum(0).min() >= 4
    via_names = pca.expression_vector({"mouthSmile_L": 1.0})[:50]
    one_hot = np.eye(52)[pca.semantic_names.index("mouthSmile_L")]
    assert np.allclose(via_names, pca.semantic_coefficients(one_hot), atol=1e-5)


def test_float16_error_within_bound(asset):
    fig = asset[1]["figures"]["float16"]
    assert max(f["max_vertex_m"] for f in fig.values()) < FLOAT16_MAX_M


# ------------------------------------------------------------------------------------ colours
def test_part_colours_and_render_faces(sem):
    col = part_colours(sem)
    assert col.shape == (V, 3) and col.min() >= 0 and col.max() <= 1
    keep = render_faces(sem)
    assert keep.shape == (F,)
    for name in ("lacrimal_fluid_left", "eye_blend_right", "eye_occlusion_left"):
        assert not keep[sem.face_part == sem.part_labels.index(name)].any()
    for name in ("face", "teeth_upper", "sclera_left", "gums_tongue"):
        assert keep[sem.face_part == sem.part_labels.index(name)].all()
    lm = sem.landmark_vertices
    lip, cheek = col[lm[51]], col[lm[3]]
    assert lip[0] - lip[1] > cheek[0] - cheek[1] + 0.05  # lips redder than skin
    sclera = col[sem.part_mask("sclera_left")]
    assert sclera.sum(1).min() < 0.3 and sclera.sum(1).max() > 2.4  # pupil dark, sclera white


# ---------------------------------------------------------------------------------- conversion
def _git_show(path: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(MIRROR), "show", f"HEAD:{path}"], check=True, capture_output=True
    ).stdout


@pytest.mark.slow
def test_conversion_reproduces_committed_asset(tmp_path, asset):
    if not (MIRROR / "HEAD").exists():
        pytest.skip(
            f"upstream mirror {MIRROR} is absent (set ICT_FACEKIT_MIRROR to a bare clone of ICT-VGL/ICT-FaceKit)"
        )
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tools" / "ict" / "convert_ict.py"),
            "--repo",
            str(MIRROR),
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    arrays, manifest = read_asset(tmp_path)
    committed, committed_manifest = asset
    assert sorted(arrays) == sorted(committed)
    for k in arrays:
        assert arrays[k].dtype == committed[k].dtype and arrays[k].shape == committed[k].shape, k
        assert np.array_equal(arrays[k], committed[k]), k
    assert manifest["arrays_sha256"] == committed_manifest["arrays_sha256"]
    assert manifest["source"] == committed_manifest["source"]
    assert (tmp_path / "LICENSE").read_bytes() == (DATA_DIR / "LICENSE").read_bytes()
    assert json.loads((tmp_path / "manifest.json").read_text())["figures"] == committed_manifest["figures"]


def test_the_asset_is_package_data():
    """A wheel leaves non-Python files out unless pyproject names them."""
    import tomllib

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = Path(REPO_ROOT / "faceedit_core" / "flame")
    patterns = config["faceedit_core.flame"]
    for name in ("ict_head.npz", "manifest.json", "LICENSE"):
        assert any((package / "data" / "ict" / name).match(str(package / p)) for p in patterns), name
