"""Background mode (`blender -b`): blocking batch turntables over prompts x angles, contact sheets.

    import bl_ext.user_default.faceedit as fe
    fe.batch.turntable(bpy.context.scene, ["smile", "raise brows"], "//frames", frames=24)

Each prompt is edited with a blocking call (the same reply handling as the Edit operator), its
key is shown alone at the intensity (the FE keys' own keyframes are muted meanwhile), and the
turntable camera (made the scene camera; the frame range is kept) renders `frames` angles (or
the chosen indices) to OUT/<key name>/frame_<i>.png, printing progress. A failure raises before
the scene is changed for that prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import bpy
import numpy as np

from . import apply, operators, rig, session


def _progress(text: str) -> None:
    print(f"FaceEdit: {text}", flush=True)


def ensure_server() -> dict:
    if session.server.get("address") != session.settings().address:
        session.remember_hello(session.JOBS.blocking_call("hello", {"head_mesh": True}))
    return session.server


def flame_frame(obj):
    """For a FLAME rig: the checked FLAME -> mesh frame (fetching the server's basis, blocking); None otherwise."""
    if rig.target_kind(obj) != "flame":
        return None
    ids = rig.basis_ids(obj, session.server)
    need = [k for k in ids if k not in session.server["basis"]]
    if need:
        basis = session.JOBS.blocking_call("hello", {"expression_basis": need})["expression_basis"]
        session.server["basis"].update({k: np.asarray(basis["dirs"])[i] for i, k in enumerate(need)})
    return rig.match_basis(obj, {k: session.server["basis"][k] for k in ids})[0]


def edit(scene, prompt: str, intensity: float = 1.0) -> str:
    """Blocking edit of scene.faceedit.target (the scene's Mix mode, no keyframe) -> the shape key name."""
    obj = operators._target(scene)
    ensure_server()
    settings = operators.request_settings(scene) | {"prompt": prompt, "intensity": intensity, "keyframe": False}
    rig.check_server_fits(obj, session.server)
    t = flame_frame(obj)
    args = {"params": rig.read_params(obj, session.server, settings["mix"], t), "prompt": prompt, "intensity": 1.0}
    operators.apply_edit(scene, obj, args, session.JOBS.blocking_call("edit", args), settings, t)
    return apply.key_name(prompt)


def setup_render(scene, size: int, samples: int, engine: str = "CYCLES") -> None:
    scene.render.engine = engine
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    if engine == "CYCLES":
        scene.cycles.device = "CPU"
        scene.cycles.samples = samples
        scene.cycles.use_denoising = False


def turntable(
    scene,
    prompts: list[str | None],
    out_dir: str,
    frames: int = 8,
    size: int = 256,
    samples: int = 8,
    engine: str = "CYCLES",
    intensity: float = 1.0,
    indices: list[int] | None = None,
    progress: Callable[[str], None] = _progress,
) -> dict[str, list[Path]]:
    """Render prompts x turntable angles -> {key name (or 'neutral' for None): [frame paths]}."""
    obj = operators._target(scene)
    indices = list(range(frames)) if indices is None else list(indices)
    if not all(0 <= i < frames for i in indices):
        raise ValueError(f"indices {indices} must lie in 0..{frames - 1}")
    out = Path(bpy.path.abspath(out_dir))
    setup_render(scene, size, samples, engine)
    apply.turntable_rig(scene, obj, frames, set_camera=True, set_range=False)
    total, done, written = len(prompts) * len(indices), 0, {}
    muted = []  # the FE keys' own animation would override "this expression alone": muted while rendering
    try:
        for prompt in prompts:
            name = edit(scene, prompt, intensity) if prompt is not None else None
            keys = obj.data.shape_keys
            for kb in apply.fe_keys(obj):
                fc = apply.fcurve(keys, kb.path_from_id("value"))
                if fc is not None and not fc.mute:
                    fc.mute = True
                    muted.append(fc)
            apply.solo_key(obj, name, intensity)
            label = name or "neutral"
            folder = out / label.removeprefix(apply.KEY_PREFIX).replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            written[label] = []
            for i in indices:
                scene.frame_set(scene.frame_start + i)
                scene.render.filepath = str(folder / f"frame_{i:03d}.png")
                bpy.ops.render.render(write_still=True)
                written[label].append(Path(scene.render.filepath))
                done += 1
                progress(f"[{done}/{total}] {label}: angle {i + 1}/{frames} -> {scene.render.filepath}")
    finally:
        for fc in muted:
            fc.mute = False
    return written


def contact_sheet(grid: list[list[Path]], out_path: str) -> Path:
    """PNG tiles grid[row][column] (same size) -> one PNG, written through Blender's image API."""
    rows = []
    for row in grid:
        tiles = []
        for path in row:
            img = bpy.data.images.load(str(path), check_existing=False)
            w, h = img.size
            px = np.empty(w * h * 4, np.float32)
            img.pixels.foreach_get(px)
            tiles.append(px.reshape(h, w, 4)[::-1])  # Blender stores rows bottom to top
            bpy.data.images.remove(img)
        rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)
    h, w = sheet.shape[:2]
    img = bpy.data.images.new("FaceEdit contact sheet", w, h, alpha=True)
    try:
        img.pixels.foreach_set(np.ascontiguousarray(sheet[::-1]).ravel())
        img.filepath_raw = str(Path(bpy.path.abspath(out_path)))
        img.file_format = "PNG"
        img.save()
    finally:
        bpy.data.images.remove(img)
    return Path(bpy.path.abspath(out_path))
