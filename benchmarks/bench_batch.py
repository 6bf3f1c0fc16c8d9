"""`faceedit batch` throughput: local pool with 1 and 2 processes and local Ray with 2 workers, side by side.

Run: .venv/bin/python benchmarks/bench_batch.py [--items 8] [--rounds 2] [--views 4] [--size 128] [--json OUT]

The three set-ups run the same batch (N seeded heads x 1 prompt, a preview turntable) into fresh
output folders, interleaved round by round (local-1, local-2, ray-2, local-1, ...) so that the
load of a shared host falls on all three alike; every worker uses one torch thread; the mapper is
trained before the first round (training is a one-off per prompt, not a per-item cost).
Reported per set-up (median over rounds): wall seconds for the batch including worker start-up
and editor builds, items/hour from that wall time, steady items/hour (between the first and the
last item's finish: no start-up), the in-worker seconds per item (edit, render, writes) and the
peak RSS of a worker process. Ray's worker processes outlive a batch: its first round is cold,
the later ones warm. Also: scaling efficiency (steady 2-worker items/hour / (2 x 1-process)),
Ray's overhead per task (a no-op task's round trip on the same cluster) and its start-up time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceedit_core.batch.backends import LocalBackend, RayBackend, cores  # noqa: E402
from faceedit_core.batch.runner import run_batch  # noqa: E402
from faceedit_core.batch.spec import load_spec  # noqa: E402
from faceedit_core.storage.atomic import atomic_write_text  # noqa: E402

PROMPT = "A person who is smiling"


def write_spec(folder: Path, items: int, views: int, size: int) -> Path:
    return atomic_write_text(
        folder / "bench.toml",
        f'prompts = ["{PROMPT}"]\n[editor]\ntrain_steps = 60\ntrain_batch = 16\n'
        f"[[heads]]\nseeds = {{start = 0, count = {items}}}\n"
        f"[[turntables]]\nviews = {views}\nsize = {size}\nyaw_range = [-60.0, 60.0]\n",
    )


def one_run(spec, out: Path, backend) -> dict:
    t = time.perf_counter()
    result = run_batch(spec, out, backend, progress=False)
    wall = time.perf_counter() - t
    done = [line for line in result.lines if line["status"] == "done"]
    assert len(done) == len(result.lines), result.counts
    per_item = statistics.median(line["seconds"] for line in done)
    cpu_item = statistics.median(line["cpu_seconds"] for line in done)
    ends = sorted(line["finished_at"] for line in done)
    steady = (len(ends) - 1) / (ends[-1] - ends[0]) * 3600 if len(ends) > 1 and ends[-1] > ends[0] else None
    stages = {k: statistics.median(line["timings"][k] for line in done) for k in done[0]["timings"]}
    return {
        "wall_s": wall,
        "items_per_hour": len(done) / wall * 3600,
        "steady_items_per_hour": steady,
        "item_s_median": per_item,
        "item_cpu_s_median": cpu_item,
        "stages_s_median": stages,
        "peak_rss_mb": max(line["worker"]["peak_rss_mb"] for line in done),
        "worker_pids": len({line["worker"]["pid"] for line in done}),
    }


def ray_noop_overhead(ray, n: int = 300) -> float:
    @ray.remote(num_cpus=1)
    def noop(i):
        return i

    ray.get([noop.remote(i) for i in range(20)])  # warm the worker pool
    t = time.perf_counter()
    ray.get([noop.remote(i) for i in range(n)])
    return (time.perf_counter() - t) / n * 1000


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import ray

    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("FACEEDIT_HOME", str(tmp / "home"))
        spec = load_spec(write_spec(tmp, args.items, args.views, args.size))
        t = time.perf_counter()
        (tmp / "warm").mkdir()
        run_batch(load_spec(write_spec(tmp / "warm", 1, 1, 32)), tmp / "warm_out", LocalBackend(1), progress=False)
        warm_s = time.perf_counter() - t
        t = time.perf_counter()
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"FACEEDIT_HOME": os.environ["FACEEDIT_HOME"]}},
        )
        ray_init_s = time.perf_counter() - t
        noop_ms = ray_noop_overhead(ray)
        setups = {
            "local-1": lambda: LocalBackend(1, threads=1),
            "local-2": lambda: LocalBackend(2, threads=1),
            "ray-2": lambda: RayBackend(num_cpus=1),
        }
        runs: dict[str, list[dict]] = {k: [] for k in setups}
        for r in range(args.rounds):
            for name, make in setups.items():
                runs[name].append(one_run(spec, tmp / f"{name}-{r}", make()))
                print(f"round {r} {name}: {runs[name][-1]['wall_s']:.1f} s", file=sys.stderr)
        ray.shutdown()

    keys = (
        "wall_s",
        "items_per_hour",
        "steady_items_per_hour",
        "item_s_median",
        "item_cpu_s_median",
        "peak_rss_mb",
        "worker_pids",
    )

    def median_of(rs: list[dict]) -> dict:
        return {k: statistics.median(x[k] for x in rs) for k in keys} | {"stages_s_median": rs[-1]["stages_s_median"]}

    # local pools start fresh processes every run (cold); Ray's worker processes outlive a batch, so
    # its first round is cold (imports, editor builds) and the later ones warm (editors cached)
    med = {"local-1": median_of(runs["local-1"]), "local-2": median_of(runs["local-2"])}
    med["ray-2 cold"] = median_of(runs["ray-2"][:1])
    if len(runs["ray-2"]) > 1:
        med["ray-2 warm"] = median_of(runs["ray-2"][1:])
    one = med["local-1"]["steady_items_per_hour"]
    out = {
        "host": f"{cores()} cores, shared with other sessions' test runs (load average {os.getloadavg()[0]:.1f})",
        "items": args.items,
        "views": args.views,
        "size": args.size,
        "rounds": args.rounds,
        "first_mapper_training_and_editor_s": warm_s,
        "ray_init_s": ray_init_s,
        "ray_noop_task_ms": noop_ms,
        "setups": med,
        "runs": runs,
        "scaling_efficiency_local_2": med["local-2"]["steady_items_per_hour"] / (2 * one),
        "scaling_efficiency_ray_2": med["ray-2 cold"]["steady_items_per_hour"] / (2 * one),
        "ray_vs_local_2_seconds_per_item": med["ray-2 cold"]["item_s_median"] - med["local-2"]["item_s_median"],
    }
    print(
        f"{'set-up':11s} {'wall s':>7s} {'items/h':>8s} {'steady items/h':>15s} {'s/item in worker':>17s} "
        f"{'CPU s/item':>11s} {'peak RSS MB':>12s}"
    )
    for name, m in med.items():
        print(
            f"{name:11s} {m['wall_s']:7.1f} {m['items_per_hour']:8.0f} {m['steady_items_per_hour'] or 0:15.0f} "
            f"{m['item_s_median']:17.2f} {m['item_cpu_s_median']:11.2f} {m['peak_rss_mb']:12.0f}"
        )
    print(
        f"scaling efficiency (steady): local-2 {out['scaling_efficiency_local_2']:.2f}, ray-2 "
        f"{out['scaling_efficiency_ray_2']:.2f}; Ray vs local-2 {out['ray_vs_local_2_seconds_per_item']:+.2f} "
        f"s/item, {noop_ms:.2f} ms per no-op task; ray.init {ray_init_s:.1f} s; {out['host']}"
    )
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
