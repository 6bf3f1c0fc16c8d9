"""Real-photo inversion (paper Sec. VI) on the tiny models: a photo rendered from a known latent and
camera is recovered; the latent file, the CLI, the server op, the LPIPS loader."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceedit_core.errors import Cancelled, InputError
from faceedit_core.next3d.generator import flame_inputs
from faceedit_core.paper.invert import (
    InvertConfig,
    camera_c,
    initial_camera,
    invert_photo,
    load_photo,
    save_inversion,
    seeded_uniforms,
    w_stats,
)
from faceedit_core.paper.latents import load_latent
from faceedit_core.paper.perceptual import load_perceptual, tiny_perceptual_files
from faceedit_core.params import FlameParams
from faceedit_core.render.cameras import orbit
from tests.helpers import hostile_files as H
from tests.helpers.paper import tiny_models, write_models_dir

N_AVG = 200


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("tiny_weights"))


@pytest.fixture(scope="module")
def truth(models):
    """A photo rendered by the tiny Next3D from a known single w (half way from w_avg to a sampled
    w) and a known camera (yaw 8, pitch -4 degrees), with its FLAME parameters."""
    G, layer = models.generator, models.flame
    w_avg, _ = w_stats(G, N_AVG, 0, "cpu")
    z = torch.randn(1, 512, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        w = G.mapping(z, orbit([0.0], [0.0]).eg3d_c(), truncation_psi=1.0)[:, :1]
    ws = (w_avg[:, None] + 0.5 * (w - w_avg[:, None])).expand(1, 28, 512).clone()
    g = torch.Generator().manual_seed(2)
    params = FlameParams.zeros(1, layer.n_shape, layer.n_exp).replace(
        expression=torch.randn(1, layer.n_exp, generator=g) * 0.3
    )
    c = orbit([8.0], [-4.0]).eg3d_c()
    with torch.no_grad():
        photo = G.synthesis(ws, c, flame_inputs(layer, params), uniforms=seeded_uniforms(G, 5, "cpu"))["image"]
    return {"ws": ws, "c": c, "params": params, "photo": photo, "w_avg": w_avg}


def _render(models, ws, c, params, seed):
    with torch.no_grad():
        G = models.generator
        return G.synthesis(ws, c, flame_inputs(models.flame, params), uniforms=seeded_uniforms(G, seed, "cpu"))["image"]


@pytest.mark.slow
def test_a_photo_rendered_from_a_known_latent_and_camera_is_recovered(models, truth, tmp_path):
    """30 steps: the reconstruction's pixel loss falls under a fifth of the starting point's (w_avg,
    frontal camera), so does a novel view's error (the face is recovered in 3D, not just from the
    photo's view), and the latent ends no farther from the truth than it started. (A random-weight
    generator maps many (w, camera) pairs to nearly one image, demodulation being blind to the
    scale of its styles: a tighter latent bound, or a camera bound while w is free, would test
    the random weights, not the inversion; the camera is checked with the latent known, below.)"""
    cfg = InvertConfig(steps=30, lr=0.02, camera_lr=0.01, noise=0.0, n_avg=N_AVG, identity=0.1)
    events = []
    result = invert_photo(models, truth["photo"], truth["params"], cfg, progress=events.append)
    assert len(events) == 30 and {"loss", "loss_pixel", "loss_identity"} <= set(events[-1])
    avg = truth["w_avg"][:, None].expand(1, 28, 512)
    front = orbit([0.0], [0.0]).eg3d_c()
    start = F.mse_loss(_render(models, avg, front, truth["params"], 5), truth["photo"]).item()
    assert result.losses["pixel"] < 0.2 * start, (result.losses, start)
    novel = orbit([-20.0], [5.0]).eg3d_c()
    seen = _render(models, truth["ws"], novel, truth["params"], 9)
    before = F.mse_loss(_render(models, avg, novel, truth["params"], 9), seen).item()
    after = F.mse_loss(_render(models, result.ws, novel, truth["params"], 9), seen).item()
    assert after < 0.2 * before, (after, before)
    dist0 = (truth["w_avg"][0] - truth["ws"][0, 0]).norm()
    assert (result.ws[0] - truth["ws"][0, 0]).norm(dim=-1).max() < 1.1 * dist0
    assert torch.equal(result.ws[:, 0], result.ws[:, 27])  # mode "w": one w for all 28 rows
    manifest = save_inversion(tmp_path / "face", result, {"photo_sha256": "x"})
    back = load_latent(manifest)
    assert torch.equal(back.ws, result.ws) and torch.equal(back.c, result.c)
    assert torch.equal(back.params.expression, truth["params"].expression)
    assert back.manifest["losses"] == result.losses and back.manifest["steps"] == 30


@pytest.mark.slow
def test_pose_optimisation_recovers_the_camera_of_a_known_latent(models, truth):
    cfg = InvertConfig(steps=15, camera_lr=0.01, optimize_latent=False, n_avg=N_AVG, identity=0.0)
    result = invert_photo(models, truth["photo"], truth["params"], cfg, init_ws=truth["ws"][:, :1])
    assert torch.equal(result.ws, truth["ws"])  # the latent stays as given
    before = (orbit([0.0], [0.0]).eg3d_c() - truth["c"])[:, :16].abs().max()
    after = (result.c - truth["c"])[:, :16].abs().max()
    assert after < 0.5 * before, (after, before)


def test_inversion_modes_progress_cancel_and_input_checks(models, truth, tmp_path):
    vgg, lpips = tiny_perceptual_files(tmp_path)
    net = load_perceptual(vgg, lpips)
    cfg = InvertConfig(steps=2, mode="w+", n_avg=N_AVG, identity=0.0)
    flags = [p.requires_grad for p in models.generator.parameters()]
    result = invert_photo(models, truth["photo"], truth["params"], cfg, perceptual=net)
    assert result.ws.shape == (1, 28, 512) and not torch.equal(result.ws[:, 0], result.ws[:, 27])  # free rows
    assert set(result.losses) == {"total", "pixel", "perceptual"} and result.c.shape == (1, 25)
    assert [p.requires_grad for p in models.generator.parameters()] == flags  # frozen only while it runs
    assert all(p.grad is None for p in models.generator.parameters())
    seen = []
    with pytest.raises(Cancelled, match="step 1"):
        invert_photo(models, truth["photo"], truth["params"], cfg, progress=seen.append, cancel=lambda: len(seen) >= 1)
    with pytest.raises(InputError, match="photo must be"):
        invert_photo(models, truth["photo"][..., :32, :32], truth["params"], cfg)
    with pytest.raises(InputError, match="mode"):
        invert_photo(models, truth["photo"], truth["params"], InvertConfig(mode="z"))
    with pytest.raises(InputError, match="not neither"):
        invert_photo(
            models, truth["photo"], truth["params"], InvertConfig(optimize_latent=False, optimize_camera=False)
        )
    with pytest.raises(InputError, match=r"w\+"):
        invert_photo(models, truth["photo"], truth["params"], InvertConfig(steps=1), init_ws=torch.randn(1, 28, 512))
    with pytest.raises(InputError, match="one set"):
        invert_photo(models, truth["photo"], truth["params"].cat([truth["params"]] * 2), cfg)


def test_inversion_runs_the_super_resolution_in_float32(models, truth):
    """The backward pass of the inversion reaches every pixel through the super-resolution, as
    training's does: float16 blocks ("auto" on CUDA, "fp16") run in float32 for it, "bf16" is
    kept, and the setting is restored afterwards."""
    sr = models.generator.superresolution
    cfg = InvertConfig(steps=1, n_avg=N_AVG, identity=0.0)
    for given, during_expected in (("fp16", "fp32"), ("auto", "fp32"), ("bf16", "bf16")):
        sr.precision, seen = given, []
        try:
            invert_photo(models, truth["photo"], truth["params"], cfg, progress=lambda e: seen.append(sr.precision))
        finally:
            after, sr.precision = sr.precision, "auto"
        assert seen == [during_expected] and after == given


def test_cameras_are_next3d_orbits_and_start_from_the_inverse_head_rotation():
    """A head turned by +yaw (and nodding) seen from the front is the unturned head seen from -yaw."""
    torch.testing.assert_close(camera_c(torch.zeros(3)), orbit([0.0], [0.0]).eg3d_c(), atol=1e-6, rtol=0)
    angles = torch.tensor([np.deg2rad(10.0), np.deg2rad(-5.0), 0.0])
    torch.testing.assert_close(camera_c(angles), orbit([10.0], [-5.0]).eg3d_c(), atol=1e-6, rtol=0)
    start = initial_camera(torch.tensor([[0.0, np.deg2rad(15.0), 0.0]]))
    torch.testing.assert_close(start, torch.tensor([np.deg2rad(-15.0), 0.0, 0.0]).float(), atol=1e-6, rtol=0)
    tilted = initial_camera(torch.tensor([[0.0, 0.0, np.deg2rad(12.0)]]))  # head roll -> camera roll
    assert abs(abs(float(tilted[2])) - np.deg2rad(12.0)) < 1e-5 and abs(float(tilted[0])) < 1e-5
    angles = torch.zeros(3, requires_grad=True)
    camera_c(angles)[0, :12].sum().backward()
    assert angles.grad.abs().min() > 0  # differentiable in all three angles


def test_photos_load_as_square_images_in_range(tmp_path):
    from PIL import Image

    rgb = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    (tmp_path / "p.png").write_bytes(buf.getvalue())
    for source in (tmp_path / "p.png", buf.getvalue()):
        img = load_photo(source, 32)
        assert img.shape == (1, 3, 32, 32) and -1 <= img.min() and img.max() <= 1
    with pytest.raises(InputError, match="PNG/JPEG"):
        load_photo(b"not an image", 32)


def test_lpips_reads_vgg16_weights_safely(tmp_path):
    vgg, lpips = tiny_perceptual_files(tmp_path)
    net = load_perceptual(vgg, lpips)
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    d = net(a, b)
    assert d.shape == (2,) and (d > 0).all() and net(a, a).abs().max() < 1e-6
    assert not any(p.requires_grad for p in net.parameters()) and net.calibrated
    assert not load_perceptual(vgg).calibrated
    H.assert_weights_loader_checks(load_perceptual, vgg, "features.14.weight", "features.14", tmp_path)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, truth):
    """A tiny models folder with a perceptual/ folder, and the truth photo as a PNG."""
    from PIL import Image

    root = write_models_dir(tmp_path_factory.mktemp("models"), guidance=True)
    tiny_perceptual_files(root / "perceptual")
    rgb = ((truth["photo"][0].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(root / "photo one.png")
    emoca = root / "emoca"
    emoca.mkdir()
    np.save(emoca / "shape.npy", np.zeros((1, 100), np.float32))
    np.save(emoca / "exp.npy", truth["params"].expression[:, :50].numpy())
    np.save(emoca / "pose.npy", np.zeros((1, 6), np.float32))
    return root


def test_cli_inverts_a_photo_into_a_latent_file_and_edits_it(models_dir, tmp_path):
    from click.testing import CliRunner

    from faceedit_core.cli import main
    from faceedit_core.mappers import DualMappers, MapperConfig
    from faceedit_core.paper.mapper_sets import save_mapper_set

    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    save_mapper_set(
        root / "mappers" / "smile",
        DualMappers(MapperConfig(n_exp=50, hidden=16, layers=2, texture_levels=(14,))),
        "smile",
        {},
    )
    args = ["invert", str(root / "photo one.png"), "--models", str(root), "--flame-params", str(root / "emoca")]
    done = CliRunner().invoke(main, args + ["--steps", "2", "--prompt", "smile"])
    assert done.exit_code == 0, done.output
    latent = load_latent(root / "latents" / "photo-one")
    assert latent.ws.shape == (1, 28, 512) and latent.c.shape == (1, 25) and latent.manifest["steps"] == 2
    assert latent.manifest["model_hashes"]["perceptual_vgg"] and "perceptual" in latent.manifest["losses"]
    assert "identity" in latent.manifest["losses"]  # ArcFace from the models folder
    assert (root / "latents" / "photo-one.png").is_file() and (root / "latents" / "photo-one_edit.png").is_file()
    bad = CliRunner().invoke(main, args[:-2] + ["--flame-params", str(root / "flame")])
    assert bad.exit_code == 1 and "EMOCA" in bad.output


def test_server_invert_op_saves_a_named_latent_the_edit_ops_use(models_dir, tmp_path):
    from backend_server import handlers
    from faceedit_core.factory import build_editor
    from faceedit_wire import protocol as P

    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    shutil.rmtree(root / "perceptual")
    editor = build_editor(root)
    ctx = {"progress": lambda e: None, "cancelled": lambda: False}
    params = FlameParams.from_emoca(root / "emoca").padded(editor.layer.n_shape, editor.layer.n_exp)
    arrays = {k: v.astype(np.float32) for k, v in params.to_numpy().items()}
    photo = (root / "photo one.png").read_bytes()
    out = handlers.invert(editor, {"photo": photo, "params": arrays, "name": "me", "steps": 2}, ctx)
    assert out["latent"] == "me" and out["ws"].shape == (1, 28, 512) and out["cameras"].shape == (1, 25)
    assert set(out["losses"]) == {"total", "pixel", "identity"}
    torch.testing.assert_close(editor.identity_latent(latent="me", names_only=True), torch.from_numpy(out["ws"]))
    for bad in ({"photo": "x"}, {"name": "../me"}, {"mode": "z"}, {"steps": 0}, {"steps": 1.5}):
        with pytest.raises((P.ProtocolError, InputError)):
            handlers.invert(editor, {"photo": photo, "params": arrays, "steps": 1, **bad}, ctx)
    steps = []
    cancelled = {"progress": steps.append, "cancelled": lambda: len(steps) >= 1}
    with pytest.raises(Cancelled, match="step 1 of 3"):
        handlers.invert(editor, {"photo": photo, "params": arrays, "name": "gone", "steps": 3}, cancelled)
    assert not list((root / "latents").glob("gone*"))  # a cancelled inversion saves nothing
