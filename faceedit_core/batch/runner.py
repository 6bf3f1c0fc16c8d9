"""The driver: plan, skip what is finished, run the rest on a backend with bounded retries, write the manifest.

Output folder layout (relative paths in every record, so the folder can move or be mounted
elsewhere on a cluster):

    manifest.jsonl          one line per planned item, in plan order: status done | skipped |
                            failed | not_run, input_hash and inputs, outputs (path, sha256,
                            bytes), attempts and each attempt's error, worker (host, pid,
                            editor builds, peak RSS), timings
    run.json                this run: backend, counts, wall time, items/hour, training tasks
    items/<item_id>/        params.npz, mesh.obj, head.glb, turntable/frame_XX.png,
                            contact_sheet.png, record.json (written last: the item is complete)

Idempotent: an item whose record.json has the same input_hash and whose outputs are all present
with their recorded sizes is skipped (`force` redoes everything). Failures: an attempt that
failed for a transient reason (an exception that is not bad input, a dead worker) is retried up
to `retries` more times; bad input (a broken parameter file, a prompt that names no expression)
fails at once. A failed item never stops the others. Ctrl-C: queued tasks are dropped, running
ones interrupted, the manifest written with what finished (the rest `not_run`), and
`BatchInterrupted` raised; the same command resumes.

The preview tier trains each prompt's mapper once, in its own task (the Editor's train call),
and that prompt's items are submitted when it finishes: no item waits on another's training lock.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from faceedit_core.batch.backends import Crash, LocalBackend
from faceedit_core.batch.plan import ItemTask, Plan, TrainTask, make_plan
from faceedit_core.batch.progress import ProgressBar
from faceedit_core.batch.spec import BatchSpec, EditorSpec
from faceedit_core.errors import FaceEditError, InputError
from faceedit_core.storage.atomic import atomic_write_text


class BatchInterrupted(FaceEditError):
    """Ctrl-C: the run stopped cleanly; the manifest lists what finished."""


@dataclass
class RunResult:
    out: Path
    manifest: Path
    lines: list[dict]
    counts: dict[str, int]
    seconds: float
    backend: str
    trains: list[dict] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and self.counts.get("failed", 0) == 0 and self.counts.get("not_run", 0) == 0


def editor_tier(editor: EditorSpec) -> str:
    """The tier build_editor will choose, from factory.preflight: it checks the model files without
    loading them (MissingModelError naming each missing one), before any worker starts."""
    from faceedit_core.factory import preflight

    head = {k: v for k, v in editor.options().items() if k != "n_exp"}
    if editor.models is None and not head:
        return "preview"
    return preflight(editor.models, **head).get("tier", "paper")


def default_out(spec: BatchSpec) -> Path:
    return spec.out or spec.path.parent / f"{spec.path.stem}_out"


def finished_record(item: ItemTask) -> dict | None:
    """The item's record when it finished with the same inputs and every output is still there, else None."""
    path = item.folder / "record.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("input_hash") != item.input_hash:
        return None
    outputs = record.get("outputs", {})
    files = [o for v in outputs.values() for o in (v if isinstance(v, list) else [v])]
    root = Path(item.root)
    for o in files:
        p = root / o["path"]
        if not p.is_file() or p.stat().st_size != o["bytes"]:
            return None
    return record


def read_manifest(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class _Manifest:
    def __init__(self, out: Path, plan: Plan):
        self.path = out / "manifest.jsonl"
        self.plan = plan
        self.lines: dict[str, dict] = {}
        self._written = 0.0

    def base(self, item: ItemTask) -> dict:
        return {"item": item.item_id, "input_hash": item.input_hash, "inputs": item.inputs(self.plan.fingerprint)}

    def set(self, item: ItemTask, /, **fields) -> None:
        self.lines[item.item_id] = {**self.base(item), **fields}

    def ordered(self) -> list[dict]:
        return [
            self.lines.get(it.item_id) or {**self.base(it), "status": "not_run", "outputs": {}}
            for it in self.plan.items
        ]

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < 2.0:
            return
        self._written = now
        text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in self.ordered())
        atomic_write_text(self.path, text)


class Driver:
    """Runs tasks on a backend with bounded retries, the same for every backend and task kind.

    An attempt fails retryably when the worker died or raised something that is not bad input;
    such a task is resubmitted up to `retries` more times. on_success(task, record, attempt,
    errors) and on_failure(task, error, record | None, attempt, errors) may submit more tasks.
    Ctrl-C interrupts the backend's tasks and re-raises KeyboardInterrupt."""

    def __init__(self, backend, retries: int, hook: Callable | None = None, train_num_gpus: float = 0.0):
        self.backend, self.retries, self.hook, self.train_num_gpus = backend, retries, hook, train_num_gpus
        self.inflight: dict = {}
        self.errors: dict[str, list[str]] = defaultdict(list)

    def submit(self, task, attempt: int = 1) -> None:
        kw = {"num_gpus": self.train_num_gpus} if isinstance(task, TrainTask) and self.backend.name == "ray" else {}
        self.inflight[self.backend.submit(task, self.hook, attempt, **kw)] = (task, attempt)

    def run(self, on_success: Callable, on_failure: Callable, tick: Callable | None = None) -> None:
        try:
            while self.inflight:
                for handle, outcome in self.backend.wait(list(self.inflight), timeout=0.5):
                    task, attempt = self.inflight.pop(handle)
                    if isinstance(outcome, Crash):
                        record, error, retryable = None, outcome.message, True
                    elif outcome["status"] == "done":
                        on_success(task, outcome, attempt, list(self.errors[task.task_id]))
                        continue
                    else:
                        record, error, retryable = outcome, outcome["error"], outcome["retryable"]
                    self.errors[task.task_id].append(f"attempt {attempt}: {error}")
                    if retryable and attempt <= self.retries:
                        self.submit(task, attempt + 1)
                    else:
                        on_failure(task, error, record, attempt, list(self.errors[task.task_id]))
                if tick is not None:
                    tick()
        except KeyboardInterrupt:
            self.backend.interrupt(list(self.inflight))
            raise


def run_batch(
    spec: BatchSpec,
    out: str | Path | None = None,
    backend=None,
    force: bool = False,
    hook: Callable | None = None,
    progress: bool = True,
    stream: TextIO | None = None,
) -> RunResult:
    """Run every item of spec (skipping finished ones) on backend (default: a local pool); -> RunResult.

    hook(task_id, attempt), when given, runs in the worker before each attempt (it must pickle):
    for instrumentation and fault-injection tests."""
    t0 = time.perf_counter()
    out = Path(out or default_out(spec)).resolve()
    backend = backend or LocalBackend(spec.run.workers)
    plan = make_plan(spec, out, threads=backend.threads, tier=editor_tier(spec.editor))
    ids = [it.item_id for it in plan.items]
    if len(set(ids)) != len(ids):
        raise InputError("two planned items share an id (two heads with the same file name and content?)")
    backend_desc = backend.describe()
    manifest = _Manifest(out, plan)
    to_run: list[ItemTask] = []
    for item in plan.items:
        prev = None if force else finished_record(item)
        if prev is not None:
            manifest.set(item, **{**prev, "status": "skipped"})
        else:
            to_run.append(item)

    bar = ProgressBar(len(plan.items), "items", stream, enabled=progress)
    bar.update(skipped=len(plan.items) - len(to_run), force=True)
    waiting: dict[str, list[ItemTask]] = defaultdict(list)
    trains = {t.prompt: t for t in plan.trains}
    for item in to_run:
        waiting[item.prompt if item.prompt in trains else ""].append(item)
    train_lines: list[dict] = []
    driver = Driver(backend, spec.run.retries, hook, spec.run.train_num_gpus)

    def succeeded(task, record: dict, attempt: int, errors: list[str]) -> None:
        if isinstance(task, TrainTask):
            train_lines.append({**record, "attempts": attempt, "errors": errors})
            for item in waiting.pop(task.prompt, []):
                driver.submit(item)
        else:
            manifest.set(task, **{**record, "attempts": attempt, "errors": errors})
            bar.update(done=1)

    def failed(task, error: str, record: dict | None, attempt: int, errors: list[str]) -> None:
        if isinstance(task, TrainTask):
            train_lines.append({**(record or {}), "task": task.task_id, "status": "failed", "error": error})
            for item in waiting.pop(task.prompt, []):
                manifest.set(
                    item,
                    status="failed",
                    error=f"training the mapper for '{task.prompt}' failed: {error}",
                    attempts=0,
                    errors=[],
                    outputs={},
                )
                bar.update(failed=1)
        else:
            worker = (record or {}).get("worker")
            manifest.set(task, status="failed", error=error, attempts=attempt, errors=errors, outputs={}, worker=worker)
            bar.update(failed=1)

    def tick() -> None:
        bar.update()
        manifest.write()

    for prompt in trains:
        if waiting.get(prompt):
            driver.submit(trains[prompt])
    for item in waiting.pop("", []):
        driver.submit(item)
    interrupted = False
    try:
        driver.run(succeeded, failed, tick)
    except KeyboardInterrupt:
        interrupted = True
        for item in to_run:  # finished while the interrupt was on its way: complete on disk, so done
            if item.item_id not in manifest.lines and (record := finished_record(item)) is not None:
                manifest.set(item, **{**record, "status": "done", "attempts": None, "errors": []})
    finally:
        bar.close()
        manifest.write(force=True)
        if not interrupted:
            backend.close()

    lines = manifest.ordered()
    counts: dict[str, int] = defaultdict(int)
    for line in lines:
        counts[line["status"]] += 1
    seconds = time.perf_counter() - t0
    ran = counts["done"] + counts["failed"]
    summary = {
        "spec": str(spec.path),
        "backend": backend_desc,
        "items": len(lines),
        "counts": dict(counts),
        "seconds": round(seconds, 3),
        "items_per_hour": round(ran / seconds * 3600, 1) if ran else None,
        "trains": train_lines,
        "interrupted": interrupted,
    }
    atomic_write_text(out / "run.json", json.dumps(summary, indent=1, sort_keys=True))
    result = RunResult(out, manifest.path, lines, dict(counts), seconds, backend_desc, train_lines, interrupted)
    if interrupted:
        raise BatchInterrupted(
            f"interrupted: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed, "
            f"{counts['not_run']} not run; the manifest is {manifest.path}; run the same command again to resume"
        )
    return result
