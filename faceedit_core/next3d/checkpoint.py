"""Loading Next3D weights without executing anything: the release pickle and our own format.

The release (`next3d_ffhq_512.pkl`) is a pickle of dict(G, D, G_ema, ...). Its networks are
StyleGAN2-ADA "persistent" objects: each is rebuilt by
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, where meta carries the module's
full source (`module_src`) and the object's `__dict__` (`state`). The official loader executes
that source. `ReleaseUnpickler` does not: the reconstructor is replaced by `PersistentRecord`
(which keeps meta as data), the classes pickled by reference (OSGDecoder, torch containers,
EasyDict, ...) by inert `StubRecord`s, tensors are rebuilt from their storages' bytes with
their views checked (unpickle.py: positive strides, inside the storage, within the file's
budget, so an `expand`-ed Parameter cannot turn 4 bytes into a gigabyte on `clone`), and any
other global is refused without importing anything to look it up. `release_state_dict` then
walks `_parameters` / `_buffers` / `_modules` into the dotted names `state_dict()` would give.
Any failure while reading is an `InputError` naming the file.

Our format: `<stem>.json` (config, sha256) and the weights it names (state dict + `uv_mask`;
`faceedit_core.storage.checkpoints`). A release pickle is converted once into a cache under
FACEEDIT_HOME and later loads read the cache.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceedit_core.errors import InputError, MissingModelError, UnsafeFileError
from faceedit_core.next3d.configs import CONFIGS, Next3DConfig
from faceedit_core.next3d.renderer import RenderSettings
from faceedit_core.next3d.topology import Next3DTopology
from faceedit_core.storage import checkpoints
from faceedit_core.storage.home import faceedit_home, sha256_file
from faceedit_core.storage.unpickle import MAX_DEPTH, SafeUnpickler, reading_errors

FORMAT = "faceedit-next3d"
FORMAT_VERSION = 1
# Modules whose classes may appear in the release pickle by reference; they become inert stubs.
STUB_MODULE_PREFIXES = (
    "training",
    "training_avatar_texture",
    "torch_utils",
    "dnnlib",
    "torch.nn.modules",
    "v13_neural_blending",
    "volumetric_rendering",
)
RENDER_ATTRIBUTES = ("rendering_kwargs", "neural_rendering_resolution", "orth_scale", "orth_shift")


class PersistentRecord:
    """Stand-in for a persistent network: `meta` = {type, version, module_src, class_name, state}.
    module_src is kept as text and never executed."""

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
            raise UnsafeFileError("persistent object without a dict state in the Next3D pickle")
        self.meta = meta

    @property
    def class_name(self) -> str:
        return str(self.meta.get("class_name"))

    @property
    def state(self) -> dict:
        return self.meta["state"]


class StubRecord:
    """Stand-in for an object of a class pickled by reference: keeps its path and state."""

    class_path = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state[1] if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict) else state


class EasyDictRecord(dict):
    """dnnlib.util.EasyDict as a plain dict."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.update(state)


def _stub_class(module: str, name: str) -> type:
    return type(f"Stub_{name}", (StubRecord,), {"class_path": f"{module}.{name}"})


def _safe_reconstructor(cls, base, state=None):
    """copyreg._reconstructor limited to this loader's own stand-ins."""
    if not (isinstance(cls, type) and issubclass(cls, (StubRecord, EasyDictRecord))):
        raise UnsafeFileError(f"refusing copyreg._reconstructor for {cls!r}")
    return cls.__new__(cls)


class ReleaseUnpickler(SafeUnpickler):
    """SafeUnpickler (numpy and torch tensor rebuilding) plus the Next3D pickle's stand-ins."""

    def __init__(self, file):
        super().__init__(file, allow_torch=True)

    def _rebuild_parameter(self, data, requires_grad=False, hooks=None, state=None):
        """torch._utils._rebuild_parameter(_with_state) for a checked tensor, without hooks or attributes."""
        if not isinstance(data, torch.Tensor) or hooks or state:
            raise UnsafeFileError("refusing a Parameter that is not a plain tensor (hooks or attributes)")
        return torch.nn.Parameter(data, requires_grad=bool(requires_grad))

    def _rebuild_from_type(self, func, cls, args, state=None):
        """torch._tensor._rebuild_from_type_v2 for plain tensors and parameters only."""
        if cls not in (torch.Tensor, torch.nn.Parameter) or func not in (self._rebuild_tensor, self._rebuild_parameter):
            raise UnsafeFileError(f"refusing to rebuild a tensor of type {cls!r} from the Next3D pickle")
        if not isinstance(args, tuple):
            raise UnsafeFileError("a tensor rebuilt without its arguments in the Next3D pickle")
        return func(*args)

    def find_class(self, module: str, name: str):
        # No name is looked up with getattr on a module: torch loads submodules lazily on
        # attribute access (`torch._inductor` alone imports about 900 modules).
        if (module, name) == ("torch_utils.persistence", "_reconstruct_persistent_obj"):
            return PersistentRecord
        if (module, name) == ("dnnlib.util", "EasyDict"):
            return EasyDictRecord
        if (module, name) == ("copyreg", "_reconstructor"):
            return _safe_reconstructor
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return self._rebuild_parameter
        if (module, name) == ("torch._tensor", "_rebuild_from_type_v2"):
            return self._rebuild_from_type
        if module == "torch" and isinstance(vars(torch).get(name), torch.dtype):
            return vars(torch)[name]
        if module == "torch" and name in ("device", "Size"):
            return str if name == "device" else tuple
        if module == "builtins" and name == "object":
            return object
        if any(module == p or module.startswith(p + ".") for p in STUB_MODULE_PREFIXES):
            return _stub_class(module, name)
        return super().find_class(module, name)


def _state_of(obj) -> dict:
    if isinstance(obj, PersistentRecord):
        return obj.state
    if isinstance(obj, StubRecord) and isinstance(obj.state, dict):
        return obj.state
    raise UnsafeFileError(f"unexpected module object {type(obj).__name__} in the Next3D pickle")


def release_state_dict(module_obj, prefix: str = "", _depth: int = 0) -> dict[str, torch.Tensor]:
    """Walk `_parameters`, `_buffers` (persistent ones) and `_modules` into dotted names."""
    if _depth > MAX_DEPTH:
        raise UnsafeFileError(f"modules nested deeper than {MAX_DEPTH} levels in the Next3D pickle")
    state = _state_of(module_obj)
    skip = state.get("_non_persistent_buffers_set") or ()
    if not isinstance(skip, (set, frozenset, list, tuple)):
        raise UnsafeFileError(f"{prefix or 'the generator'}: a malformed _non_persistent_buffers_set")
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers", "_modules"):
        if not isinstance(state.get(group) or {}, dict):
            raise UnsafeFileError(f"{prefix or 'the generator'}: its {group} is not a dict")
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise UnsafeFileError(f"{prefix}{name} in the Next3D pickle is not a tensor")
            out[prefix + str(name)] = value.detach().clone() if isinstance(value, torch.nn.Parameter) else value
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(release_state_dict(child, f"{prefix}{name}.", _depth + 1))
    return out


@dataclass
class ReleaseGenerator:
    """What the release pickle holds for G_ema: state dict, plain attributes, init kwargs, meta."""

    state_dict: dict[str, torch.Tensor]
    attributes: dict[str, Any]
    init_kwargs: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def read_release_pickle(path: str | os.PathLike, key: str = "G_ema") -> ReleaseGenerator:
    """The release pickle -> ReleaseGenerator of `key`, executing nothing from the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingModelError(
            f"Next3D checkpoint {path} does not exist (next3d_ffhq_512.pkl from the "
            "Next3D project page, in MODELS/next3d/)"
        )
    with reading_errors(f"{path} (a Next3D pickle)"):
        with open(path, "rb") as f:
            data = ReleaseUnpickler(f).load()
        g = data.get(key) if isinstance(data, dict) else None
        if g is None:
            keys = sorted(map(str, data))[:8] if isinstance(data, dict) else type(data).__name__
            raise InputError(f"{path} has no '{key}' entry (keys: {keys})")
        state = _state_of(g)
        attrs = {
            k: v
            for k, v in state.items()
            if isinstance(k, str) and not k.startswith("_") and not isinstance(v, (PersistentRecord, StubRecord))
        }
        meta = {k: v for k, v in g.meta.items() if k != "state"} if isinstance(g, PersistentRecord) else {}
        init_kwargs = state.get("_init_kwargs") or {}
        if not isinstance(init_kwargs, dict):
            raise UnsafeFileError(f"{path}: the generator's _init_kwargs is not a dict")
        return ReleaseGenerator(release_state_dict(g), attrs, dict(init_kwargs), meta)


def _plain(value):
    """EasyDict / numpy values -> JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value


def _sizes_from_state_dict(sd: dict, base: Next3DConfig) -> dict:
    """plane_resolution (the static backbone's last block b{P}), output_resolution (the last
    super-resolution block's noise buffer [O,O]) and mouth_resolution (4 * 2^encoders of the mouth
    StyleUNet) of a state dict; the base's values where a name is absent."""

    def count(pattern: str) -> list[int]:
        return sorted({int(m.group(1)) for k in sd if (m := re.match(pattern, k))})

    planes = count(r"backbone\.synthesis\.b(\d+)\.")
    encoders = count(r"mouth_backbone\.synthesis\.encoder\.(\d+)\.")
    noise = sd.get("superresolution.block1.conv1.noise_const")
    return dict(
        plane_resolution=planes[-1] if planes else base.plane_resolution,
        mouth_resolution=4 << len(encoders) if encoders else base.mouth_resolution,
        output_resolution=int(noise.shape[-1]) if noise is not None else base.output_resolution,
    )


def config_from_release(rel: ReleaseGenerator) -> Next3DConfig:
    """The configuration the pickle was built with (init kwargs, rendering settings, SR shapes)."""
    kw = _plain(rel.init_kwargs)
    rk = _plain(rel.attributes.get("rendering_kwargs") or kw.get("rendering_kwargs") or {})
    sd = rel.state_dict
    base = CONFIGS["full"]
    sr = (
        tuple(int(sd[f"superresolution.block{i}.conv1.weight"].shape[0]) for i in (0, 1))
        if "superresolution.block1.conv1.weight" in sd
        else base.sr_block_channels
    )
    nrr = rel.attributes.get("neural_rendering_resolution", base.neural_rendering_resolution)
    return base.with_(
        **_sizes_from_state_dict(sd, base),
        name="release",
        channel_base=int(kw.get("channel_base", base.channel_base)),
        channel_max=int(kw.get("channel_max", base.channel_max)),
        num_fp16_res=int(kw.get("num_fp16_res", base.num_fp16_res)),
        sr_num_fp16_res=int(kw.get("sr_num_fp16_res", base.sr_num_fp16_res)),
        conv_clamp=kw.get("conv_clamp", base.conv_clamp),
        fused_modconv_default=kw.get("fused_modconv_default", base.fused_modconv_default),
        mapping_layers=int((kw.get("mapping_kwargs") or {}).get("num_layers", base.mapping_layers)),
        neural_rendering_resolution=int(_plain(nrr)),
        sr_block_channels=sr,
        render=RenderSettings.from_kwargs(rk) if rk else base.render,
        sr_antialias=bool(rk.get("sr_antialias", True)),
        decoder_lr_mul=float(rk.get("decoder_lr_mul", 1.0)),
        c_scale=float(rk.get("c_scale", 1.0)),
    )


def release_uv_mask(rel: ReleaseGenerator) -> torch.Tensor | None:
    """The `uv_face_mask` attribute ([1,1,256,256] or an image array) as [256,256], if stored."""
    mask = rel.attributes.get("uv_face_mask")
    if mask is None:
        return None
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).to(torch.float32)
    while mask.dim() > 2:
        mask = mask[0] if mask.shape[0] <= 4 else mask[..., 0]
    return mask / 255.0 if mask.max() > 1 else mask


# ---------------------------------------------------------------- our format
def save_checkpoint(generator, stem: str | os.PathLike, source: dict | None = None) -> Path:
    """Write `<stem>.json` + its weights (storage/checkpoints.py); returns the manifest path."""
    tensors = dict(generator.state_dict())
    tensors["uv_mask"] = generator.uv_mask
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": generator.config.to_dict(),
        "source": source or {},
    }
    return checkpoints.save(stem, tensors, manifest)


def load_checkpoint(stem: str | os.PathLike) -> tuple[dict[str, torch.Tensor], torch.Tensor, Next3DConfig]:
    """-> (state dict, uv_mask [1,1,256,256], config) of a checkpoint written by save_checkpoint."""
    tensors, manifest = checkpoints.load(checkpoints.stem_of(stem))
    if manifest.get("format") != FORMAT:
        raise InputError(f"{stem} is not a FaceEdit Next3D checkpoint (format {manifest.get('format')!r})")
    if "uv_mask" not in tensors:
        raise InputError(f"{stem} lacks its uv_mask tensor")
    mask = tensors.pop("uv_mask")
    return tensors, mask, Next3DConfig.from_dict(manifest["config"])


def _cache_stem(pkl: Path) -> Path:
    st = pkl.stat()
    return faceedit_home() / "models" / "next3d_converted" / f"{pkl.stem}-{st.st_size}-{st.st_mtime_ns}"


def load_generator(cls, path: Path, uv_mask=None, cache: bool = True):
    """Next3DGenerator from a release pickle (converted once, cached) or our own checkpoint."""
    if path.suffix == ".pkl":
        cached = _cache_stem(path) if cache and path.is_file() else None
        if cached is not None and cached.with_suffix(".json").is_file() and uv_mask is None:
            return load_generator(cls, cached.with_suffix(".json"), cache=False)
        rel = read_release_pickle(path)
        mask = uv_mask if uv_mask is not None else release_uv_mask(rel)
        if mask is None:
            raise MissingModelError(f"{path} stores no uv_face_mask: pass uv_mask= DECA's data/uv_face_eye_mask.png")
        topology = Next3DTopology.from_state_dict(rel.state_dict, mask)
        g = _build(cls, config_from_release(rel), topology, rel.state_dict, str(path))
        if cached is not None:
            save_checkpoint(
                g,
                cached,
                source={
                    "path": str(path),
                    "sha256": sha256_file(path),
                    "class_name": rel.meta.get("class_name"),
                    "rendering_kwargs": _plain(rel.attributes.get("rendering_kwargs")),
                },
            )
        return g
    stem = checkpoints.stem_of(path)
    if not checkpoints.manifest_path(stem).is_file():
        raise MissingModelError(
            f"Next3D checkpoint {path} does not exist (a release .pkl, or <stem>.json + "
            "its weights written by FaceEdit)"
        )
    sd, mask, config = load_checkpoint(stem)
    if uv_mask is not None:
        mask = uv_mask
    return _build(cls, config, Next3DTopology.from_state_dict(sd, mask), sd, str(path))


def _build(cls, config, topology, sd, where):
    with torch.device("meta"):
        g = cls(config, topology)
    missing = sorted(set(g.state_dict()) ^ set(sd))
    if missing:
        raise InputError(
            f"{where}: state dict does not match the Next3D layout ({len(missing)} names differ, e.g. {missing[:5]})"
        )
    g.load_state_dict(sd, strict=True, assign=True)
    g.uv_mask = topology.uv_mask.clone()
    return g.eval()
