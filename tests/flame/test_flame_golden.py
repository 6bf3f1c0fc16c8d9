"""The FLAME layer reproduces DECA / FLAME_PyTorch outputs on the golden synthetic model."""

import json

import numpy as np
import pytest
import torch

from faceedit_core.flame import FlameLayer, load_flame_model, load_landmark_embedding
from faceedit_core.flame.landmarks import contour_rows
from faceedit_core.params import FlameParams

MODEL_FILES = [
    "synthetic_flame_sparse.pkl",
    "synthetic_flame_dense.pkl",
    "synthetic_flame_chumpy.pkl",
    "synthetic_flame.npz",
]


def _cases(golden_flame_dir):
    data = np.load(golden_flame_dir / "flame_cases.npz")
    names = [c["name"] for c in json.loads((golden_flame_dir / "flame_cases_index.json").read_text())["cases"]]
    return data, names


def _params(data, name, with_transl):
    g = lambda k: torch.from_numpy(data[f"{name}__{k}"])  # noqa: E731
    pose = g("pose_params")
    transl = g("transl") if with_transl else torch.zeros(pose.shape[0], 3)
    return FlameParams(
        g("shape_params"), g("expression_params"), pose[:, :3], g("neck_pose"), pose[:, 3:], g("eye_pose"), transl
    )


@pytest.mark.parametrize("model_file", MODEL_FILES)
def test_matches_deca_on_every_case(golden_flame_dir, model_file):
    layer = FlameLayer(
        load_flame_model(golden_flame_dir / model_file),
        load_landmark_embedding(golden_flame_dir / "landmark_embedding.npy"),
    )
    data, names = _cases(golden_flame_dir)
    assert len(names) == 11
    for name in names:
        p = _params(data, name, with_transl=False)
        out = layer(p)
        for ours, ref in [
            (out.vertices, "deca_vertices"),
            (out.joints, "deca_joints"),
            (out.landmarks, "deca_landmarks2d"),
            (out.landmarks_full, "deca_landmarks3d"),
        ]:
            np.testing.assert_allclose(
                ours.numpy(), data[f"{name}__{ref}"], atol=1e-6, rtol=0, err_msg=f"{name}: {ref}"
            )
        assert contour_rows(p.global_pose, p.neck_pose).tolist() == data[f"{name}__deca_dyn_row"].tolist(), name


def test_translation_and_static_landmarks_match_flame_pytorch(golden_flame_dir):
    layer = FlameLayer(
        load_flame_model(golden_flame_dir / "synthetic_flame_sparse.pkl"),
        load_landmark_embedding(
            golden_flame_dir / "flame_static_embedding.pkl", golden_flame_dir / "flame_dynamic_embedding.npy"
        ),
    )
    data, names = _cases(golden_flame_dir)
    for name in names:
        out = layer(_params(data, name, with_transl=True))
        np.testing.assert_allclose(out.vertices.numpy(), data[f"{name}__fp_vertices"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(out.landmarks[:, 17:].numpy(), data[f"{name}__fp_landmarks51"], atol=1e-6, rtol=0)


def test_float64_matches_deca64(golden_flame_dir):
    layer = FlameLayer(
        load_flame_model(golden_flame_dir / "synthetic_flame_sparse.pkl"),
        load_landmark_embedding(golden_flame_dir / "landmark_embedding.npy"),
    ).double()
    data, names = _cases(golden_flame_dir)
    for name in names:
        out = layer(_params(data, name, with_transl=False).to(dtype=torch.float64))
        np.testing.assert_allclose(out.vertices.numpy(), data[f"{name}__deca64_vertices"], atol=1e-7, rtol=0)
        np.testing.assert_allclose(out.landmarks.numpy(), data[f"{name}__deca64_landmarks2d"], atol=1e-7, rtol=0)


def test_both_landmark_layouts_agree(golden_flame_dir):
    deca = load_landmark_embedding(golden_flame_dir / "landmark_embedding.npy")
    ringnet = load_landmark_embedding(
        golden_flame_dir / "flame_static_embedding.pkl", golden_flame_dir / "flame_dynamic_embedding.npy"
    )
    plain = np.load(golden_flame_dir / "landmark_embedding_plain.npz")
    np.testing.assert_array_equal(deca.static_faces, ringnet.static_faces)
    np.testing.assert_array_equal(deca.dynamic_faces, ringnet.dynamic_faces)
    np.testing.assert_array_equal(deca.dynamic_faces, plain["dynamic_lmk_faces_idx"])
    np.testing.assert_allclose(deca.full_bary, plain["full_lmk_bary_coords"][0])
