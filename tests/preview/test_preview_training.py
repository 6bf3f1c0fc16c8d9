"""Emotion Mapper training against the AU critic, and the Editor that caches and applies it."""

import pytest
import torch

from faceedit_core.au.critic import success
from faceedit_core.au.objective import AUObjective
from faceedit_core.errors import Cancelled, InputError, PromptNotUnderstood
from faceedit_core.factory import build_editor
from faceedit_core.flame.default_head import load_demo_flame
from faceedit_core.flame.procedural_expressions import COMPONENTS
from faceedit_core.params import FlameParams
from faceedit_core.preview.text_to_au import TextToAU
from faceedit_core.preview.train import PreviewTrainConfig, sample_batch, train_emotion_mapper

FAST = PreviewTrainConfig(steps=120, batch=16)


@pytest.fixture(scope="module")
def layer():
    return load_demo_flame()


def test_short_training_reaches_the_target(layer):
    target = {"AU1": 1.0, "AU2": 1.0}
    mapper, summary = train_emotion_mapper(layer, target, len(COMPONENTS), FAST)
    assert summary["loss_last"] < 0.3 * summary["loss_first"]
    objective = AUObjective(layer)
    ev = sample_batch(
        PreviewTrainConfig(batch=40), layer.n_shape, layer.n_exp, len(COMPONENTS), torch.Generator().manual_seed(5)
    )
    with torch.no_grad():
        _, dpsi = mapper(None, ev.expression)
        edited = objective.intensities(ev.replace(expression=ev.expression + dpsi))
        before = objective.intensities(ev)
    assert success(edited, target).float().mean() >= 0.9
    assert success(before, target).float().mean() < 0.2


def test_training_can_be_cancelled(layer):
    with pytest.raises(Cancelled):
        train_emotion_mapper(layer, {"AU4": 1.0}, len(COMPONENTS), FAST, cancel=lambda: True)


@pytest.fixture(scope="module")
def editor():
    return build_editor(train_config=FAST, text_to_au=TextToAU())


def test_editor_edits_caches_and_scales(editor, tmp_path):
    params = FlameParams.zeros(2, 100, 50)
    params.shape.normal_(generator=torch.Generator().manual_seed(0))
    events = []
    first = editor.edit(params, prompt="A person who is raising brow", progress=events.append)
    assert events and events[-1]["step"] == FAST.steps
    assert all(first.summary()["success"])
    assert first.vertices.shape == (2, editor.layer.n_verts, 3) and first.landmarks.shape == (2, 68, 3)
    torch.testing.assert_close(first.params.shape[:, :100], params.shape)  # identity untouched
    # the same target from another prompt reuses the cached mapper (no training, no events)
    events.clear()
    again = editor.edit(params, prompt="raised eyebrows")
    assert again.mapper_ids == first.mapper_ids and not events
    # intensity scales the residual; 0 is the unedited head
    zero = editor.edit(params, mapper_ids=first.mapper_ids, intensity=0.0)
    torch.testing.assert_close(zero.params.expression[:, :50], params.expression)
    half = editor.edit(params, mapper_ids=first.mapper_ids, intensity=0.5)
    d_half = half.params.expression[:, :50] - params.expression
    d_full = first.params.expression[:, :50] - params.expression
    torch.testing.assert_close(d_half, 0.5 * d_full, atol=1e-6, rtol=1e-4)


def test_mappers_compose(editor):
    params = FlameParams.zeros(1, 100, 50)
    brow = editor.edit(params, prompt="raise brows").mapper_ids[0]
    eyes = editor.edit(params, prompt="close eyes").mapper_ids[0]
    both = editor.edit(params, mapper_ids=[brow, eyes])
    assert set(both.target) == {"AU1", "AU2", "AU43"}
    assert all(both.summary()["success"])


def test_bad_edit_requests(editor):
    params = FlameParams.zeros(1, 100, 50)
    with pytest.raises(InputError, match="intensity 5"):
        editor.edit(params, prompt="smile", intensity=5)
    with pytest.raises(PromptNotUnderstood):
        editor.edit(params, prompt="the quarterly tax report")
    with pytest.raises(InputError, match="unknown mapper id"):
        editor.edit(params, mapper_ids=["pv-0123456789abcdef"])
    with pytest.raises(InputError, match="'expression' has 120"):
        editor.edit(FlameParams.zeros(1, 100, 120), prompt="smile")


def test_au_readout_from_the_full_mesh_equals_the_subset(layer):
    objective = AUObjective(layer)
    p = FlameParams.zeros(2, 300, 100)
    p.expression[:, 7] = torch.tensor([0.4, 1.0])
    p.jaw_pose[:, 0] = 0.1
    out = layer(p)
    direct = objective.intensities(p)
    reused = objective.intensities(p, posed=(out.vertices, out.landmarks))
    for au in direct:
        torch.testing.assert_close(reused[au], direct[au], atol=1e-5, rtol=1e-4)


def test_au_readout_keeps_the_right_neutral_per_identity(layer):
    # the neutral of the last identity is reused; switching identities must not reuse it
    objective = AUObjective(layer)
    ev = sample_batch(
        PreviewTrainConfig(batch=2), layer.n_shape, layer.n_exp, len(COMPONENTS), torch.Generator().manual_seed(9)
    )
    a, b = ev.index(slice(0, 1)), ev.index(slice(1, 2))
    with torch.no_grad():
        for p in (a, b, a, b.replace(expression=a.expression)):
            got = objective.intensities(p)
            want = objective.intensities(p, neutral=objective.neutral(p))
            for au in got:
                torch.testing.assert_close(got[au], want[au], rtol=0, atol=0)
