"""The batch spec's checks name the field at fault; planning is stable and hashes content."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from faceedit_core.batch.plan import make_plan
from faceedit_core.batch.spec import SpecError, load_spec
from faceedit_core.errors import InputError

GOOD = """
prompts = ["A person who is smiling", "raise brows"]
intensities = [0.5, 1.0]
[editor]
train_steps = 60
[[heads]]
seeds = [0, 1]
[[heads]]
params = "heads/*.json"
[[turntables]]
views = 2
size = 32
[[turntables]]
views = 4
size = 32
pitch = 10.0
"""


def write(folder: Path, text: str, name: str = "spec.toml") -> Path:
    (folder / name).write_text(text)
    return folder / name


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "heads").mkdir()
    (tmp_path / "heads" / "a.json").write_text('{"shape": [[0.1]], "expression": [[0.0]]}')
    (tmp_path / "heads" / "b.json").write_text('{"shape": [[0.2]], "expression": [[0.0]]}')
    return tmp_path


def test_a_good_spec_plans_heads_x_prompts_x_intensities_x_turntables(folder):
    spec = load_spec(write(folder, GOOD))
    plan = make_plan(spec, folder / "out")
    assert len(plan.items) == 4 * 2 * 2 * 2
    assert len({it.item_id for it in plan.items}) == len(plan.items)
    assert [t.prompt for t in plan.trains] == list(spec.prompts)
    assert spec.heads[1].values == (str(folder / "heads" / "a.json"), str(folder / "heads" / "b.json"))
    again = make_plan(load_spec(folder / "spec.toml"), folder / "out")
    assert [(i.item_id, i.input_hash) for i in again.items] == [(i.item_id, i.input_hash) for i in plan.items]


def test_the_input_hash_follows_the_file_content_and_the_id_does_not(folder):
    spec = load_spec(write(folder, GOOD))
    before = {i.item_id: i.input_hash for i in make_plan(spec, folder / "out").items}
    (folder / "heads" / "a.json").write_text('{"shape": [[0.3]], "expression": [[0.0]]}')
    after = {i.item_id: i.input_hash for i in make_plan(spec, folder / "out").items}
    assert before.keys() == after.keys()
    changed = {k for k in before if before[k] != after[k]}
    assert changed and all(k.startswith("a-") for k in changed)
    assert len(changed) == 2 * 2 * 2


@pytest.mark.parametrize(
    "text, message",
    [
        ('prompt = ["x"]\n[[heads]]\nseeds = [0]\n', "spec.toml: prompt: unknown key (did you mean 'prompts'?)"),
        ('prompts = ["x"]\n', "spec.toml: heads: is required"),
        ('prompts = ["x"]\n[[heads]]\nseeds = [0]\n[[heads]]\nseeds = ["a"]\n', "heads[1].seeds[0]: expected a non"),
        ('prompts = ["x"]\n[[heads]]\nseeds = [0]\nparams = "a.npz"\n', "heads[0]: needs exactly one of seeds, params"),
        (
            'prompts = ["x"]\n[[heads]]\nparams = "missing/*.npz"\n',
            "heads[0].params[0]: no file matches 'missing/*.npz'",
        ),
        (
            'prompts = ["x"]\n[[heads]]\nseeds = [0]\n[[turntables]]\nviews = 65\n',
            "turntables[0].views: 65 is outside 1..64",
        ),
        (
            'prompts = ["x"]\n[[heads]]\nseeds = [0]\n[[turntables]]\nsamples = 4\n',
            "turntables[0].samples: only applies",
        ),
        ('prompts = ["x"]\nintensities = [9]\n[[heads]]\nseeds = [0]\n', "intensities[0]: expected a number within"),
        ('prompts = ["x"]\n[[heads]]\nseeds = [0]\n[run]\nnum_gpus = 0.5\n', "run.num_gpus: GPUs requested but"),
        ('prompts = ["x"]\n[[heads]]\nseeds = [0]\n[editor]\nmodels = "nowhere"\n', "editor.models: folder"),
        ('prompts = ["x"\n', "spec.toml: not valid TOML"),
    ],
)
def test_errors_name_the_file_and_the_field(folder, text, message):
    with pytest.raises(SpecError) as exc:
        load_spec(write(folder, text))
    assert message in str(exc.value)


def test_yaml_specs_read_like_toml_or_say_what_is_missing(folder, monkeypatch):
    pytest.importorskip("yaml")
    yaml_text = "prompts: [x]\nheads:\n  - seeds: {start: 3, count: 2}\n"
    spec = load_spec(write(folder, yaml_text, "spec.yaml"))
    assert spec.heads[0].values == (3, 4)
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    with pytest.raises(SpecError, match=r"YAML specs need PyYAML \(pip install pyyaml\)"):
        load_spec(folder / "spec.yaml")


def test_emoca_folders_plan_by_their_arrays_and_load_as_one_head(tmp_path):
    import numpy as np

    from faceedit_core.batch.worker import load_head

    for name in ("img_a", "img_b"):
        folder = tmp_path / "emoca" / name
        folder.mkdir(parents=True)
        np.save(folder / "shape.npy", np.full(100, 0.1, np.float32))
        np.save(folder / "exp.npy", np.full(50, 0.2 if name == "img_a" else 0.3, np.float32))
        np.save(folder / "pose.npy", np.array([0, 0, 0, 0.1, 0, 0], np.float32))
    spec = load_spec(write(tmp_path, 'prompts = ["x"]\n[[heads]]\nemoca = "emoca/*"\n'))
    heads = [it.head for it in make_plan(spec, tmp_path / "out").items]
    assert [h.label for h in heads] == ["img-a", "img-b"] and heads[0].sha256 != heads[1].sha256
    params = load_head(heads[0], n_shape=100, n_exp=100)
    assert params.batch_size == 1 and float(params.jaw_pose[0, 0]) == pytest.approx(0.1)
    np.save(tmp_path / "emoca" / "img_a" / "exp.npy", np.zeros(50, np.float32))  # changed after planning
    with pytest.raises(InputError, match="changed since the batch was planned"):
        load_head(heads[0], n_shape=100, n_exp=100)
