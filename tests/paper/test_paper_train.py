"""Paper-tier training and inference on CPU with the tiny Next3D, tiny CLIP and tiny ArcFace."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from faceedit_core.errors import Cancelled, InputError
from faceedit_core.mappers import DualMappers, MapperConfig
from faceedit_core.paper.mapper_sets import edit_latent, load_mapper_set, save_mapper_set, slug
from faceedit_core.paper.objective import ObjectiveWeights
from faceedit_core.paper.train import PaperTrainConfig, load_refs, starting_params, train_mappers
from faceedit_core.params import FlameParams
from faceedit_core.storage import checkpoints
from tests.helpers.paper import tiny_models

# Loop tests: the toy networks' CLIP embeddings move little per unit of image change, so the L2
# weight is lowered for them (the default 0.8 holds the residuals at almost zero in a few steps).
TINY = PaperTrainConfig(
    prompt="A person who is smiling",
    steps=20,
    batch=2,
    lr=3e-3,
    n_latents=2,
    weights=ObjectiveWeights(clip=1.0, identity=0.15, l2=0.002),
    mapper=MapperConfig(hidden=64, attn_dim=32, psi_tokens=4, layers=2, texture_levels=(14, 15)),
    checkpoint_every=1000,
)
FAST = replace(TINY, weights=replace(TINY.weights, identity=0.0))  # no ArcFace: the costliest tiny network


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The demo head's FLAME, the tiny Next3D (the release's code paths at test sizes), tiny CLIP and ArcFace."""
    return tiny_models(tmp_path_factory.mktemp("tiny_weights"))


def _randomise_last_layers(mapper: DualMappers, seed: int) -> DualMappers:
    """Give the zero-initialised output layers random weights (an untrained set edits nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in mapper.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return mapper


def _emoca_folder(root, name, exp_value, seed):
    rng = np.random.default_rng(seed)
    d = root / name
    d.mkdir(parents=True)
    np.save(d / "shape.npy", rng.normal(size=(1, 100)).astype(np.float32) * 0.5)
    np.save(d / "exp.npy", np.full((1, 50), exp_value, np.float32))
    np.save(d / "pose.npy", np.array([[0.1, 0.2, 0.0, 0.05, 0.0, 0.0]], np.float32))
    return d


def test_training_lowers_the_loss_and_writes_a_mapper_set(models, tmp_path):
    # one latent, one (neutral) start, frontal views: every step sees the same heads, so the lower
    # loss is the optimiser's doing, not a luckier draw (seeded: 0.93x over 20 steps)
    cfg = replace(TINY, n_latents=1)
    events = []
    result = train_mappers(models, cfg, tmp_path, progress=events.append)
    s = result.summary
    assert s["steps"] == cfg.steps and len(events) == cfg.steps
    assert {"loss", "loss_clip", "loss_identity", "loss_l2"} <= set(events[-1])
    assert s["loss_last"] < s["loss_first"] * 0.95, s  # the optimisation works
    assert events[0]["loss_l2"] == 0.0 and events[-1]["loss_l2"] > 0  # residuals start at zero, then grow
    ms = load_mapper_set(tmp_path / slug(cfg.prompt))
    assert ms.prompt == cfg.prompt and ms.manifest["basis"] == "gram_schmidt" and ms.manifest["alpha"] == 8.0
    assert ms.manifest["weights"] == cfg.weights.to_dict() and ms.manifest["model_hashes"]["next3d"] == "tiny seed 0"
    for k, v in result.mapper.state_dict().items():
        assert torch.equal(v, ms.mapper.state_dict()[k]), k


def test_checkpoint_round_trips_mapper_optimizer_and_rng(models, tmp_path):
    cfg = replace(FAST, steps=3, checkpoint_every=2)
    result = train_mappers(models, cfg, tmp_path)
    tensors, manifest = checkpoints.load(checkpoints.stem_of(result.checkpoint_path))
    assert manifest["step"] == 3 and manifest["prompt"] == cfg.prompt and len(manifest["history"]) == 3
    assert manifest["config"]["steps"] == 3 and manifest["model_hashes"] == models.hashes
    for k, v in result.mapper.state_dict().items():
        assert torch.equal(tensors[f"mapper.{k}"], v)
    assert any(k.endswith(".exp_avg_sq") for k in tensors) and "rng.sampler" in tensors and "rng.torch" in tensors
    # a corrupted weights file is refused by name, never half-read
    weights = checkpoints.weights_path(checkpoints.stem_of(result.checkpoint_path))
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(InputError, match="corrupt"):
        train_mappers(models, replace(cfg, steps=4), tmp_path)


def test_resume_after_cancel_reproduces_the_uninterrupted_run(models, tmp_path):
    cfg = replace(FAST, steps=6, checkpoint_every=2)
    straight = train_mappers(models, cfg, tmp_path / "straight")
    seen = []
    with pytest.raises(Cancelled, match="step 3"):
        train_mappers(models, cfg, tmp_path / "interrupted", progress=seen.append, cancel=lambda: len(seen) >= 3)
    torch.manual_seed(1234)  # whatever happened in between must not matter
    resumed = train_mappers(models, cfg, tmp_path / "interrupted")
    assert resumed.summary["resumed_from"] == 3
    for k, v in straight.mapper.state_dict().items():
        assert torch.equal(v, resumed.mapper.state_dict()[k]), k
    a, b = (checkpoints.load(r.checkpoint_path.with_suffix(""))[1]["history"] for r in (straight, resumed))
    assert a == b


def test_resume_refuses_a_changed_configuration(models, tmp_path):
    train_mappers(models, replace(FAST, steps=2), tmp_path)
    with pytest.raises(InputError, match="lr"):
        train_mappers(models, replace(FAST, steps=4, lr=1e-2), tmp_path)
    longer = train_mappers(models, replace(FAST, steps=3), tmp_path)  # more steps is a resumption
    assert longer.summary["resumed_from"] == 2 and longer.summary["steps"] == 3


def test_config_fields_are_checked_by_name(models, tmp_path):
    for bad, field in ((dict(basis="qr"), "basis"), (dict(batch=0), "batch"), (dict(prompt=" "), "prompt")):
        with pytest.raises(InputError, match=field):
            train_mappers(models, replace(FAST, **bad), tmp_path)


def test_optional_geometric_au_term_joins_the_objective(models, tmp_path):
    cfg = replace(FAST, steps=2, au_target={"AU12": 1.0}, weights=replace(FAST.weights, au=0.5))
    events = []
    result = train_mappers(models, cfg, tmp_path, progress=events.append)
    assert all("loss_au" in e for e in events) and events[0]["loss_au"] > 0  # no smile at the start
    parts = events[0]
    assert events[0]["loss"] == pytest.approx(parts["loss_clip"] + 0.002 * parts["loss_l2"] + 0.5 * parts["loss_au"])
    assert load_mapper_set(result.mapper_path.with_suffix("")).manifest["au_target"] == {"AU12": 1.0}


def test_divergence_is_reported_with_the_step_and_what_to_change(models, tmp_path):
    runaway = replace(FAST, steps=12, lr=5e-2, weights=replace(FAST.weights, l2=0.0))
    with pytest.raises(InputError, match=r"diverged at step \d+ \(field 'expression'.*no checkpoint.*learning rate"):
        train_mappers(models, runaway, tmp_path)


def _grads(mapper: DualMappers, ws, psi):
    ws, psi = ws.clone().requires_grad_(True), psi.clone().requires_grad_(True)
    dws, dpsi = mapper(ws, psi)
    g_tex = None if dws is None else torch.autograd.grad(dws.sum(), psi, allow_unused=True)[0]
    g_emo = torch.autograd.grad(dpsi.sum(), ws, allow_unused=True)[0] if dpsi.requires_grad else None
    return dws, dpsi, g_tex, g_emo


def test_each_ablation_switch_removes_its_part():
    torch.manual_seed(0)
    ws, psi = torch.randn(2, 28, 512), torch.randn(2, 100) * 0.3
    base = dict(hidden=32, attn_dim=16, psi_tokens=2, layers=2, texture_levels=(14, 20))
    full = _randomise_last_layers(DualMappers(MapperConfig(**base)), 1)
    dws, dpsi, g_tex, g_emo = _grads(full, ws, psi)
    assert g_tex.abs().sum() > 0 and g_emo.abs().sum() > 0  # each branch sees the other's input
    untouched = [lv for lv in range(28) if lv not in (14, 20)]
    assert dws[:, untouched].abs().max() == 0 and dws[:, 14].abs().sum() > 0 and dws[:, 20].abs().sum() > 0

    no_attn = _randomise_last_layers(DualMappers(MapperConfig(**base, cross_attention=False)), 1)
    names = {n for n, _ in no_attn.named_parameters()}
    assert not any(n.startswith(("psi_embed", "tex_attn", "emo_attn")) for n in names)
    _, _, g_tex, g_emo = _grads(no_attn, ws, psi)
    assert (g_tex is None or g_tex.abs().sum() == 0) and (g_emo is None or g_emo.abs().sum() == 0)

    no_tex = _randomise_last_layers(DualMappers(MapperConfig(**base, texture_branch=False)), 1)
    assert not any(n.startswith("texture") for n, _ in no_tex.named_parameters())
    ws_out, p_out = edit_latent([(no_tex, 1.0)], ws, FlameParams.zeros(2, 100, 100).replace(expression=psi))
    assert torch.equal(ws_out, ws) and not torch.equal(p_out.expression, psi)

    no_emo = _randomise_last_layers(DualMappers(MapperConfig(**base, emotion_branch=False)), 1)
    assert not any(n.startswith("emotion") for n, _ in no_emo.named_parameters())
    ws_out, p_out = edit_latent([(no_emo, 1.0)], ws, FlameParams.zeros(2, 100, 100).replace(expression=psi))
    assert torch.equal(p_out.expression, psi) and not torch.equal(ws_out, ws)


def test_training_ablations_reach_the_loss(models, tmp_path):
    """Without the texture branch the generator gets the original ws; without L_id ArcFace is not needed."""
    cfg = replace(FAST, steps=2, mapper=replace(FAST.mapper, texture_branch=False))
    no_id = replace(models, arcface=None)
    seen_ws = []
    original = no_id.generator.synthesis

    def spy(ws, c, verts):
        seen_ws.append(ws.detach().clone())
        return original(ws, c, verts)

    no_id.generator.synthesis = spy
    try:
        events = []
        result = train_mappers(no_id, cfg, tmp_path, progress=events.append)
    finally:
        del no_id.generator.synthesis
    assert "loss_identity" not in events[-1]
    assert all(torch.equal(seen_ws[i], seen_ws[i + 1]) for i in range(0, len(seen_ws), 2))  # init and edit: same ws
    assert not any(n.startswith("texture") for n in result.mapper.state_dict())


def test_composition_applies_both_residuals_scaled_by_intensity(tmp_path):
    torch.manual_seed(0)
    cfg = MapperConfig(hidden=32, attn_dim=16, psi_tokens=2, layers=2, texture_levels=(14, 15))
    a = _randomise_last_layers(DualMappers(cfg), 1).eval()
    b = _randomise_last_layers(DualMappers(cfg), 2).eval()
    save_mapper_set(tmp_path / "close-eyes", a, "A person who is closing eyes", {})
    save_mapper_set(tmp_path / "frown", b, "A person who is frowning brow", {})
    a2, b2 = (load_mapper_set(tmp_path / n).mapper for n in ("close-eyes", "frown"))
    ws, params = torch.randn(3, 28, 512), FlameParams.zeros(3, 100, 100)
    params = params.replace(expression=torch.randn(3, 100) * 0.2)
    with torch.no_grad():
        ws2, p2 = edit_latent([(a2, 1.0), (b2, 0.5)], ws, params)
        da, ea = a(ws, params.expression)
        db, eb = b(ws, params.expression)
    torch.testing.assert_close(ws2, ws + da + 0.5 * db)
    torch.testing.assert_close(p2.expression, params.expression + ea + 0.5 * eb)
    assert (ea.abs().sum() > 0) and (eb.abs().sum() > 0) and not torch.allclose(ea, eb)
    assert torch.equal(p2.shape, params.shape) and torch.equal(p2.jaw_pose, params.jaw_pose)
    with pytest.raises(InputError, match="expression coefficients"):
        edit_latent([(a2, 1.0)], ws, FlameParams.zeros(3, 100, 50))


def test_references_drive_the_starting_expressions(tmp_path):
    _emoca_folder(tmp_path / "refs", "img_b", 0.3, 1)
    _emoca_folder(tmp_path / "refs", "img_a", -0.2, 0)
    refs = load_refs(tmp_path / "refs", 100, 100)
    assert refs.batch_size == 2 and refs.expression.shape == (2, 100)
    assert torch.allclose(refs.expression[0, :50], torch.full((50,), -0.2)) and refs.expression[:, 50:].abs().max() == 0
    starts = starting_params(refs, False, 100, 100)
    assert starts.global_pose.abs().max() == 0 and starts.jaw_pose[0, 0] == pytest.approx(0.05)
    neutral = starting_params(refs, True, 100, 100)  # "w/o ref": shapes kept, expression and jaw zero
    assert neutral.expression.abs().max() == 0 and neutral.jaw_pose.abs().max() == 0
    assert torch.equal(neutral.shape, refs.shape)
    with pytest.raises(InputError, match="EMOCA"):
        load_refs(tmp_path, 100, 100)


def test_a_step_reaches_both_mappers_through_next3d(models, tmp_path):
    """CLIP's gradient reaches the Texture Mapper through ws and the Emotion Mapper through FLAME's
    vertices (Next3D's rasterised planes), moving both zero-initialised output layers."""
    cfg = replace(FAST, steps=1, batch=1)
    result = train_mappers(models, cfg, tmp_path)
    sd = result.mapper.state_dict()
    last = {k: v for k, v in sd.items() if k.endswith(f"{2 * cfg.mapper.layers - 2}.weight")}
    assert {k.split(".")[0] for k in last} == {"texture", "emotion"}
    assert all(v.abs().sum() > 0 for v in last.values()), {k: float(v.abs().sum()) for k, v in last.items()}
    assert np.isfinite(result.summary["loss_last"])
