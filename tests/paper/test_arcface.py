"""ArcFace identity networks: both checkpoint layouts through the user-file loader, crop, loss."""

from __future__ import annotations

import pytest
import torch

from faceedit_core.errors import InputError, MissingModelError
from faceedit_core.paper.arcface import (
    KNOWN_DEPTHS,
    TINY_ARCFACE,
    ArcFaceConfig,
    IdentityNet,
    build_backbone,
    identity_loss,
    infer_arcface_config,
    load_arcface,
    tiny_arcface_file,
)

LAYOUTS = ("ir_se", "ir", "iresnet")


@pytest.fixture(scope="module")
def arcface_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("arcface")


@pytest.fixture(scope="module", params=LAYOUTS)
def tiny_net(request, arcface_dir):
    return load_arcface(tiny_arcface_file(arcface_dir / request.param, layout=request.param))


def _faces(n: int, seed: int, size: int = 256) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_tiny_files_load_with_their_layout_and_depth(tiny_net):
    cfg = tiny_net.config
    assert cfg.blocks == TINY_ARCFACE["blocks"] and cfg.widths == TINY_ARCFACE["widths"]
    assert tiny_net.layout in LAYOUTS and tiny_net.embed(_faces(2, 0)).shape == (2, 512)


def test_identity_of_an_image_with_itself_is_one_and_with_another_lower(tiny_net):
    a, b = _faces(3, 1), _faces(3, 2)
    torch.testing.assert_close(tiny_net.similarity(a, a), torch.ones(3), atol=1e-5, rtol=0)
    assert (tiny_net.similarity(a, b) < 0.9999).all()
    assert identity_loss(tiny_net, a, a).abs() < 1e-5
    assert identity_loss(tiny_net, a, b) > 1e-4


def test_save_load_round_trip_reproduces_embeddings(arcface_dir):
    path = tiny_arcface_file(arcface_dir / "rt", seed=5)
    a, b = load_arcface(path), load_arcface(path)
    x = _faces(2, 3)
    torch.testing.assert_close(a.embed(x), b.embed(x))
    other = load_arcface(tiny_arcface_file(arcface_dir / "rt6", seed=6))
    assert (other.embed(x) - a.embed(x)).abs().max() > 1e-3


def test_loss_gradients_reach_the_edited_images_only(tiny_net):
    edit = _faces(2, 4).requires_grad_(True)
    init = _faces(2, 5).requires_grad_(True)
    identity_loss(tiny_net, edit, init).backward()
    assert edit.grad is not None and edit.grad.abs().sum() > 0
    assert init.grad is None  # the initial images are a fixed target
    assert all(not p.requires_grad for p in tiny_net.parameters())


def test_network_stays_in_inference_mode(tiny_net):
    tiny_net.train()
    assert not tiny_net.backbone.training
    x = _faces(1, 7)  # batch of one works only with BN running statistics
    assert torch.isfinite(tiny_net.embed(x)).all()


def test_crop_takes_styleclip_face_box():
    img = torch.zeros(1, 3, 256, 256)
    img[:, :, 35:223, 32:220] = 1.0  # the face box in the 256 frame
    crop = IdentityNet.crop(img)
    assert crop.shape == (1, 3, 112, 112)
    torch.testing.assert_close(crop, torch.ones_like(crop))
    big = torch.nn.functional.interpolate(img, size=512, mode="nearest")  # same face at 512
    torch.testing.assert_close(IdentityNet.crop(big), crop)


@pytest.mark.parametrize("name", sorted(KNOWN_DEPTHS))
def test_full_size_layouts_infer_back_from_their_keys(name):
    layout, blocks = KNOWN_DEPTHS[name]
    sd = build_backbone(ArcFaceConfig(layout, blocks)).state_dict()
    cfg = infer_arcface_config(sd)
    assert (cfg.layout, cfg.blocks, cfg.widths, cfg.embed_dim) == (layout, blocks, (64, 128, 256, 512), 512)


def test_ir_se50_parameter_count_matches_the_release():
    net = build_backbone(ArcFaceConfig("ir_se", KNOWN_DEPTHS["ir_se50"][1]))
    # model_ir_se50.pth holds 43.8 M parameters (175 MB of float32)
    assert sum(p.numel() for p in net.parameters()) == 43_797_696
    assert "body.23.res_layer.5.fc2.weight" in net.state_dict() and "output_layer.3.weight" in net.state_dict()


def test_wrong_layout_is_refused_naming_the_layout_expected(arcface_dir):
    path = tiny_arcface_file(arcface_dir / "iresnet_file", layout="iresnet")
    with pytest.raises(InputError, match=r"expected an ArcFace 'ir_se' checkpoint \(keys input_layer"):
        load_arcface(path, layout="ir_se")
    with pytest.raises(InputError, match=r"'iresnet100'.*stages \[3, 13, 30, 3\]"):
        load_arcface(path, layout="iresnet100")


def test_unknown_keys_and_bad_shapes_are_named(tmp_path, arcface_dir):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="not an ArcFace checkpoint.*IR-SE50.*iresnet"):
        load_arcface(tmp_path / "other.pth")
    sd = torch.load(tiny_arcface_file(arcface_dir / "shape"), weights_only=True)
    sd["output_layer.3.weight"] = torch.zeros(512, 10)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(InputError, match=r"does not fit the ArcFace 'ir_se' layout.*output_layer\.3\.weight"):
        load_arcface(tmp_path / "bad.pth")
    del sd["output_layer.3.weight"]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(InputError, match="missing"):
        load_arcface(tmp_path / "cut.pth")


def test_missing_file_names_what_and_where(tmp_path):
    with pytest.raises(MissingModelError, match=r"arcface/model_ir_se50\.pth"):
        load_arcface(tmp_path)


def test_models_dir_finds_the_arcface_file(tmp_path):
    tiny_arcface_file(tmp_path / "arcface", layout="iresnet")
    assert load_arcface(tmp_path).layout == "iresnet"


def test_wrapped_state_dict_with_module_prefix_loads(tmp_path, arcface_dir):
    sd = torch.load(tiny_arcface_file(arcface_dir / "wrap"), weights_only=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
    x = _faces(1, 8)
    torch.testing.assert_close(
        load_arcface(tmp_path / "wrapped.pth").embed(x),
        load_arcface(arcface_dir / "wrap" / "tiny_arcface_ir_se.pth").embed(x),
    )


def test_old_checkpoints_without_bn_step_counters_load(tmp_path, arcface_dir):
    path = tiny_arcface_file(arcface_dir / "old")
    sd = torch.load(path, weights_only=True)
    torch.save({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, tmp_path / "old.pth")
    x = _faces(1, 9)
    torch.testing.assert_close(load_arcface(tmp_path / "old.pth").embed(x), load_arcface(path).embed(x))
