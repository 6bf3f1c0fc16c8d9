"""A cancelled training of the head's Emotion Mapper saves a checkpoint; the next training of the same
head and configuration resumes from it to exactly the mapper an uninterrupted run makes, another
head or configuration never uses it, and it is removed once the mapper is saved; `faceedit train`
names it on Ctrl-C and says where it resumed."""

import dataclasses
import signal

import pytest
import torch
from click.testing import CliRunner

from faceedit_core.errors import Cancelled
from faceedit_core.preview import train as preview_train
from faceedit_core.preview.editor import PreviewEditor
from faceedit_core.preview.head import PreviewHead
from faceedit_core.preview.train import PreviewTrainConfig, train_preview_mapper
from faceedit_core.storage import checkpoints

SHORT = PreviewTrainConfig(steps=30, batch=8)
STOP_AT = 12


@pytest.fixture(scope="module")
def head():
    return PreviewHead.procedural()


@pytest.fixture(scope="module")
def uninterrupted(head):
    return train_preview_mapper(head, SHORT)


def stop_at(step: int):
    """A cancel callable that asks to stop before step `step` (it is called once before each step)."""
    calls = iter(range(1_000_000))
    return lambda: next(calls) == step


def assert_same_mapper(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), [k for k in sa if not torch.equal(sa[k], sb[k])]


def test_a_resumed_training_makes_the_uninterrupted_mapper(head, uninterrupted, tmp_path):
    stem = tmp_path / "ckpt"
    with pytest.raises(Cancelled, match=f"at step {STOP_AT} of 30 .*checkpoint .*ckpt.json.*resumes"):
        train_preview_mapper(head, SHORT, cancel=stop_at(STOP_AT), checkpoint=stem)
    assert checkpoints.load(stem)[1]["step"] == STOP_AT
    torch.manual_seed(123)  # whatever ran in between: the run's own RNG state comes back
    events = []
    resumed, summary = train_preview_mapper(head, SHORT, progress=events.append, checkpoint=stem)
    assert summary["resumed_from"] == STOP_AT and events[0]["step"] == STOP_AT + 1 and events[-1]["step"] == 30
    assert_same_mapper(resumed, uninterrupted[0])
    assert summary["loss_history"] == uninterrupted[1]["loss_history"]


def test_a_checkpoint_of_another_configuration_or_head_is_not_used(head, uninterrupted, tmp_path):
    stem = tmp_path / "ckpt"
    with pytest.raises(Cancelled):
        train_preview_mapper(head, SHORT, cancel=stop_at(STOP_AT), checkpoint=stem)
    other_head = dataclasses.replace(head, head_hash="0" * 64)
    stopped = []
    for who, cfg in ((other_head, SHORT), (head, dataclasses.replace(SHORT, lr=1e-3))):
        with pytest.raises(Cancelled, match="at step 3 of"):  # started over, then stopped (replacing the file)
            train_preview_mapper(who, cfg, cancel=stop_at(3), checkpoint=stem)
        stopped.append(checkpoints.load(stem)[1]["key"])
    assert stopped[0]["head"] == "0" * 64 and stopped[1]["config"]["lr"] == 1e-3
    with pytest.raises(ValueError, match="checkpoint"):
        train_preview_mapper(head, SHORT, target={"AU12": 1.0}, checkpoint=stem)


def test_the_editor_resumes_the_head_mapper_and_removes_the_checkpoint(head, uninterrupted, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEEDIT_HOME", str(tmp_path))
    editor = PreviewEditor(head, train_config=SHORT)
    stem = editor.head_checkpoint(editor.head_mapper_id())
    other = PreviewEditor(head, train_config=dataclasses.replace(SHORT, seed=1))
    assert other.head_checkpoint(other.head_mapper_id()) != stem  # keyed by the configuration
    with pytest.raises(Cancelled, match=str(checkpoints.manifest_path(stem))):
        editor.train_head(cancel=stop_at(STOP_AT))
    assert checkpoints.load(stem)[1]["step"] == STOP_AT and not editor.store.exists(editor.head_mapper_id())

    again = PreviewEditor(head, train_config=SHORT)
    assert again.train_head() == editor.head_mapper_id()
    assert again.head_training["resumed_from"] == STOP_AT
    assert_same_mapper(again.head_mapper(), uninterrupted[0])
    assert not checkpoints.manifest_path(stem).exists() and not list(stem.parent.glob(f"{stem.name}.*safetensors"))


def test_ctrl_c_during_preview_training_saves_a_checkpoint_the_same_command_resumes(tmp_path, monkeypatch):
    from faceedit_core.cli import main

    monkeypatch.setenv("FACEEDIT_HOME", str(tmp_path))
    sample_start, sent = preview_train.sample_start, []

    def ctrl_c_during_step_0(*args):
        if not sent:
            sent.append(signal.raise_signal(signal.SIGINT))  # what Ctrl-C sends
        return sample_start(*args)

    runner, argv = CliRunner(), ["train", "--steps", "10"]
    monkeypatch.setattr(preview_train, "sample_start", ctrl_c_during_step_0)
    stopped = runner.invoke(main, argv)
    assert stopped.exit_code == 130, stopped.output
    (manifest,) = (tmp_path / "mappers" / "preview" / "checkpoints").glob("ph-*.json")
    assert f"checkpoint {manifest}; the same command resumes from it" in stopped.stderr
    assert checkpoints.load(checkpoints.stem_of(manifest))[1]["step"] == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C is itself again

    monkeypatch.setattr(preview_train, "sample_start", sample_start)
    resumed = runner.invoke(main, argv)
    assert resumed.exit_code == 0, resumed.output
    assert f"head mapper {manifest.stem}" in resumed.stdout and "(head mapper resumed at step 1)" in resumed.stdout
    assert not manifest.exists()
    cached = runner.invoke(main, argv)  # the mapper is kept: nothing trains, nothing resumes
    assert cached.exit_code == 0 and "resumed" not in cached.stdout
