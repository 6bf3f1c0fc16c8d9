"""The command line on the paper tier (tiny models in the official file formats): `faceedit edit` and
`faceedit render` choose the identity (--seed, --latent), which the preview tier refuses naming the
tier; Ctrl-C during `faceedit train` leaves a checkpoint that the same command resumes from;
progress goes to stderr, results to stdout."""

import json
import shutil
import signal

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceedit_core.cli import main
from faceedit_core.factory import build_editor
from faceedit_core.params import FlameParams
from tests.helpers.paper import write_models_dir

SAD = "a-person-who-is-sad"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A tiny models folder (with CLIP and ArcFace, for training) and a random 'smile' mapper set."""
    from faceedit_core.mappers import DualMappers, MapperConfig
    from faceedit_core.paper.mapper_sets import save_mapper_set

    root = write_models_dir(tmp_path_factory.mktemp("models"))
    torch.manual_seed(1)
    mappers = DualMappers(MapperConfig(hidden=32, attn_dim=16, psi_tokens=2, layers=2, texture_levels=(14, 15)))
    with torch.no_grad():
        for p in mappers.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_mapper_set(root / "mappers" / "smile", mappers.eval(), "A person who is smiling", {})
    return root


def test_edit_and_render_take_the_paper_tiers_identity(models_dir, tmp_path):
    from faceedit_core.paper.latents import save_latent

    runner = CliRunner()
    editor = build_editor(models_dir)
    neutral = FlameParams.zeros(1, editor.layer.n_shape, editor.layer.n_exp)
    ws = torch.randn(1, 28, 512, generator=torch.Generator().manual_seed(3))
    save_latent(models_dir / "latents" / "named", ws, {})
    elsewhere = save_latent(tmp_path / "elsewhere", ws * 0.5, {})

    def edited(name: str, *identity: str) -> torch.Tensor:
        out = tmp_path / f"{name}.npz"
        done = runner.invoke(main, ["edit", "--models", str(models_dir), "--mapper", "smile", *identity, "--out", out])
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["mapper_ids"] == ["smile"]  # stdout is the JSON report alone
        return FlameParams.load(out).expression

    def expected(identity: torch.Tensor) -> torch.Tensor:
        return editor.edit(neutral, mapper_ids=["smile"], ws=identity).params.expression

    default, seed5 = edited("default"), edited("seed5", "--seed", "5")
    torch.testing.assert_close(default, expected(editor.identity_latent(seed=0)))
    torch.testing.assert_close(seed5, expected(editor.identity_latent(seed=5)))
    assert not torch.allclose(seed5, default)  # the identity reaches the edit (cross-attention on w)
    torch.testing.assert_close(edited("named", "--latent", "named"), expected(ws))
    torch.testing.assert_close(edited("path", "--latent", str(elsewhere)), expected(ws * 0.5))

    out = tmp_path / "views"
    views = ["render", "--models", str(models_dir), "--views", "2", "--size", "32", "--out", str(out)]
    done = runner.invoke(main, [*views, "--seed", "5"])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == f"wrote 2 views and contact_sheet.png to {out}" and "rendering" in done.stderr
    assert (out / "view_01.png").is_file() and (out / "contact_sheet.png").is_file()
    unknown = runner.invoke(main, [*views, "--latent", "nobody"])
    assert unknown.exit_code == 2 and "neither a latent file nor a name in" in unknown.stderr


def test_the_preview_tier_refuses_an_identity_naming_the_tier(models_dir, tmp_path):
    flame_only = tmp_path / "flame_only"
    shutil.copytree(models_dir / "flame", flame_only / "flame")  # a models folder of the preview tier
    runner = CliRunner()
    edit = ["edit", "--prompt", "smile", "--out", str(tmp_path / "e.npz")]
    for argv, option in (
        ([*edit, "--seed", "3"], "--seed"),
        (["render", "--out", str(tmp_path / "r"), "--latent", "me"], "--latent"),
        ([*edit, "--models", str(flame_only), "--seed", "3"], "--seed"),
    ):
        done = runner.invoke(main, argv)
        assert done.exit_code == 2, done.output
        assert f"{option} chooses an identity of the paper tier: it needs --models DIR" in done.stderr
    both = runner.invoke(main, [*edit, "--models", str(models_dir), "--seed", "3", "--latent", "me"])
    assert both.exit_code == 2 and "not both" in both.stderr


def test_ctrl_c_during_training_saves_a_checkpoint_the_same_command_resumes(models_dir, tmp_path, monkeypatch):
    from faceedit_core.paper import train as paper_train
    from faceedit_core.storage import checkpoints

    train_mappers = paper_train.train_mappers

    def ctrl_c_after_step_1(*args, progress, **kwargs):
        def progress_then_ctrl_c(event):
            progress(event)
            if event["step"] == 1:
                signal.raise_signal(signal.SIGINT)  # what Ctrl-C sends

        return train_mappers(*args, progress=progress_then_ctrl_c, **kwargs)

    out = tmp_path / "sets"
    argv = ["train", "--prompt", "A person who is sad", "--models", str(models_dir), "--neutral", "--steps", "2"]
    argv += ["--batch", "1", "--lambda-id", "0", "--no-texture", "--checkpoint-every", "100", "--out", str(out)]
    runner = CliRunner()
    monkeypatch.setattr(paper_train, "train_mappers", ctrl_c_after_step_1)
    stopped = runner.invoke(main, argv)
    assert stopped.exit_code == 130, stopped.output
    ckpt = out / "checkpoints" / SAD
    assert str(checkpoints.manifest_path(ckpt)) in stopped.stderr and "resume" in stopped.stderr
    assert checkpoints.load(ckpt)[1]["step"] == 1 and not (out / f"{SAD}.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C is itself again
    assert "training 'A person who is sad'" in stopped.stderr and "training 'A" not in stopped.stdout

    monkeypatch.setattr(paper_train, "train_mappers", train_mappers)
    resumed = runner.invoke(main, argv)
    assert resumed.exit_code == 0, resumed.output
    assert "2 steps (resumed at step 1)" in resumed.stdout and (out / f"{SAD}.json").is_file()
    assert np.isfinite(checkpoints.load(ckpt)[1]["history"][-1]["total"])
