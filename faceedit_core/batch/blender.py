"""Cycles turntables through a headless Blender worker (the `bpy` module, run as its own process).

The core never imports bpy (tests/architecture): the worker hands BLENDER_SCRIPT to the Python
that has bpy (`turntables[].blender_python`, else $FACEEDIT_BLENDER_PYTHON, else
./.venv-blender/bin/python), which imports the item's GLB with Blender's own glTF importer (so
every Cycles item also checks the GLB writer), sets the edit's shape key to 0 then 1, and
renders each turntable view with Cycles on the CPU into a scratch folder; the frames are read
back and written by the worker through storage.atomic like the preview renders.

Versions are pinned per worker: the spec names the bpy version (`blender_version`, default
5.0.1, what `make blender-venv` installs) and the script refuses to render with any other, so a
node with a different Blender fails its items with the two versions named instead of rendering
differently. On a Ray cluster each node's image carries its Blender venv (`pip install
bpy==5.0.1`, CPython 3.11) at one path, and `[run] resources = {"bpy-5.0.1" = 0.01}` with
`ray start --resources '{"bpy-5.0.1": 1000}'` on those nodes keeps Cycles items on them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from faceedit_core.errors import InputError
from faceedit_core.storage.atomic import atomic_write_text

# runs inside Blender's Python: argv[-1] is a JSON file of arguments; prints one JSON line
BLENDER_SCRIPT = r"""
import json
import sys

import bpy
from mathutils import Vector

args = json.load(open(sys.argv[-1]))
version = bpy.app.version_string.split()[0]
if version != args["version"]:
    print(json.dumps({"error": f"bpy {version} in {sys.executable}, the spec pins {args['version']}"}))
    sys.exit(3)
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=args["glb"])
mesh = [o for o in bpy.context.scene.objects if o.type == "MESH"][0]
keys = mesh.data.shape_keys.key_blocks if mesh.data.shape_keys else {}
if args["target"] not in keys:
    print(json.dumps({"error": f"the GLB has no shape key {args['target']!r} (found {list(keys.keys())})"}))
    sys.exit(4)
key = keys[args["target"]]

material = bpy.data.materials.new("skin")
material.use_nodes = True
bsdf = material.node_tree.nodes.get("Principled BSDF")
bsdf.inputs["Base Color"].default_value = (0.80, 0.58, 0.48, 1.0)
bsdf.inputs["Roughness"].default_value = 0.55
mesh.data.materials.clear()
mesh.data.materials.append(material)

scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = args["samples"]
scene.cycles.seed = 0
scene.cycles.use_denoising = False
scene.render.resolution_x = scene.render.resolution_y = args["size"]
scene.render.resolution_percentage = 100
scene.render.film_transparent = True
scene.render.image_settings.file_format = "PNG"
scene.render.image_settings.color_mode = "RGBA"
scene.render.threads_mode = "FIXED"
scene.render.threads = args["threads"]
scene.view_settings.view_transform = "Standard"  # the albedo as given, like the preview renderer
world = bpy.data.worlds.new("studio")
world.use_nodes = True
world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.30, 0.31, 0.34, 1.0)
scene.world = world
sun = bpy.data.objects.new("key", bpy.data.lights.new("key", "SUN"))
sun.data.energy = 2.5
sun.rotation_euler = (0.9, 0.0, 0.5)
scene.collection.objects.link(sun)
camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
camera.data.angle = args["fov"]
camera.data.clip_start, camera.data.clip_end = 0.01, 100.0
scene.collection.objects.link(camera)
scene.camera = camera
pivot = Vector(args["pivot"])
for v, origin in enumerate(args["origins"]):
    camera.location = Vector(origin)
    camera.rotation_euler = (pivot - camera.location).to_track_quat("-Z", "Y").to_euler()
    for value in (0, 1):
        key.value = float(value)
        scene.render.filepath = f"{args['out']}/k{value}_{v:02d}.png"
        bpy.ops.render.render(write_still=True)
print(json.dumps({"ok": True, "bpy": version}))
"""


def blender_python(configured: str | None) -> Path:
    """The Python with bpy: the spec's, else $FACEEDIT_BLENDER_PYTHON, else ./.venv-blender/bin/python."""
    candidates = [configured, os.environ.get("FACEEDIT_BLENDER_PYTHON"), str(Path.cwd() / ".venv-blender/bin/python")]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise InputError(
        "turntables.renderer 'cycles' needs a Python with bpy: set turntables.blender_python or "
        "FACEEDIT_BLENDER_PYTHON, or create ./.venv-blender (`make blender-venv`: bpy==5.0.1)"
    )


def _flame_to_blender(p) -> list[float]:
    """FLAME metres (y up) -> Blender after its glTF import (z up): (x, -z, y)."""
    return [float(p[0]), float(-p[2]), float(p[1])]


def render_turntable(glb: Path, cameras, tt, threads: int = 1, timeout_s: float = 3600) -> np.ndarray:
    """The GLB's shape key at 0 and 1, rendered by Cycles from each camera -> uint8 [2,N,H,W,4]."""
    from PIL import Image

    from faceedit_core.render.cameras import FLAME_SCALE, FLAME_SHIFT, FOCAL, TURNTABLE_PIVOT

    python = blender_python(tt.blender_python)
    origins_world = cameras.cam2world[:, :3, 3].numpy()
    to_flame = lambda w: np.asarray(w) / FLAME_SCALE - np.asarray(FLAME_SHIFT)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="faceedit-cycles-") as scratch:
        args = {
            "glb": str(glb),
            "target": _target_name(glb),
            "version": tt.blender_version,
            "samples": tt.samples,
            "size": tt.size,
            "threads": max(1, int(threads)),
            "fov": 2 * math.atan(0.5 / FOCAL),
            "pivot": _flame_to_blender(to_flame(TURNTABLE_PIVOT)),
            "origins": [_flame_to_blender(to_flame(o)) for o in origins_world],
            "out": scratch,
        }
        script = atomic_write_text(Path(scratch) / "turntable_bpy.py", BLENDER_SCRIPT)
        args_file = atomic_write_text(Path(scratch) / "args.json", json.dumps(args))
        proc = subprocess.run(
            [str(python), str(script), str(args_file)], capture_output=True, text=True, timeout=timeout_s
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        reply = json.loads(lines[-1]) if lines else {}
        if proc.returncode != 0 or not reply.get("ok"):
            detail = reply.get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
            if proc.returncode == 3:  # the pinned version differs: bad configuration, not a transient failure
                raise InputError(f"Cycles worker: {detail}")
            raise RuntimeError(f"Cycles worker {python} exited {proc.returncode}: {detail}")
        images = [
            [np.asarray(Image.open(Path(scratch) / f"k{k}_{v:02d}.png").convert("RGBA")) for v in range(len(cameras))]
            for k in (0, 1)
        ]
    return np.stack([np.stack(row) for row in images]).astype(np.uint8)


def _target_name(glb: Path) -> str:
    from faceedit_core.storage.gltf import read_glb

    names = [name for name, _ in read_glb(glb)["targets"]]
    if not names:
        raise InputError(f"{glb} has no morph target to render")
    return names[0]
