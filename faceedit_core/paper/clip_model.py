"""CLIP for guidance and metrics: an open_clip model built from a local weights file, frozen.

`load_clip(path)` never downloads: the architecture comes from the weights' shapes (ViT models;
give `arch`, an open_clip config name such as "RN50-quickgelu", for others), the weights from the
file (weights_file.read_state_dict: state dicts, safetensors, OpenAI's TorchScript release read
without running it). OpenAI's weights were trained with QuickGELU, open_clip's LAION ones with
GELU; `quick_gelu=None` means True unless `arch` names a GELU config, because the paper's model
is OpenAI's ViT-B/32.

Images enter as `[B,3,H,W]` RGB in [-1,1] (the generator's range) and go through a differentiable
copy of CLIP's preprocessing: [0,1], bicubic resize of the short side to the model's size, centre
crop, CLIP mean/std.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.paper.weights_file import find_weights, read_state_dict

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NOT_WEIGHTS = ("attn_mask", "input_resolution", "context_length", "vocab_size")
# open_clip's defaults for the tiny test model: a ViT with 64-wide towers of 2 layers, 32 px images
TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2},
}


class ClipGuidance(nn.Module):
    """A frozen open_clip model with differentiable image encoding from [-1,1] images."""

    def __init__(self, model: nn.Module, config: dict, source: str = ""):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.config = config
        self.source = source
        size = config["vision_cfg"]["image_size"]
        self.image_size = int(size if isinstance(size, int) else size[0])
        self.embed_dim = int(config["embed_dim"])
        self.context_length = int(config["text_cfg"].get("context_length", 77))
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "ClipGuidance":
        return super().train(False)  # always in eval mode: a frozen guidance network

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """images [B,3,H,W] in [-1,1] -> [B,3,S,S] normalised CLIP input (S = self.image_size)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"images must be [B,3,H,W], got {tuple(images.shape)}")
        x = (images.float() + 1) / 2
        S = self.image_size
        h, w = x.shape[-2:]
        if (h, w) != (S, S):
            scale = S / min(h, w)
            nh, nw = max(S, round(h * scale)), max(S, round(w * scale))
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=nh < h)
            top, left = (nh - S) // 2, (nw - S) // 2
            x = x[..., top : top + S, left : left + S]
        return (x - self.mean) / self.std

    def encode_images(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """images [B,3,H,W] in [-1,1] -> embeddings [B,D]; normalize=False gives the raw e_I of PAE."""
        e = self.model.encode_image(self.preprocess(images))
        return F.normalize(e, dim=-1) if normalize else e

    def encode_text(self, prompts: list[str] | tuple[str, ...], normalize: bool = True) -> torch.Tensor:
        """prompts (N strings) -> embeddings [N,D] (raw when normalize=False)."""
        import open_clip

        if isinstance(prompts, str) or not prompts:
            raise InputError("prompts must be a non-empty list of strings")
        tokens = open_clip.tokenize(list(prompts), context_length=self.context_length).to(self.mean.device)
        e = self.model.encode_text(tokens)
        return F.normalize(e, dim=-1) if normalize else e


def load_clip(
    path: str | os.PathLike, arch: str | None = None, device: str | torch.device = "cpu", quick_gelu: bool | None = None
) -> ClipGuidance:
    """A frozen ClipGuidance from a local weights file (or a models folder holding clip/<file>)."""
    from open_clip.model import CLIP

    file = find_weights(
        path, "clip", "ViT-B-32.pt", "CLIP ViT-B/32 weights (OpenAI's ViT-B-32.pt or an open_clip ViT-B-32 checkpoint)"
    )
    sd = read_state_dict(file)
    config = _named_config(arch) if arch else infer_clip_config(sd, file)
    if quick_gelu is not None:
        config["quick_gelu"] = quick_gelu
    elif not arch:
        config["quick_gelu"] = True
    model = CLIP(**config)
    expected = model.state_dict()
    # tensors that are not weights (open_clip rebuilds them from the config); TorchScript archives
    # carry them, OpenAI's also a per-block attn_mask attribute
    sd = {k: v for k, v in sd.items() if k.rsplit(".", 1)[-1] not in NOT_WEIGHTS}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(k for k in set(sd) & set(expected) if sd[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise InputError(
            f"{file}: weights do not fit the CLIP architecture {_describe(config)}: "
            f"missing {missing[:4]}, unexpected {unexpected[:4]}, wrong shape {wrong[:4]}"
        )
    if sd["logit_scale"].ndim != expected["logit_scale"].ndim:
        sd["logit_scale"] = sd["logit_scale"].reshape(expected["logit_scale"].shape)
    model.load_state_dict(sd)
    return ClipGuidance(model, config, str(file)).to(device)


def _named_config(arch: str) -> dict:
    import open_clip

    config = open_clip.get_model_config(arch)
    if config is None:
        raise InputError(
            f"arch '{arch}' is not an open_clip model config (e.g. 'ViT-B-32-quickgelu', 'ViT-B-16', 'RN50-quickgelu')"
        )
    if "timm_model_name" in config.get("vision_cfg", {}) or "hf_model_name" in config.get("text_cfg", {}):
        raise InputError(
            f"arch '{arch}' needs timm/Hugging Face towers; only open_clip's own CLIP towers are supported"
        )
    return config


def infer_clip_config(sd: dict[str, torch.Tensor], file: Path | str = "weights") -> dict:
    """An open_clip CLIP config for a ViT state dict, from tensor shapes (heads = width / 64, as OpenAI's)."""
    if "visual.conv1.weight" not in sd or "visual.positional_embedding" not in sd:
        raise InputError(
            f"{file}: not a ViT CLIP state dict (no visual.conv1.weight / visual.positional_embedding); "
            f"for other CLIP architectures pass arch, e.g. 'RN50-quickgelu'"
        )

    def n_layers(prefix: str) -> int:
        return len({m.group(1) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))})

    width, _, patch, _ = sd["visual.conv1.weight"].shape
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = sd["ln_final.weight"].shape[0]
    return {
        "embed_dim": int(sd["text_projection"].shape[1]),
        "vision_cfg": {
            "image_size": int(patch * grid),
            "layers": n_layers("visual.transformer.resblocks."),
            "width": int(width),
            "patch_size": int(patch),
            "head_width": 64,
            "mlp_ratio": sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
        },
        "text_cfg": {
            "context_length": int(sd["positional_embedding"].shape[0]),
            "vocab_size": int(sd["token_embedding.weight"].shape[0]),
            "width": int(text_width),
            "heads": max(1, int(text_width) // 64),
            "layers": n_layers("transformer.resblocks."),
            "mlp_ratio": sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / text_width,
        },
    }


def _describe(config: dict) -> str:
    v, t = config["vision_cfg"], config["text_cfg"]
    return (
        f"(embed {config['embed_dim']}, vision {v.get('layers')}x{v.get('width')} patch {v.get('patch_size')} "
        f"image {v.get('image_size')}, text {t.get('layers')}x{t.get('width')})"
    )


def tiny_clip_file(directory: str | os.PathLike, seed: int = 0, fmt: str = "pt") -> Path:
    """Write a random-weight tiny CLIP (TINY_CLIP_CONFIG) as a state dict file; returns its path.

    fmt: "pt" (torch.save), "safetensors", or "torchscript" (a traced archive, like OpenAI's release).
    """
    import open_clip
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_CLIP_CONFIG.items()}).eval()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "pt":
        path = directory / "tiny_clip.pt"
        torch.save(model.state_dict(), path)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        path = directory / "tiny_clip.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    elif fmt == "torchscript":
        path = directory / "tiny_clip_jit.pt"
        size = TINY_CLIP_CONFIG["vision_cfg"]["image_size"]
        example = {"encode_image": torch.zeros(1, 3, size, size), "encode_text": open_clip.tokenize(["a face"])}
        with warnings.catch_warnings():  # tracer notes about shape checks; the trace is only read as data
            warnings.simplefilter("ignore")
            torch.jit.trace_module(model, example, check_trace=False).save(str(path))
    else:
        raise InputError(f"fmt must be 'pt', 'safetensors' or 'torchscript', got {fmt!r}")
    return path
