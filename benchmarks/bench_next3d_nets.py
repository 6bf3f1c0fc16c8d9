"""Time each Next3D network at the release size (`full` configuration, random weights, batch 1).

    .venv/bin/python benchmarks/bench_next3d_nets.py [--device cpu|cuda] [--threads 2] [--repeats 3]

Prints one line per network: the four view-independent ones (texture, static tri-plane, mouth
and blending StyleUNets) and the per-view super-resolution, in its default precision ("auto":
float16 on CUDA (TF32 off), float32 elsewhere, as released) and in bfloat16 (the CPU fast path).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, timeit  # noqa: E402

from faceedit_core.next3d.precision import reduced_dtype  # noqa: E402
from faceedit_core.next3d.stylegan2 import StyleGAN2Backbone  # noqa: E402
from faceedit_core.next3d.styleunet import StyleUNet  # noqa: E402
from faceedit_core.next3d.superres import SuperresolutionHybrid8XDC  # noqa: E402

FULL = dict(
    channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None, fused_modconv_default="inference_only"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(args.device)
    torch.manual_seed(0)
    ws = torch.randn(1, 14, 512, device=dev)
    nets = {
        "texture (StyleGAN2, 32 ch 256^2)": (
            StyleGAN2Backbone(512, 25, 512, 256, 32, **FULL),
            lambda m: m.synthesis(ws),
        ),
        "static tri-plane (StyleGAN2, 96 ch 256^2)": (
            StyleGAN2Backbone(512, 25, 512, 256, 96, mapping_ws=28, **FULL),
            lambda m: m.synthesis(ws),
        ),
        "mouth StyleUNet (64^2 -> 256^2)": (
            StyleUNet(512, 25, 512, 256, 32, cond_channels=32, in_size=64, final_size=4, num_cond_res=64, **FULL),
            lambda m: m(torch.randn(1, 32, 64, 64, device=dev), ws),
        ),
        "blending StyleUNet (256^2 -> 256^2)": (
            StyleUNet(512, 25, 512, 256, 32, cond_channels=32, in_size=256, final_size=32, num_cond_res=256, **FULL),
            lambda m: m(torch.randn(1, 32, 256, 256, device=dev), ws),
        ),
    }
    for precision in ("auto", "bf16"):
        sr = SuperresolutionHybrid8XDC(32)
        sr.precision = precision
        dtype = str(reduced_dtype(precision, dev)).replace("torch.", "")
        nets[f"super-resolution (64^2 -> 512^2), {dtype}"] = (
            sr,
            lambda m: m(torch.randn(1, 3, 64, 64, device=dev), torch.randn(1, 32, 64, 64, device=dev), ws),
        )
    print(f"device {dev}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    for name, (net, call) in nets.items():
        net = net.to(dev).eval()

        def run(net=net, call=call):
            with torch.no_grad():
                call(net)
            if dev.type == "cuda":
                torch.cuda.synchronize()

        r = timeit(run, repeats=args.repeats)
        print(f"{name:46s} {fmt(r)}")
        del net


if __name__ == "__main__":
    main()
