"""Where tasks run: a local process pool (the default) or a Ray cluster (`--ray auto|ADDRESS`).

Both take one task per item (or per training prompt) and hand back, for each finished task,
either the worker's record or a crash message (the worker process died: killed, out of memory,
its node lost). Retries are the driver's (runner.py), the same for both backends, so every
attempt and its error land in the manifest.

Local: a `ProcessPoolExecutor` of spawned processes (no fork of a driver holding threads), one
per core by default, each with cores // processes torch threads. A worker that dies breaks the
whole pool (concurrent.futures' rule): the pool is rebuilt and every task that was in flight is
retried, each charged one attempt.

Ray: one remote task per item with `num_cpus`, `num_gpus` (fractions share a GPU) and custom
`resources` declared; `max_retries=0` because the driver retries. `max_calls=0` keeps worker
processes alive between tasks -- Ray's default for GPU tasks is one task per process
(ray-project/ray#29624), which would rebuild the editor for every item -- so the per-process
editor cache (worker.py) holds. A worker killed mid-task surfaces as WorkerCrashedError.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool

from faceedit_core.batch.worker import execute, set_threads
from faceedit_core.errors import InputError

RAY_INSTALL_HINT = "--ray needs Ray, which is not installed here: pip install 'faceedit[ray]' (Ray >= 2.40)"


class Crash:
    """A task whose worker died; `message` says how."""

    def __init__(self, message: str):
        self.message = message


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _init_local_worker(threads: int) -> None:
    set_threads(threads)


class LocalBackend:
    name = "local"

    def __init__(self, workers: int = 0, threads: int | None = None):
        self.workers = workers or cores()
        self.threads = threads or max(1, cores() // self.workers)
        self._pool: ProcessPoolExecutor | None = None

    def describe(self) -> str:
        return f"local pool of {self.workers} process(es), {self.threads} torch thread(s) each"

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_local_worker,
                initargs=(self.threads,),
            )
        return self._pool

    def submit(self, task, hook, attempt: int, num_gpus: float | None = None) -> Future:
        try:
            return self._ensure_pool().submit(execute, task, hook, attempt)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            return self._ensure_pool().submit(execute, task, hook, attempt)

    def wait(self, handles, timeout: float) -> list[tuple[Future, object]]:
        done, _ = futures_wait(list(handles), timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            try:
                out.append((fut, fut.result()))
            except BrokenProcessPool as exc:
                out.append((fut, Crash(f"worker process died ({exc or 'pool broken'})")))
            except KeyboardInterrupt:
                out.append((fut, Crash("interrupted")))
        return out

    def interrupt(self, handles) -> None:
        """Ctrl-C: drop queued tasks, SIGINT the running ones (their atomic writes clean up), then stop."""
        if self._pool is None:
            return
        # the pool's own processes only (concurrent.futures keeps them in _processes; no public accessor)
        workers = list(getattr(self._pool, "_processes", {}).values())
        for fut in handles:
            fut.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers:
            if proc.is_alive():
                try:
                    os.kill(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        for proc in workers:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(RAY_INSTALL_HINT) from None
    return ray


class RayBackend:
    """Tasks on Ray: address 'auto' joins a running cluster (RAY_ADDRESS or `ray start`) or starts a
    local one; any other address is a cluster's (ray://host:10001 or host:6379). An already
    initialised Ray (a test's ray.init) is used as it is and left running."""

    name = "ray"

    def __init__(self, address: str = "auto", num_cpus: float = 1.0, num_gpus: float = 0.0, resources=()):
        ray = self.ray = import_ray()
        self.owned = False
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in ("FACEEDIT_HOME",) if k in os.environ}
            ray.init(
                address=None if address == "auto" else address,
                runtime_env={"env_vars": env} if env else None,
                include_dashboard=False,
                log_to_driver=False,
            )
            self.owned = True
        self.num_cpus, self.num_gpus, self.resources = num_cpus, num_gpus, dict(resources)
        self._remote = ray.remote(max_calls=0)(execute)
        self.threads = max(1, int(round(num_cpus)))

    def describe(self) -> str:
        res = self.ray.cluster_resources()
        gpus = f", {res.get('GPU', 0):g} GPUs" if res.get("GPU") else ""
        return (
            f"Ray cluster with {res.get('CPU', 0):g} CPUs{gpus}; per task {self.num_cpus:g} CPU, {self.num_gpus:g} GPU"
        )

    def submit(self, task, hook, attempt: int, num_gpus: float | None = None):
        opts = {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus if num_gpus is None else num_gpus,
            "max_retries": 0,
            "name": f"faceedit:{task.task_id}"[:200],
        }
        if self.resources:
            opts["resources"] = self.resources
        return self._remote.options(**opts).remote(task, hook, attempt)

    def wait(self, handles, timeout: float) -> list[tuple[object, object]]:
        ray = self.ray
        refs = list(handles)
        if not refs:
            return []
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            more, _ = ray.wait([r for r in refs if r not in ready], num_returns=len(refs) - len(ready), timeout=0)
            ready += more
        out = []
        for ref in ready:
            try:
                out.append((ref, ray.get(ref)))
            except ray.exceptions.RayTaskError as exc:  # execute() raised: interrupted or cancelled
                out.append((ref, Crash(f"task raised {type(exc.cause).__name__}: {exc.cause}")))
            except ray.exceptions.RayError as exc:  # worker or node died, object lost, cancelled
                out.append((ref, Crash(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}")))
        return out

    def interrupt(self, handles) -> None:
        for ref in handles:
            try:
                self.ray.cancel(ref, force=False)  # KeyboardInterrupt in a running task, dequeue a pending one
            except Exception:  # already finished
                pass
        self.close()

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
            self.owned = False
