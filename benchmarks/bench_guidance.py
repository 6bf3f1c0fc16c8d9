"""Cost of the guidance terms of one training step, at the real network sizes, on CPU (and CUDA).

Run: .venv/bin/python benchmarks/bench_guidance.py
The networks are CLIP ViT-B/32 (QuickGELU, 151 M parameters) and ArcFace IR-SE50 / iresnet50
with random weights: the cost does not depend on the values, and no weights are downloaded.
Images: batch 2 of 512x512 (Next3D's output size). Also times loading a ViT-B/32-sized file
through load_clip (fp16 safetensors, 300 MB, like OpenAI's fp16 release).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, timeit  # noqa: E402

from faceedit_core.paper.arcface import KNOWN_DEPTHS, ArcFaceConfig, IdentityNet, build_backbone, identity_loss  # noqa: E402
from faceedit_core.paper.clip_model import ClipGuidance, load_clip  # noqa: E402
from faceedit_core.paper.objective import clip_loss, clip_target  # noqa: E402
from faceedit_core.paper.pae import PAEBasis  # noqa: E402


def vit_b32() -> ClipGuidance:
    import open_clip
    from open_clip.model import CLIP

    config = open_clip.get_model_config("ViT-B-32-quickgelu")
    return ClipGuidance(CLIP(**config), config)


def arcface(name: str) -> IdentityNet:
    layout, blocks = KNOWN_DEPTHS[name]
    return IdentityNet(build_backbone(ArcFaceConfig(layout, blocks)), ArcFaceConfig(layout, blocks))


def main() -> dict:
    torch.set_num_threads(2)
    out = {}
    torch.manual_seed(0)
    clip = vit_b32()
    with tempfile.TemporaryDirectory() as d:
        from safetensors.torch import save_file

        path = Path(d) / "ViT-B-32.safetensors"
        save_file({k: v.half().contiguous() for k, v in clip.model.state_dict().items()}, str(path))
        t = time.perf_counter()
        load_clip(path)
        out["load_clip_s"] = time.perf_counter() - t
    print(f"load_clip ViT-B/32 fp16 safetensors ({path.name}): {out['load_clip_s']:.2f} s")
    nets = {name: arcface(name) for name in ("ir_se50", "iresnet50")}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        clip.to(device)
        init = torch.rand(2, 3, 512, 512, device=device) * 2 - 1
        basis = PAEBasis.build(clip)
        target = clip_target(clip, basis, init, "A person who is smiling.")
        reps = 3 if device == "cpu" else 20

        def clip_fwd():
            with torch.no_grad():
                clip.encode_images(init)

        def clip_step():
            x = init.clone().requires_grad_(True)
            clip_loss(clip, x, target).backward()

        rows = {
            "clip forward": timeit(clip_fwd, repeats=reps),
            "clip loss fwd+bwd": timeit(clip_step, repeats=reps),
            "pae target (6-prompt basis + e_I)": timeit(
                lambda: clip_target(clip, PAEBasis.build(clip), init, "A person who is smiling."), repeats=reps
            ),
        }
        for name, net in nets.items():
            net.to(device)

            def id_step(net=net):
                x = init.clone().requires_grad_(True)
                identity_loss(net, x, init).backward()

            rows[f"{name} identity loss fwd+bwd"] = timeit(id_step, repeats=reps)
        base = rows["clip loss fwd+bwd"]["median_ms"]
        print(f"== {device}, batch 2 x 512x512, {torch.get_num_threads()} threads")
        for name, r in rows.items():
            print(f"  {name:36s} {fmt(r)}  ({r['median_ms'] / base:.2f} x clip loss)")
        out[device] = {k: v["median_ms"] for k, v in rows.items()}
        if device == "cuda":
            torch.cuda.synchronize()
    return out


if __name__ == "__main__":
    main()
