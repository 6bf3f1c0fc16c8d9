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
    from faceedit_core.paper.editor import PaperEditor

    with pytest.raises(MissingModelError) as err:  # (build_editor now serves the preview tier without next3d/)
        PaperEditor.from_models_dir(partial)
    msg = str(err.value)
    assert "landmark_embedding.npy" in msg and str(partial / "flame") in msg and str(partial / "next3d") in msg
    with pytest.raises(MissingModelError, match="clip"):
        build_editor(models_dir).train("A person who is sad")  # training needs CLIP and ArcFace


def test_server_serves_the_paper_tier(models_dir, editor, monkeypatch):
    from backend_server.__main__ import main
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
    started = []  # `faceedit-server --models DIR` up to binding its socket, which is replaced here (no port used)
    monkeypatch.setattr("backend_server.__main__.run", lambda server: started.append(server) or 0)
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


# ---------------------------------------------------------------- identities (issue 18)
CTX = {"progress": lambda event: None, "cancelled": lambda: False}


def test_the_identity_is_a_seed_or_a_latent_file(editor, models_dir, tmp_path):
    from faceedit_core.paper.latents import load_latent, save_latent

    G = editor.generator
    seed0 = editor.identity_latent(seed=0)
    torch.testing.assert_close(seed0, editor.ws_base, rtol=0, atol=0)  # the default identity is seed 0
    z = torch.randn(1, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        untruncated = G.mapping(z, orbit([0.0], [0.0]).eg3d_c(), truncation_psi=1.0)
    torch.testing.assert_close(seed0[:, 14:], untruncated[:, 14:], rtol=0, atol=0)  # Next3D's cutoff 14
    assert not torch.allclose(seed0[:, :14], untruncated[:, :14])
    assert not torch.allclose(editor.identity_latent(seed=7), seed0)

    ws = torch.randn(1, 28, 512)
    save_latent(models_dir / "latents" / "photo1", ws, {"source": "test"})
    torch.testing.assert_close(editor.identity_latent(latent="photo1", names_only=True), ws)
    assert "photo1" in editor.latent_names() and load_latent(models_dir / "latents" / "photo1.json").c is None
    elsewhere = save_latent(tmp_path / "mine", ws * 0.5, {})
    torch.testing.assert_close(editor.identity_latent(latent=elsewhere), ws * 0.5)  # the CLI may give paths
    for bad in (str(elsewhere), "../latents/photo1", "nope"):
        with pytest.raises(InputError, match="latent"):
            editor.identity_latent(latent=bad, names_only=True)  # the server takes names only
    with pytest.raises(InputError, match="exactly one"):
        editor.identity_latent(seed=1, latent="photo1")
    (tmp_path / "fake.json").write_text('{"format": "something else", "weights_file": "x.safetensors"}')
    with pytest.raises(InputError):
        editor.identity_latent(latent=tmp_path / "fake.json")
    other = build_editor(models_dir, latent="photo1")
    torch.testing.assert_close(other.ws_base, ws)
    params = _params(editor)
    cams = orbit([0.0], [0.0])
    assert np.abs(other.render(params, cams, 32).astype(int) - editor.render(params, cams, 32).astype(int)).max() > 0
    torch.manual_seed(3)  # the same ray-sampling draws for both renders
    given = editor.render(params, cams, 32, ws=ws)
    torch.manual_seed(3)
    assert np.array_equal(given, other.render(params, cams, 32))


def test_server_ops_choose_the_identity(editor, models_dir):
    from types import SimpleNamespace

    from backend_server import handlers
    from faceedit_core.paper.latents import save_latent
    from faceedit_wire import protocol as P

    save_latent(models_dir / "latents" / "photo2", torch.randn(1, 28, 512), {})
    p = {k: v.astype(np.float32) for k, v in _params(editor).to_numpy().items()}
    view = {"params": p, "size": 32, "cameras": orbit([0.0], [0.0]).eg3d_c().numpy()}

    def image(**extra):
        torch.manual_seed(0)  # the same ray-sampling draws for every render
        return handlers.render(editor, {**view, **extra}, CTX)["images"][0][0]

    seed0, seed5 = image(identity={"seed": 0}), image(identity={"seed": 5})
    assert seed0 == image() and seed5 != seed0  # the default identity is seed 0
    assert image(identity={"latent": "photo2"}) not in (seed0, seed5)
    ws = editor.identity_latent(seed=5).numpy()
    assert image(identity={"ws": ws}) == seed5
    edited = handlers.edit(editor, {"params": p, "mapper_ids": ["smile"], "identity": {"seed": 5}}, CTX)
    with torch.no_grad():
        ws_expect, _ = edit_latent([(editor.mapper("smile"), 1.0)], torch.from_numpy(ws), _params(editor))
    back = FlameParams.from_numpy(edited["params"])
    torch.testing.assert_close(editor.latent_for(back.index(0)), ws_expect)  # the edit's w' is of seed 5
    for bad in (
        {"seed": -1},
        {"seed": 1.5},
        {"latent": "../photo2"},
        {"seed": 1, "latent": "photo2"},
        {"ws": ws[:, :3]},
    ):
        with pytest.raises((P.ProtocolError, InputError)):
            image(identity=bad)
    with pytest.raises(P.ProtocolError, match="paper tier"):
        handlers.identity(SimpleNamespace(tier="preview"), {"identity": {"seed": 1}})


def _emoca(folder, exp_value: float, seed: int):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    np.save(folder / "shape.npy", rng.normal(size=(1, 100)).astype(np.float32) * 0.3)
    np.save(folder / "exp.npy", np.full((1, 50), exp_value, np.float32))
    np.save(folder / "pose.npy", np.array([[0.2, 0.1, 0.0, 0.1, 0.0, 0.0]], np.float32))


def test_server_train_uses_reference_expressions_and_basis_prompts(models_dir, tmp_path):
    from types import SimpleNamespace

    from backend_server import handlers
    from faceedit_core.paper.arcface import tiny_arcface_file
    from faceedit_core.paper.clip_model import tiny_clip_file
    from faceedit_core.paper.mapper_sets import load_mapper_set, params_sha256
    from faceedit_core.paper.objective import ObjectiveWeights
    from faceedit_core.paper.train import PaperTrainConfig, load_refs, starting_params
    from faceedit_wire import protocol as P

    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    tiny_clip_file(root / "clip")
    tiny_arcface_file(root / "arcface")
    _emoca(root / "refs" / "smiles" / "a", 0.4, 0)
    _emoca(root / "refs" / "smiles" / "b", -0.3, 1)
    cfg = PaperTrainConfig(
        steps=1, batch=1, n_latents=1, weights=ObjectiveWeights(identity=0.0), mapper=MAPPER, checkpoint_every=10
    )
    ed = build_editor(root, train_config=cfg)
    basis = ["A person who is smiling.", "A person who is sad.", "A person who is yawning."]
    out = handlers.train(ed, {"prompt": "A person who is smiling", "refs_dir": "smiles", "basis_prompts": basis}, CTX)
    ms = load_mapper_set(root / "mappers" / out["mapper_id"])
    refs = load_refs(root / "refs" / "smiles", ed.layer.n_shape, ed.layer.n_exp)
    assert ms.manifest["config"]["neutral"] is False and ms.manifest["config"]["basis_prompts"] == basis
    assert ms.manifest["starts_sha256"] == params_sha256(starting_params(refs, False, ed.layer.n_shape, ed.layer.n_exp))
    arrays = {k: v.astype(np.float32) for k, v in refs.to_numpy().items()}
    out = handlers.train(ed, {"prompt": "A person who is sad", "refs": arrays, "basis": "plain"}, CTX)
    ms = load_mapper_set(root / "mappers" / out["mapper_id"])
    assert ms.manifest["config"]["neutral"] is False and ms.manifest["basis"] == "plain"
    assert ms.manifest["starts_sha256"] == params_sha256(starting_params(refs, False, ed.layer.n_shape, ed.layer.n_exp))
    out = handlers.train(ed, {"prompt": "A person who is angry"}, CTX)  # no references: "w/o ref"
    assert load_mapper_set(root / "mappers" / out["mapper_id"]).manifest["config"]["neutral"] is True
    for bad in ({"refs_dir": "../refs"}, {"basis_prompts": []}, {"basis": "qr"}, {"neutral": "yes"}):
        with pytest.raises((P.ProtocolError, InputError)):
            handlers.train(ed, {"prompt": "A person who is sad", **bad}, CTX)
    with pytest.raises(P.ProtocolError, match="paper tier"):
        handlers.train(SimpleNamespace(tier="preview"), {"prompt": "smile", "refs_dir": "smiles"}, CTX)


def test_cli_sets_the_basis_prompts_and_the_expression_width(tmp_path):
    from faceedit_core.cli.train import paper_config, train

    opts = {p.name: p.default for p in train.params if p.name not in ("prompt", "steps", "models_dir", "device")}
    assert paper_config("A person who is sad", 3, opts).basis_prompts is None  # the default set
    (tmp_path / "basis.txt").write_text("A person who is sad.\n\n  A person who is crying.  \n")
    cfg = paper_config(
        "A person who is sad", 3, {**opts, "basis_prompts": str(tmp_path / "basis.txt"), "exp_width": 30}
    )
    assert cfg.basis_prompts == ("A person who is sad.", "A person who is crying.") and cfg.exp_width == 30
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(InputError, match="basis_prompts"):
        paper_config("A person who is sad", 3, {**opts, "basis_prompts": str(tmp_path / "empty.txt")})
