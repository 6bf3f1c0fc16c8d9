"""Safe import of the Next3D release pickle, and our own safetensors + manifest format.

The test writes a pickle with the release's structure (README of the reference: persistent
networks rebuilt by torch_utils.persistence._reconstruct_persistent_obj(meta) with the module
source inside; other classes by reference; EasyDict settings) from the tiny generator. Its
module_src would create a file and raise if anyone executed it."""

from __future__ import annotations

import pickle
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager

import pytest
import torch

from faceedit_core.errors import InputError, MissingModelError, UnsafeFileError
from faceedit_core.next3d import checkpoint as ckpt
from faceedit_core.next3d.generator import Next3DGenerator
from faceedit_core.storage import checkpoints

PERSISTENT = {  # the release's persistent classes (module_src carried in the pickle)
    "": "training_avatar_texture.triplane_next3d.TriPlaneGenerator",
    "texture_backbone": "training_avatar_texture.networks_stylegan2.Generator",
    "backbone": "training_avatar_texture.networks_stylegan2.Generator",
    "mouth_backbone": "training_avatar_texture.networks_stylegan2_styleunet.Generator",
    "neural_blending": "training_avatar_texture.networks_stylegan2_styleunet.Generator",
    "superresolution": "training_avatar_texture.superresolution.SuperresolutionHybrid8XDC",
}


def evil_source(marker) -> str:
    return f"open({str(marker)!r}, 'w').write('module_src was executed')\nraise RuntimeError('executed')\n"


@contextmanager
def fake_modules():
    """Importable stand-ins for the release's modules, only while pickling."""
    made = {}

    def module(name):
        for i in range(1, name.count(".") + 2):
            part = ".".join(name.split(".")[:i])
            if part not in sys.modules:
                sys.modules[part] = made[part] = types.ModuleType(part)
        return sys.modules[name]

    def reconstruct(meta):  # what the official loader does: run module_src (never called here)
        exec(meta["module_src"], {})

    reconstruct.__module__, reconstruct.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj"
    module("torch_utils.persistence")._reconstruct_persistent_obj = reconstruct
    easy = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    module("dnnlib.util").EasyDict = easy

    def cls_for(path):
        mod, name = path.rsplit(".", 1)
        m = module(mod)
        if not hasattr(m, name):
            setattr(m, name, type(name, (), {"__module__": mod}))
        return getattr(m, name)

    try:
        yield reconstruct, easy, cls_for
    finally:
        for name in made:
            sys.modules.pop(name, None)


class Persistent:
    def __init__(self, reconstruct, meta):
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


def by_reference(cls, state):
    """An instance of a class pickled by reference: NEWOBJ, then BUILD with its __dict__."""
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def module_tree(module, path, tools, marker, extra=None):
    reconstruct, easy, cls_for = tools
    state = {
        "training": False,
        "_parameters": OrderedDict(module._parameters),
        "_buffers": OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(module._non_persistent_buffers_set),
        "_modules": OrderedDict(
            (k, module_tree(m, f"{path}.{k}".lstrip("."), tools, marker)) for k, m in module._modules.items()
        ),
    }
    state.update(extra or {})
    if path in PERSISTENT:
        state["_init_args"], state["_init_kwargs"] = (), easy(channel_base=1)
        meta = {
            "type": "class",
            "version": 6,
            "module_src": evil_source(marker),
            "class_name": PERSISTENT[path],
            "state": state,
        }
        return Persistent(reconstruct, meta)
    return by_reference(cls_for(f"torch.nn.modules.misc.{type(module).__name__}"), state)


def write_release_pickle(g: Next3DGenerator, path, marker) -> None:
    cfg = g.config
    with fake_modules() as tools:
        easy = tools[1]
        render = easy(
            depth_resolution=cfg.render.depth_resolution,
            depth_resolution_importance=cfg.render.depth_resolution_importance,
            ray_start=2.25,
            ray_end=3.3,
            box_warp=1,
            clamp_mode="softplus",
            c_scale=1,
            superresolution_noise_mode="none",
            sr_antialias=True,
            decoder_lr_mul=1,
        )
        kwargs = easy(
            channel_base=cfg.channel_base,
            channel_max=cfg.channel_max,
            sr_num_fp16_res=4,
            mapping_kwargs=easy(num_layers=2),
            rendering_kwargs=render,
            num_fp16_res=0,
            conv_clamp=None,
            fused_modconv_default="inference_only",
        )
        extra = {
            "rendering_kwargs": render,
            "neural_rendering_resolution": cfg.neural_rendering_resolution,
            "orth_scale": 5.0,
            "uv_face_mask": (g.uv_mask * 255).round(),
            "_init_kwargs": kwargs,
        }
        root = module_tree(g, "", tools, marker)
        root.meta["state"].update(extra)
        data = {"G": root, "D": None, "G_ema": root, "augment_pipe": None, "training_set_kwargs": easy(resolution=512)}
        path.write_bytes(pickle.dumps(data, protocol=4))


@pytest.fixture(scope="module")
def tiny():
    return Next3DGenerator.from_config("tiny")


@pytest.fixture
def release_pickle(tiny, tmp_path):
    marker = tmp_path / "executed.txt"
    path = tmp_path / "next3d_release_like.pkl"
    write_release_pickle(tiny, path, marker)
    return path, marker


def test_release_pickle_is_read_without_executing_module_src(tiny, release_pickle):
    path, marker = release_pickle
    rel = ckpt.read_release_pickle(path)
    assert not marker.exists()
    ours = tiny.state_dict()
    assert list(rel.state_dict) == list(ours)  # the walk gives state_dict()'s names, in order
    assert all(torch.equal(rel.state_dict[k], ours[k]) for k in ours)
    assert "uv_mask" not in rel.state_dict  # non-persistent buffer
    assert rel.meta["class_name"].endswith("TriPlaneGenerator")
    assert "module_src" in rel.meta and "open(" in rel.meta["module_src"]  # kept as data
    assert rel.attributes["neural_rendering_resolution"] == 16 and rel.attributes["orth_scale"] == 5.0
    assert rel.attributes["rendering_kwargs"]["depth_resolution"] == tiny.config.render.depth_resolution
    assert not marker.exists()


def test_from_checkpoint_builds_the_generator_and_converts_once(tiny, release_pickle, monkeypatch):
    path, marker = release_pickle
    g = Next3DGenerator.from_checkpoint(path)
    assert not marker.exists()
    assert g.config.channel_base == tiny.config.channel_base and g.config.sr_block_channels == (16, 8)
    assert g.neural_rendering_resolution == 16 and g.render_settings == tiny.render_settings
    assert (g.config.plane_resolution, g.config.mouth_resolution, g.config.output_resolution) == (32, 16, 64)
    assert all(torch.equal(v, tiny.state_dict()[k]) for k, v in g.state_dict().items())
    assert torch.allclose(g.uv_mask, tiny.uv_mask)
    cached = ckpt._cache_stem(path).with_suffix(".json")
    assert cached.is_file()
    monkeypatch.setattr(ckpt, "read_release_pickle", lambda *a, **k: pytest.fail("the pickle was read again"))
    again = Next3DGenerator.from_checkpoint(path)
    assert all(torch.equal(v, g.state_dict()[k]) for k, v in again.state_dict().items())


def test_malicious_globals_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return os.system, ("echo pwned > " + str(tmp_path / "pwned"),)

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Evil()}))
    with pytest.raises(UnsafeFileError):
        ckpt.read_release_pickle(path)
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"G": 1}))
    with pytest.raises(InputError, match="G_ema"):
        ckpt.read_release_pickle(tmp_path / "plain.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="not a readable"):
        ckpt.read_release_pickle(tmp_path / "junk.pkl")
    with pytest.raises(MissingModelError, match="next3d_ffhq_512.pkl"):
        Next3DGenerator.from_checkpoint(tmp_path / "absent.pkl")


def test_own_format_round_trip_and_corruption(tiny, tmp_path):
    manifest = ckpt.save_checkpoint(tiny, tmp_path / "tiny_next3d")
    weights = checkpoints.weights_path(tmp_path / "tiny_next3d")
    g = Next3DGenerator.from_checkpoint(weights)  # the weights file names its checkpoint too
    assert g.config == tiny.config and torch.equal(g.uv_mask, tiny.uv_mask)
    assert all(torch.equal(v, tiny.state_dict()[k]) for k, v in g.state_dict().items())
    assert Next3DGenerator.from_checkpoint(manifest).config == tiny.config
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt"):
        Next3DGenerator.from_checkpoint(manifest)
