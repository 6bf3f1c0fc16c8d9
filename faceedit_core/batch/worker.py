"""What runs inside a worker process (a local pool process or a Ray worker): `execute(task)`.

The editor (head model, text model, mappers) is built once per worker process and kept in a
module-level cache keyed by the EditorSpec, so a worker that runs a hundred items loads the head
once; every record says how many editors its process has built (`worker.editor_builds`).

`execute` never raises for a failed item: it returns a record with status 'failed', the error
and whether a retry can help (`retryable`: False for bad input -- a broken parameter file fails
the same way every time -- True for anything else). A worker that dies (killed, out of memory)
surfaces in the driver as a backend error, which is retryable.

Every file goes through storage.atomic (params, OBJ, GLB, PNGs, the record), and the record is
written last: an item folder with a record.json is complete.
"""

from __future__ import annotations

import io
import json
import os
import resource
import socket
import time
import traceback
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from faceedit_core.batch.plan import HeadInput, ItemTask, TrainTask, head_hash
from faceedit_core.batch.spec import EditorSpec
from faceedit_core.errors import Cancelled, FaceEditError, InputError
from faceedit_core.storage.atomic import atomic_write, atomic_write_text
from faceedit_core.storage.home import sha256_file

_EDITORS: dict[str, object] = {}
_STATE = {"builds": 0, "threads": None}


def editor_for(spec: EditorSpec):
    """This process's editor for spec: built on first use (factory.build_editor), then cached."""
    key = repr(spec)
    editor = _EDITORS.get(key)
    if editor is None:
        from faceedit_core.factory import build_editor

        options: dict = dict(spec.options())
        if spec.train_config is not None:
            options["train_config"] = spec.train_config
        elif spec.train_steps or spec.train_batch:  # the preview tier's training settings
            from faceedit_core.preview.train import PreviewTrainConfig

            changes = {"steps": spec.train_steps, "batch": spec.train_batch}
            options["train_config"] = replace(PreviewTrainConfig(), **{k: v for k, v in changes.items() if v})
        editor = build_editor(spec.models, device=spec.device, **options)
        _EDITORS[key] = editor
        _STATE["builds"] += 1
    return editor


def set_threads(n: int) -> None:
    """torch threads for this worker (once per value): a local pool of P processes on C cores uses C // P."""
    if _STATE["threads"] != n:
        import torch

        torch.set_num_threads(max(1, int(n)))
        _STATE["threads"] = n


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker_info() -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "editor_builds": _STATE["builds"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def execute(task: ItemTask | TrainTask, hook: Callable | None = None, attempt: int = 1) -> dict:
    """Run one task in this process; -> its record (status 'done' or 'failed'; never raises for a failure)."""
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    try:
        set_threads(task.threads)
        if hook is not None:
            hook(task.task_id, attempt)
        if isinstance(task, TrainTask):
            editor = editor_for(task.editor)
            mapper_id = editor.train(task.prompt)
            record = {"task": task.task_id, "kind": "train", "prompt": task.prompt, "mapper_id": mapper_id}
        else:
            record = run_item(task)
        record["status"] = "done"
    except (KeyboardInterrupt, Cancelled):
        raise
    except Exception as exc:  # reported in the manifest; retried by the driver when retryable
        retryable = not isinstance(exc, FaceEditError)
        message = str(exc) if isinstance(exc, FaceEditError) else f"{type(exc).__name__}: {exc}"
        record = {
            "task": task.task_id,
            "status": "failed",
            "error": message,
            "retryable": retryable,
            "traceback": "".join(traceback.format_exception(exc)[-3:]) if retryable else None,
        }
    record["attempt"] = attempt
    record["seconds"] = round(time.perf_counter() - t0, 4)
    record["cpu_seconds"] = round(_cpu_seconds() - cpu0, 4)  # this process's user + system time for the task
    record["finished_at"] = round(time.time(), 3)
    record["worker"] = worker_info()
    return record


# ---------------------------------------------------------------------- items
def load_head(head: HeadInput, n_shape: int, n_exp: int):
    """FlameParams [1] of a head: a seeded identity (neutral expression) or a parameter file / EMOCA folder."""
    import torch

    from faceedit_core.params import FlameParams

    if head.kind == "seed":
        if head.components > n_shape:
            raise InputError(
                f"head {head.label}: components {head.components} > the model's {n_shape} shape coefficients"
            )
        params = FlameParams.zeros(1, n_shape, n_exp)
        rng = np.random.default_rng(int(head.source))  # PCG64: the same identity on every platform
        shape = rng.standard_normal(head.components).astype(np.float32) * np.float32(head.scale)
        params.shape[0, : head.components] = torch.from_numpy(shape)
        return params
    now = head_hash(head.kind, head.source)
    if now != head.sha256:
        raise InputError(
            f"head {head.source} changed since the batch was planned (sha256 {now[:12]} != {head.sha256[:12]})"
        )
    try:
        params = FlameParams.load(head.source)
    except InputError as exc:
        raise InputError(f"head {head.source}: {exc}") from None
    if params.batch_size != 1:
        raise InputError(f"head {head.source}: holds {params.batch_size} heads; a batch head file must hold one")
    return params


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A .npz (np.load reads it) with fixed zip timestamps: the same arrays give the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, value in arrays.items():
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(value), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), arr.getvalue())
    return buf.getvalue()


def _output(folder: Path, root: Path, path: Path) -> dict:
    return {"path": str(path.relative_to(root)), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def clean_partial(folder: Path) -> None:
    """Remove temporary files a killed attempt left (atomic_write's .NAME.*.tmp) and the old record."""
    if folder.is_dir():
        for p in list(folder.rglob(".*.tmp")):
            p.unlink(missing_ok=True)
        (folder / "record.json").unlink(missing_ok=True)


def run_item(task: ItemTask) -> dict:
    import torch

    from faceedit_core.params import FlameParams
    from faceedit_core.render.cameras import turntable
    from faceedit_core.render.images import contact_sheet, save_png
    from faceedit_core.storage.gltf import write_glb
    from faceedit_core.storage.mesh_io import write_obj

    timings = {}
    t = time.perf_counter()
    builds = _STATE["builds"]
    editor = editor_for(task.editor)
    timings["load_editor"] = time.perf_counter() - t if _STATE["builds"] != builds else 0.0
    root, folder = Path(task.root), task.folder
    clean_partial(folder)

    t = time.perf_counter()
    layer = editor.layer
    params = load_head(task.head, layer.n_shape, layer.n_exp)
    result = editor.edit(params, prompt=task.prompt, intensity=task.intensity)
    with torch.no_grad():
        base = layer(editor.checked_params(params).to(editor.device)).vertices[0].cpu().numpy()
    edited = result.vertices[0].numpy()
    timings["edit"] = time.perf_counter() - t

    t = time.perf_counter()
    mesh = editor.head_mesh()
    faces = np.asarray(mesh["faces"])
    outputs: dict = {}
    p = atomic_write(folder / "params.npz", lambda f: f.write(npz_bytes(result.params.to_numpy())))
    outputs["params"] = _output(folder, root, p)
    uvs = mesh.get("uvs")
    uv_faces = mesh.get("uv_faces")
    p = write_obj(folder / "mesh.obj", edited, faces, None if uvs is None else np.asarray(uvs), uv_faces)
    outputs["obj"] = _output(folder, root, p)
    p = write_glb(
        folder / "head.glb",
        base,
        faces,
        [(task.prompt, edited - base)],
        weights=[1.0],
        name=task.head.label,
        extras={"faceedit": {"prompt": task.prompt, "intensity": task.intensity, "item": task.item_id}},
    )
    outputs["glb"] = _output(folder, root, p)
    timings["write_meshes"] = time.perf_counter() - t

    t = time.perf_counter()
    tt = task.turntable
    cameras = turntable(tt.views, tt.yaw_range, tt.pitch)
    if tt.renderer == "cycles":
        from faceedit_core.batch.blender import render_turntable

        images = render_turntable(folder / "head.glb", cameras, tt, threads=task.threads)  # [2,N,H,W,4]
    else:
        both = FlameParams.cat([editor.checked_params(params), result.params])
        images = editor.render(both, cameras, tt.size)  # uint8 [2,N,H,W,4]: before, after
    timings["render"] = time.perf_counter() - t

    t = time.perf_counter()
    frames = []
    for i, img in enumerate(images[1]):
        frames.append(_output(folder, root, save_png(folder / "turntable" / f"frame_{i:02d}.png", img)))
    outputs["frames"] = frames
    sheet = contact_sheet(images)  # row 1: the input head, row 2: the edit
    sheet = np.concatenate([sheet, np.full(sheet.shape[:2] + (1,), 255, np.uint8)], -1)
    outputs["contact_sheet"] = _output(folder, root, save_png(folder / "contact_sheet.png", sheet))
    timings["write_images"] = time.perf_counter() - t

    summary = result.summary()
    record = {
        "item": task.item_id,
        "kind": "item",
        "input_hash": task.input_hash,
        "outputs": outputs,
        "result": {
            "tier": editor.tier,
            "head_hash": editor.head_hash,
            "mapper_ids": result.mapper_ids,
            "target": summary["target"],
            "success": summary["success"][0],
        },
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "worker": worker_info(),
    }
    atomic_write_text(folder / "record.json", json.dumps(record, indent=1, sort_keys=True))
    return record
