"""The preview tier on a user's FLAME file (`--flame`): the FLAME-format stand-in written as FLAME 2020 /
2023 files, read through the loader users' files take, chosen by the factory, edited from text with
sides and the jaw; the errors name the file and what is wrong."""

import pickle

import numpy as np
import pytest
import torch

from faceedit_core.au.critic import asymmetry, target_met
from faceedit_core.editor import PAPER_PROMPTS
from faceedit_core.errors import InputError, MissingModelError
from faceedit_core.factory import build_editor, preflight
from faceedit_core.params import FlameParams
from faceedit_core.preview.editor import PreviewEditor
from faceedit_core.preview.text_to_au import TextToAU
from faceedit_core.preview.train import PreviewTrainConfig, sample_start
from tests.helpers.flame import write_flame_standin

# enough for the paper's six prompts and the side prompts on the stand-in (about 30 s on 2 cores)
STANDIN_CONFIG = PreviewTrainConfig(steps=2000, batch=32)
SIDE_PROMPTS = ("wink with the left eye", "a smirk on the right", "raise one eyebrow", "left brow up, right brow down")


@pytest.fixture(scope="module")
def flame_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flame2020")
    write_flame_standin(folder, "generic_model.pkl", "2020", "2020")
    return folder


@pytest.fixture(scope="module")
def editor(flame_dir):
    return build_editor(flame=flame_dir / "generic_model.pkl", train_config=STANDIN_CONFIG, text_to_au=TextToAU())


def test_the_factory_serves_the_preview_tier_on_the_file(editor, flame_dir):
    assert isinstance(editor, PreviewEditor) and editor.tier == "preview"
    assert editor.head.label == "FLAME 2020 (generic_model.pkl)" and editor.head.n_edit == 50
    assert editor.layer.n_verts == 5023 and editor.head.sides and editor.objective.has_gaze
    info = preflight(flame=flame_dir / "generic_model.pkl")
    assert info["tier"] == "preview" and info["landmarks"] == [str(flame_dir / "landmark_embedding.npy")]
    wide = build_editor(flame=flame_dir / "generic_model.pkl", n_exp=100)
    assert wide.head.n_edit == 100 and wide.head_mapper_id() != editor.head_mapper_id()


@pytest.mark.slow
def test_paper_prompts_and_side_prompts_succeed_with_sides_and_jaw(editor):
    params = sample_start(PreviewTrainConfig(neutral_prob=1.0), editor.head, 16, torch.Generator().manual_seed(3))
    params = params.padded(300, 100)
    for prompt in PAPER_PROMPTS + SIDE_PROMPTS:
        result = editor.edit(params, prompt=prompt)
        au = {a: torch.tensor(v) for a, v in result.au.items()}
        accuracy = target_met(au, result.target).float().mean().item()
        assert accuracy >= 0.8, (prompt, accuracy, result.target)
        if prompt in PAPER_PROMPTS:  # symmetric prompts stay symmetric
            assert asymmetry(au).mean().item() < 0.08, prompt
    wink = editor.edit(params, prompt="wink with the left eye")
    assert all(v < 0.5 for v in wink.au["AU43_R"])  # the other eye stays open
    smirk = editor.edit(params, prompt="a smirk on the right")
    assert np.mean(smirk.au["AU12_R"]) > 2 * np.mean(smirk.au["AU12_L"])
    mouth = editor.edit(params, prompt="open the mouth")
    assert mouth.params.jaw_pose[:, 0].min() > 0.05  # the jaw joint opens, not only the lips
    assert all(mouth.summary()["success"])


def test_a_models_folder_with_only_flame_serves_the_preview_tier(tmp_path):
    write_flame_standin(tmp_path / "flame", "flame2023.pkl", "2023", "2023")
    info = preflight(tmp_path)
    assert info["tier"] == "preview" and info["flame"].endswith("flame2023.pkl")
    editor = build_editor(tmp_path)
    assert isinstance(editor, PreviewEditor) and editor.head.label == "FLAME 2023 (flame2023.pkl)"
    (tmp_path / "next3d").mkdir()
    (tmp_path / "next3d" / "next3d_ffhq_512.pkl").write_bytes(b"not read by preflight")
    assert preflight(tmp_path)["tier"] == "paper"


def test_missing_landmarks_name_where_they_were_looked_for(tmp_path):
    path = write_flame_standin(tmp_path, "generic_model.pkl", landmarks=False)
    with pytest.raises(MissingModelError, match="no landmark embedding for generic_model.pkl.*--landmarks"):
        build_editor(flame=path)
    with pytest.raises(MissingModelError, match="landmark embedding .*nowhere.npy not found"):
        build_editor(flame=path, landmarks=tmp_path / "nowhere.npy")
    with pytest.raises(MissingModelError, match="FLAME model .*absent.pkl not found"):
        preflight(flame=tmp_path / "absent.pkl")


def test_a_file_that_is_not_flame_names_the_file_and_the_layout(tmp_path, flame_dir):
    from faceedit_core.flame.standin import build_flame_standin, official_pickle_dict

    data = official_pickle_dict(build_flame_standin("2023").model)
    del data["posedirs"]
    (tmp_path / "flame2023.pkl").write_bytes(pickle.dumps(data))
    (tmp_path / "landmark_embedding.npy").write_bytes((flame_dir / "landmark_embedding.npy").read_bytes())
    with pytest.raises(InputError, match=r"flame2023.pkl is not a usable FLAME 2023 model file.*posedirs"):
        build_editor(flame=tmp_path / "flame2023.pkl")
    (tmp_path / "flame2023.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(InputError, match=r"flame2023.pkl"):
        build_editor(flame=tmp_path / "flame2023.pkl")


def test_a_landmark_embedding_of_another_topology_is_refused(tmp_path):
    from tests.helpers.flame import random_flame

    path = write_flame_standin(tmp_path, "generic_model.pkl", landmarks=False)
    _, lm = random_flame()
    lm.static_faces[:] = 20000  # faces the FLAME topology does not have
    from faceedit_core.flame.io import save_landmark_embedding

    save_landmark_embedding(lm, tmp_path / "other.npz")
    with pytest.raises(InputError, match="landmark embedding .*other.npz does not fit generic_model.pkl"):
        build_editor(flame=path, landmarks=tmp_path / "other.npz")


def test_expression_width_is_checked_against_the_file(flame_dir):
    with pytest.raises(InputError, match="expression width 120: FLAME 2020 \\(generic_model.pkl\\) has 100"):
        build_editor(flame=flame_dir / "generic_model.pkl", n_exp=120)
    with pytest.raises(InputError, match="n_exp applies to a FLAME file"):
        build_editor(n_exp=20)


def test_a_2020_mapper_is_refused_on_a_2023_head(tmp_path, flame_dir):
    """Mappers belong to their head: a fine-tune trained on FLAME 2020 names both heads on 2023."""
    tiny = PreviewTrainConfig(steps=2, batch=2)
    a = build_editor(flame=flame_dir / "generic_model.pkl", train_config=tiny, fine_tune_steps=1)
    b_path = write_flame_standin(tmp_path, "flame2023.pkl", "2023", "2023")
    b = build_editor(flame=b_path, train_config=tiny, fine_tune_steps=1)
    mid = a.train("raise brows")
    assert mid.startswith("pv-f")
    with pytest.raises(InputError, match=r"trained for FLAME 2020 \(generic_model.pkl\).*not for FLAME 2023"):
        b.edit(FlameParams.zeros(1, 300, 100), mapper_ids=[mid])
