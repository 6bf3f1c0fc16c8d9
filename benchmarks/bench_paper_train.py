"""Paper-tier training and inference cost (random weights), three modes.

Default (CPU, tiny networks): .venv/bin/python benchmarks/bench_paper_train.py [--steps 20] [--release-sizes]
1. A generator step as training takes it, side by side per batch size: two tiny Next3D renders
   (the original head without gradients, the edited head with them) and the backward pass.
   With --release-sizes the same tiny channels at the release's sizes (256^2 planes, 64^2 mouth,
   512^2 output; the tiny config before its sizes became data) are timed too, once.
2. The tests' training loop (tests/paper/test_paper_train.py's TINY with one latent: the demo head,
   tiny Next3D, tiny CLIP and ArcFace, batch 2): seconds per step and the loss (mean of the first
   and last quarter, capped at 10 steps each).
3. Inference, measured side by side in one run: the mapper forward pass (default config, all 14
   texture levels) against the Next3D render of one view (planes + one camera) it precedes.

Before/after (peak memory and step time of `train_mappers`, two source trees side by side):
    .venv/bin/python benchmarks/bench_paper_train.py --compare-tree /tmp/faceedit_before [--reps 2]
Each run is a fresh process (`--one-run`, importing faceedit_core from the tree given): the tests'
TINY configuration with one latent, batch 2, on the tiny Next3D and on the tiny channels at the
release's sizes; peak memory is the largest resident-set growth over the steps (sampled every
millisecond from /proc/self/statm) above the resident set just before training; the step time is
the median of the steps after the first (the first builds the PAE basis). Also counted: how many
Next3D parameters hold a .grad after the run.

GPU check (benchmarks/gpu_check.sh runs it): --gpu-check [--tiny]: release-size random-weight
Next3D on CUDA (tiny config on CPU with --tiny): one view, an 8-view turntable, an edit + render
(against the paper's 0.71 s vs Next3D's 0.52 s on an RTX 4090), one training step at batch 2 with
peak memory (random-weight ViT-B/32 CLIP and IR-SE50 ArcFace), printed as one table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
if "--tree" in sys.argv:  # --one-run in another source tree: its faceedit_core and tests come first
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--tree") + 1]).resolve()))
else:
    sys.path.insert(0, str(HERE.parent))
sys.path.insert(1, str(HERE))

import torch  # noqa: E402
from common import fmt, timeit  # noqa: E402

from faceedit_core.mappers import DualMappers, MapperConfig  # noqa: E402
from faceedit_core.next3d.generator import Next3DGenerator, flame_inputs  # noqa: E402
from faceedit_core.next3d.topology import Next3DTopology  # noqa: E402
from faceedit_core.paper.mapper_sets import edit_latent  # noqa: E402
from faceedit_core.paper.train import PaperTrainConfig, train_mappers  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402
from faceedit_core.render.cameras import orbit  # noqa: E402
from tests.helpers.paper import tiny_models  # noqa: E402

RELEASE_SIZES = dict(plane_resolution=256, mouth_resolution=64, output_resolution=512)


def run(models, cfg, label: str) -> None:
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        r = train_mappers(models, cfg, out)
        wall = time.perf_counter() - t
        history = json.loads(r.checkpoint_path.read_text())["history"]
    s = r.summary
    for term in history[0]:
        print(f"  {term:8s} per step: " + " ".join(f"{h[term]:.4f}" for h in history))
    print(
        f"{label}: {s['steps']} steps, batch {cfg.batch}: {s['seconds_per_step']:.2f} s/step "
        f"(wall {wall:.1f} s incl. setup); loss {s['loss_first']:.4f} -> {s['loss_last']:.4f} "
        f"({100 * (1 - s['loss_last'] / s['loss_first']):.1f}% lower)"
    )


def generator_step(G, layer, batch: int, repeats: int = 5, warmup: int = 1) -> dict:
    """Timing of two renders (no-grad original, edited with gradients to ws and the vertices) + backward."""
    c = orbit([0.0] * batch, [0.0] * batch).eg3d_c()
    ws = G.mapping(torch.randn(batch, 512), c, truncation_psi=0.7).detach()
    verts = flame_inputs(layer, FlameParams.zeros(batch, layer.n_shape, layer.n_exp))

    def step():
        dws = torch.zeros_like(ws, requires_grad=True)
        v = verts.clone().requires_grad_(True)
        with torch.no_grad():
            before = G.synthesis(ws, c, verts)["image"]
        after = G.synthesis(ws + dws, c, v)["image"]
        ((after - before) ** 2).mean().backward()

    return timeit(step, repeats=repeats, warmup=warmup)


# ----------------------------------------------------------------------------- memory
def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the resident set every `interval` s in a thread; .peak is the largest seen."""

    def __init__(self, interval: float = 0.001):
        self.interval, self.peak, self._stop = interval, rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def one_run(size: str, steps: int, batch: int) -> dict:
    """One training run of the tests' TINY configuration in this process -> figures (JSON-able)."""
    import gc

    from faceedit_core.paper.models import PaperModels
    from tests.paper.test_paper_train import TINY

    models = tiny_models(Path(tempfile.mkdtemp()))
    if size == "release":
        cfg = models.generator.config.with_(**RELEASE_SIZES)
        G = Next3DGenerator.from_config(cfg, Next3DTopology.from_flame_layer(models.flame))
        models = PaperModels(models.flame, G, models.clip, models.arcface, hashes=dict(models.hashes))
    G = models.generator
    cfg = replace(TINY, steps=steps, batch=batch, n_latents=1, checkpoint_every=10**6)
    stamps: list[tuple[float, float]] = []
    gc.collect()
    base = rss_bytes()
    with tempfile.TemporaryDirectory() as out, PeakRSS() as peak:
        t0 = (time.perf_counter(), time.process_time())
        train_mappers(models, cfg, out, progress=lambda e: stamps.append((time.perf_counter(), time.process_time())))
    times = [b[0] - a[0] for a, b in zip([t0] + stamps, stamps)]
    cpu = [b[1] - a[1] for a, b in zip([t0] + stamps, stamps)]
    params = list(G.parameters())
    return {
        "cpu_step_s": statistics.median(cpu[1:]) if len(cpu) > 1 else cpu[0],
        "size": size,
        "steps": steps,
        "batch": batch,
        "first_step_s": times[0],
        "step_s": statistics.median(times[1:]) if len(times) > 1 else times[0],
        "peak_growth_mb": (peak.peak - base) / 2**20,
        "grad_params": sum(p.grad is not None for p in params),
        "params": len(params),
        "grad_mb": sum(p.numel() * 4 for p in params if p.grad is not None) / 2**20,
        "threads": torch.get_num_threads(),
    }


def compare_trees(before: Path, reps: int, steps: int, threads: int | None = None) -> None:
    trees = {"before": before.resolve(), "after": HERE.parent}
    rows: dict[tuple[str, str], list[dict]] = {}
    print(f"load average {os.getloadavg()[0]:.1f}; {reps} runs per cell, {steps} steps each, alternating trees")
    for size in ("tiny", "release"):
        for rep in range(reps):
            order = list(trees.items()) if rep % 2 == 0 else list(trees.items())[::-1]
            for label, tree in order:
                cmd = [sys.executable, __file__, "--one-run", "--tree", str(tree), "--size", size]
                cmd += ["--steps", str(steps)] + (["--threads", str(threads)] if threads else [])
                env = {**os.environ, "FACEEDIT_HOME": os.environ.get("FACEEDIT_HOME", tempfile.mkdtemp())}
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
                if out.returncode != 0:
                    raise SystemExit(f"{label} {size} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows.setdefault((size, label), []).append(r)
                print(
                    f"  {size:8s} {label:6s} run {rep}: {r['step_s']:.3f} s/step (CPU {r.get('cpu_step_s', 0):.3f} s), "
                    f"peak +{r['peak_growth_mb']:.0f} MB"
                )
    print("\n| size | tree | step, wall (runs) | step, CPU time | peak memory growth | Next3D params with .grad |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (size, label), rs in rows.items():
        step = statistics.median(r["step_s"] for r in rs)
        peak = statistics.median(r["peak_growth_mb"] for r in rs)
        steps = ", ".join("%.3f" % r["step_s"] for r in rs)
        peaks = ", ".join("%.0f" % r["peak_growth_mb"] for r in rs)
        grads = "%d / %d (%.1f MB)" % (rs[0]["grad_params"], rs[0]["params"], rs[0]["grad_mb"])
        cpu = statistics.median(r.get("cpu_step_s", float("nan")) for r in rs)
        print(f"| {size} | {label} | {step:.3f} s ({steps}) | {cpu:.3f} s | {peak:.0f} MB ({peaks}) | {grads} |")


# ----------------------------------------------------------------------------- GPU check
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device, repeats: int, warmup: int = 1) -> dict:
    for _ in range(warmup):
        fn()
    _sync(device)
    ms = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return {"median_ms": statistics.median(ms), "min_ms": ms[0], "max_ms": ms[-1], "n": len(ms)}


def _guidance(tiny: bool, device, tmp: Path):
    """Random-weight CLIP and ArcFace: ViT-B/32 + IR-SE50 (release sizes) or the tests' tiny ones."""
    from faceedit_core.paper.arcface import ArcFaceConfig, IdentityNet, build_backbone, load_arcface, tiny_arcface_file
    from faceedit_core.paper.clip_model import ClipGuidance, _named_config, load_clip, tiny_clip_file

    if tiny:
        return load_clip(tiny_clip_file(tmp / "clip"), device=device), load_arcface(
            tiny_arcface_file(tmp / "arcface"), device=device
        )
    from open_clip.model import CLIP

    config = _named_config("ViT-B-32-quickgelu")
    torch.manual_seed(0)
    clip = ClipGuidance(CLIP(**config), config, "random ViT-B/32").to(device)
    cfg = ArcFaceConfig("ir_se")
    return clip, IdentityNet(build_backbone(cfg), cfg, "random IR-SE50").to(device)


def gpu_check(tiny: bool) -> None:
    from faceedit_core.flame import default_head
    from faceedit_core.paper.models import PaperModels
    from faceedit_core.render.cameras import turntable

    device = torch.device("cuda" if torch.cuda.is_available() and not tiny else "cpu")
    name = "tiny" if tiny else "full"
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    t_setup = time.perf_counter()
    # a FLAME-sized head (the procedural test head, 9,554 vertices; Next3D's release reads FLAME's 5,023)
    load = getattr(default_head, "load_procedural_flame", None) or default_head.load_demo_flame
    layer = load().to(device)
    G = Next3DGenerator.from_config(name, Next3DTopology.from_flame_layer(layer)).to(device).requires_grad_(False)
    out = G.config.output_resolution
    params = FlameParams.zeros(1, layer.n_shape, layer.n_exp).to(device)
    c1 = orbit([0.0], [0.0]).eg3d_c().to(device)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, 512, device=device), c1, truncation_psi=0.7, truncation_cutoff=14)
    verts = flame_inputs(layer, params)
    cams8 = turntable(8).eg3d_c().to(device)
    mapper = DualMappers(MapperConfig(n_exp=min(50, layer.n_exp))).to(device).eval()
    print(
        f"setup {time.perf_counter() - t_setup:.1f} s ({name} Next3D, {sum(p.numel() for p in G.parameters())} params)"
    )
    reps = 5 if device.type == "cuda" else 2

    @torch.no_grad()
    def one_view():
        G.render_view(G.planes(ws, verts), ws, c1)

    @torch.no_grad()
    def eight_views():
        G.turntable(ws, verts, cams8)

    @torch.no_grad()
    def edit_render():
        ws2, p2 = edit_latent([(mapper, 1.0)], ws, params)
        G.render_view(G.planes(ws2, flame_inputs(layer, p2)), ws2, c1)

    rows = [
        (f"Next3D one view ({out}x{out})", _time(one_view, device, reps), "0.52 s (RTX 4090, paper Table VI)"),
        ("Next3D 8-view turntable (planes once)", _time(eight_views, device, max(2, reps // 2)), ""),
        ("edit (mapper + FLAME) + render one view", _time(edit_render, device, reps), "0.71 s (RTX 4090, paper)"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        clip, arcface = _guidance(tiny, device, Path(tmp))
        models = PaperModels(layer, G, clip, arcface, hashes={"next3d": f"random {name}"})
        cfg = PaperTrainConfig(steps=3, batch=2, n_latents=4, checkpoint_every=10**6)
        stamps: list[float] = []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            resident = torch.cuda.memory_allocated(device)
        base = rss_bytes()
        with PeakRSS() as peak:
            t0 = time.perf_counter()
            train_mappers(models, cfg, tmp, progress=lambda e: (_sync(device), stamps.append(time.perf_counter())))
        steps = [b - a for a, b in zip([t0] + stamps, stamps)]
        if device.type == "cuda":
            peak_gib, resident_gib = torch.cuda.max_memory_allocated(device) / 2**30, resident / 2**30
            mem = f"peak {peak_gib:.2f} GiB allocated ({resident_gib:.2f} GiB resident before)"
        else:
            mem = f"peak RSS +{(peak.peak - base) / 2**20:.0f} MB"
        step_ms = statistics.median(steps[1:]) * 1000
        rows.append(
            (
                "training step, batch 2 (2 renders + CLIP + ArcFace + backward)",
                {"median_ms": step_ms, "min_ms": min(steps[1:]) * 1000, "max_ms": max(steps[1:]) * 1000, "n": 2},
                mem,
            )
        )
    print(f"\n| what ({name} config, {device.type}) | median | min / max | note |")
    print("| --- | --- | --- | --- |")
    for what, r, note in rows:
        spread = f"{r['min_ms'] / 1000:.3f} / {r['max_ms'] / 1000:.3f} s"
        print(f"| {what} | {r['median_ms'] / 1000:.3f} s | {spread} | {note} |")
    ratio = rows[2][1]["median_ms"] / rows[0][1]["median_ms"]
    print(f"\nedit + render / render = {ratio:.2f} (paper: 0.71 / 0.52 = 1.37)")


# ----------------------------------------------------------------------------- default mode
def default(args) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    models = tiny_models(Path(tempfile.mkdtemp()))
    G, layer = models.generator, models.flame
    cfg = G.config
    print(
        f"tiny Next3D: {cfg.plane_resolution}^2 planes, {cfg.mouth_resolution}^2 mouth, "
        f"{cfg.neural_rendering_resolution}^2 rendering, {cfg.output_resolution}^2 output, "
        f"{cfg.render.depth_resolution}+{cfg.render.depth_resolution_importance} samples"
    )
    for batch in (1, 2):
        print(f"generator step, batch {batch}: {fmt(generator_step(G, layer, batch))}")
    if args.release_sizes:
        big = Next3DGenerator.from_config(cfg.with_(**RELEASE_SIZES), Next3DTopology.from_flame_layer(layer))
        print(f"generator step at the release's sizes, batch 1: {fmt(generator_step(big, layer, 1, 2, 1))}")

    from tests.paper.test_paper_train import TINY

    run(models, replace(TINY, steps=args.steps, n_latents=1), "tests' loop (TINY, one latent)")

    mapper = DualMappers(MapperConfig(n_exp=min(50, layer.n_exp))).eval()
    c = orbit([0.0], [0.0]).eg3d_c()
    ws = G.mapping(torch.randn(1, 512), c, truncation_psi=0.7, truncation_cutoff=14).detach()
    params = FlameParams.zeros(1, layer.n_shape, layer.n_exp)
    with torch.no_grad():
        m = timeit(lambda: edit_latent([(mapper, 1.0)], ws, params), repeats=5)
        r = timeit(lambda: G.render_view(G.planes(ws, flame_inputs(layer, params)), ws, c), repeats=2)
    print(f"mapper forward (default config)  {fmt(m)}")
    print(f"tiny Next3D planes + one view    {fmt(r)}")
    print(f"mapper / render ratio {m['median_ms'] / r['median_ms']:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 20; 6 per --one-run)")
    ap.add_argument("--release-sizes", action="store_true", help="also time one step at the release's sizes")
    ap.add_argument("--compare-tree", type=Path, default=None, help="a source tree to measure side by side")
    ap.add_argument("--reps", type=int, default=2, help="--compare-tree: runs per tree and size")
    ap.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tree", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", choices=("tiny", "release"), default="tiny", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads (1: CPU time is the work, on a busy machine)"
    )
    ap.add_argument("--gpu-check", action="store_true", help="the release-size table of benchmarks/gpu_check.sh")
    ap.add_argument("--tiny", action="store_true", help="--gpu-check: the tiny config on CPU")
    args = ap.parse_args()
    os.environ.setdefault("FACEEDIT_HOME", tempfile.mkdtemp())
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one_run:
        print(json.dumps(one_run(args.size, args.steps or 6, args.batch)))
    elif args.compare_tree is not None:
        compare_trees(args.compare_tree, args.reps, args.steps or 6, args.threads)
    elif args.gpu_check:
        gpu_check(args.tiny)
    else:
        args.steps = args.steps or 20
        default(args)


if __name__ == "__main__":
    main()
