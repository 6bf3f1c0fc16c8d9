"""The paper tier end to end from a model folder of tiny files in the official layouts:
Editor.from_models_dir, edits by prompt and by ids (composed), Next3D renders, the server."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from faceedit_core.errors import InputError, MissingModelError, PromptNotUnderstood
from faceedit_core.factory import build_editor
from faceedit_core.mappers import DualMappers, MapperConfig
from faceedit_core.paper.mapper_sets import edit_latent, save_mapper_set
from faceedit_core.params import FlameParams
from faceedit_core.render.cameras import orbit
from tests.helpers.paper import write_models_dir

MAPPER = MapperConfig(hidden=32, attn_dim=16, psi_tokens=2, layers=2, texture_levels=(14, 15))


def _random_set(seed: int) -> DualMappers:
    torch.manual_seed(seed)
    m = DualMappers(MAPPER)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m.eval()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = write_models_dir(tmp_path_factory.mktemp("models"), guidance=False)
    save_mapper_set(root / "mappers" / "smile", _random_set(1), "A person who is smiling", {"au_target": {"AU12": 1.0}})
    save_mapper_set(root / "mappers" / "frown", _random_set(2), "A person who is frowning brow", {})
    return root


@pytest.fixture(scope="module")
def editor(models_dir):
    return build_editor(models_dir)


def _params(editor, batch=1):
    p = FlameParams.zeros(batch, editor.layer.n_shape, editor.layer.n_exp)
    return p.replace(expression=torch.linspace(-0.2, 0.2, editor.layer.n_exp).repeat(batch, 1))


def test_models_dir_gives_the_paper_tier_with_its_mapper_sets(editor):
    assert editor.tier == "paper"
    assert sorted(editor.known_expressions()) == ["A person who is frowning brow", "A person who is smiling"]
    assert editor.head_mesh()["vertices"].shape[1] == 3


def test_edit_by_prompt_and_composed_ids_match_the_mappers(editor):
    params = _params(editor)
    by_prompt = editor.edit(params, prompt="a person who is smiling.")
    assert by_prompt.mapper_ids == ["smile"] and by_prompt.target == {"AU12": 1.0}
    both = editor.edit(params, mapper_ids=["smile", "frown"], intensity=0.5)
    ws = editor.ws_base
    with torch.no_grad():
        _, expect = edit_latent([(editor.mapper("smile"), 0.5), (editor.mapper("frown"), 0.5)], ws, params)
        direct = editor.layer(expect)
    torch.testing.assert_close(both.params.expression, expect.expression)
    torch.testing.assert_close(both.vertices, direct.vertices)
    assert not torch.allclose(both.params.expression, params.expression)
    assert set(both.au) >= {"AU12", "AU4"} and len(both.au["AU12"]) == 1
    own_ws = torch.randn(1, 28, 512)  # e.g. a photo's inverted latent
    mine = editor.edit(params, mapper_ids=["smile"], ws=own_ws)
    with torch.no_grad():
        ws_expect, _ = edit_latent([(editor.mapper("smile"), 1.0)], own_ws, params)
    torch.testing.assert_close(editor.latent_for(mine.params.index(0)), ws_expect)
    with pytest.raises(InputError, match="ws must"):
        editor.edit(params, mapper_ids=["smile"], ws=torch.randn(1, 14, 512))
    with pytest.raises(PromptNotUnderstood, match="faceedit train") as err:
        editor.edit(params, prompt="A person who is yawning")
    assert "A person who is smiling" in err.value.suggestions


def test_render_uses_the_edited_latent(editor):
    params = _params(editor)
    cams = orbit([0.0, 20.0], [0.0, 0.0])
    plain = editor.render(params, cams, size=32)
    assert plain.shape == (1, 2, 32, 32, 4) and plain.dtype == np.uint8 and (plain[..., 3] == 255).all()
    edited = editor.edit(params, mapper_ids=["smile"]).params
    again = editor.render(edited, cams, size=32)
    assert np.abs(again.astype(int) - plain.astype(int)).max() > 0
    assert not torch.equal(editor.latent_for(edited.index(0)), editor.ws_base)  # w' remembered, not w


def test_missing_files_are_named_with_their_folder(models_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(models_dir, partial)
    shutil.rmtree(partial / "next3d")
    (partial / "flame" / "landmark_embedding.npy").unlink()
    with pytest.raises(MissingModelError) as err:
        build_editor(partial)
    msg = str(err.value)
    assert "landmark_embedding.npy" in msg and str(partial / "flame") in msg and str(partial / "next3d") in msg
    with pytest.raises(MissingModelError, match="clip"):
        build_editor(models_dir).train("A person who is sad")  # training needs CLIP and ArcFace


def test_server_serves_the_paper_tier(models_dir, editor, monkeypatch):
    from backend_server.__main__ import main
    from backend_server.server import Server
    from faceedit_wire.client import Client
    from tests.helpers.server import RunningServer

    server = RunningServer(factory=lambda: editor)
    server.server.models = {"next3d": "present"}
    try:
        client = Client(server.address, timeout_s=60, retries=1)
        hello = client.call("hello")
        assert hello["tier"] == "paper" and "A person who is smiling" in hello["expressions"]
        p = {k: v.astype(np.float32) for k, v in _params(editor).to_numpy().items()}
        edit = client.call("edit", {"params": p, "mapper_ids": ["frown"]})
        assert edit["mapper_ids"] == ["frown"] and edit["vertices"].shape[1:] == (editor.layer.n_verts, 3)
        client.close()
    finally:
        server.stop()
    started = []  # `faceedit-server --models DIR` up to the socket loop, which is replaced here
    monkeypatch.setattr(Server, "serve_forever", lambda self, *a, **k: started.append(self))
    assert main(["--models", str(models_dir), "--sr-precision", "bf16"]) == 0
    with pytest.raises(SystemExit):  # argparse names the choices
        main(["--models", str(models_dir), "--sr-precision", "fp64"])
    broken = models_dir.parent / "broken_models"
    (broken / "flame").mkdir(parents=True, exist_ok=True)
    assert main(["--models", str(broken)]) == 2  # refuses to start, naming what is missing
    (served,) = started  # what hello reports as models present, and the Editor the server builds
    assert served.models["mappers"] == ["frown", "smile"] and served.models["next3d"].endswith(".json")
    built = served.editor_factory()
    assert built.tier == "paper" and built.generator.superresolution.precision == "bf16"
    assert editor.generator.superresolution.precision == "auto"  # the default


def test_cli_trains_a_paper_tier_set_from_a_models_dir(models_dir, tmp_path):
    from click.testing import CliRunner

    from faceedit_core.cli import main
    from faceedit_core.paper.arcface import tiny_arcface_file
    from faceedit_core.paper.clip_model import tiny_clip_file
    from faceedit_core.paper.mapper_sets import load_mapper_set

    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    runner = CliRunner()
    no_ref = runner.invoke(main, ["train", "--prompt", "A person who is sad", "--models", str(root), "--steps", "1"])
    assert no_ref.exit_code != 0 and "--neutral" in no_ref.output
    no_clip = runner.invoke(main, ["train", "--prompt", "A person who is sad", "--models", str(root), "--neutral"])
    assert no_clip.exit_code != 0 and str(root / "clip") in no_clip.output
    assert "need --models" in runner.invoke(main, ["train", "--prompt", "smile", "--neutral"]).output
    tiny_clip_file(root / "clip")
    tiny_arcface_file(root / "arcface")
    out = tmp_path / "sets"
    done = runner.invoke(
        main,
        [
            "train",
            "--prompt",
            "A person who is sad",
            "--models",
            str(root),
            "--neutral",
            "--steps",
            "1",
            "--batch",
            "1",
            "--lambda-id",
            "0",
            "--no-texture",
            "--out",
            str(out),
        ],
    )
    assert done.exit_code == 0, done.output
    assert "mapper a-person-who-is-sad" in done.output and "s/step" in done.output and "loss" in done.output
    ms = load_mapper_set(out / "a-person-who-is-sad")
    assert ms.manifest["weights"]["identity"] == 0.0 and not ms.mapper.config.texture_branch
    assert (out / "checkpoints" / "a-person-who-is-sad.json").is_file()
