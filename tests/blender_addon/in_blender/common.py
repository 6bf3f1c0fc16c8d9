"""Helpers for scripts that run inside the bpy module (.venv-blender): install the built
extension, wait on the add-on's poll step, snapshot the scene. Imports nothing but bpy/numpy."""

from __future__ import annotations

import hashlib
import time

import bpy
import numpy as np


def install(zip_path: str):
    """Install and enable the extension zip with Blender's own installer -> the add-on module."""
    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    if result != {"FINISHED"}:
        raise SystemExit(f"package_install_files returned {result}")
    import bl_ext.user_default.faceedit as fe

    return fe


def configure(fe, address: str, timeout_s: float, retries: int) -> None:
    p = bpy.context.preferences.addons[fe.__name__].preferences
    p.address, p.timeout_s, p.retries = address, timeout_s, retries


def drain(fe, limit_s: float = 300.0) -> dict:
    """Call the add-on's timer step (timers never fire in the bpy module) until the job ends ->
    final status and `seen`: the progress messages the panel showed meanwhile."""
    t0, seen = time.monotonic(), []
    while fe.session.timer_step() is not None:
        if time.monotonic() - t0 > limit_s:
            raise SystemExit(f"job still running after {limit_s} s")
        if not seen or seen[-1] != fe.session.JOBS.status.message:
            seen.append(fe.session.JOBS.status.message)
        time.sleep(0.01)
    s = fe.session.JOBS.status
    return {"message": s.message, "error": s.error, "seen": seen}


def key_coords(kb) -> np.ndarray:
    co = np.empty(len(kb.data) * 3, np.float32)
    kb.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def snapshot() -> dict:
    """Everything an operator could change, as plain data (compare two for equality)."""
    objects = {}
    for ob in bpy.data.objects:
        entry = {
            "type": ob.type,
            "data": ob.data.name if ob.data else None,
            "matrix": [round(v, 6) for row in ob.matrix_world for v in row],
            "props": sorted(ob.keys()),
        }
        if ob.type == "MESH":
            co = np.empty(len(ob.data.vertices) * 3, np.float32)
            ob.data.vertices.foreach_get("co", co)
            entry["verts"] = hashlib.sha256(co.tobytes()).hexdigest()
            keys = ob.data.shape_keys
            entry["keys"] = [
                (kb.name, round(kb.value, 6), hashlib.sha256(key_coords(kb).tobytes()).hexdigest())
                for kb in (keys.key_blocks if keys else [])
            ]
        objects[ob.name] = entry
    return {
        "objects": objects,
        "collections": sorted(c.name for c in bpy.data.collections),
        "materials": sorted(m.name for m in bpy.data.materials),
        "images": sorted(i.name for i in bpy.data.images),
        "meshes": sorted(m.name for m in bpy.data.meshes),
        "actions": sorted(a.name for a in bpy.data.actions),
        "scene": {
            "camera": bpy.context.scene.camera.name if bpy.context.scene.camera else None,
            "frames": [bpy.context.scene.frame_start, bpy.context.scene.frame_end],
        },
    }


class CheckedLayout:
    """Stands in for UILayout in draw(): each function, keyword, property, icon, operator and menu
    used must exist in this Blender's API (a typo or an API change fails). Records (call, text)."""

    RNA = bpy.types.UILayout.bl_rna
    CONTAINERS = ("row", "column", "box", "split", "grid_flow", "column_flow")

    def __init__(self, log: list):
        object.__setattr__(self, "log", log)

    def __setattr__(self, name, value):
        if name not in self.RNA.properties:
            raise AttributeError(f"UILayout has no property '{name}'")

    def __getattr__(self, name):
        fn = self.RNA.functions.get(name)
        if fn is None:
            raise AttributeError(f"UILayout has no function '{name}'")
        params = [p.identifier for p in fn.parameters if not p.is_output]

        def call(*args, **kw):
            bad = set(kw) - set(params)
            if bad:
                raise TypeError(f"UILayout.{name}() has no parameter {sorted(bad)}")
            bound = dict(zip(params, args)) | kw
            if "icon" in bound and bound["icon"] not in fn.parameters["icon"].enum_items.keys():
                raise ValueError(f"unknown icon {bound['icon']!r}")
            if "type" in bound and name == "progress" and bound["type"] not in fn.parameters["type"].enum_items.keys():
                raise ValueError(f"unknown progress type {bound['type']!r}")
            if name == "prop" and bound["property"] not in bound["data"].bl_rna.properties:
                raise AttributeError(f"{bound['data']} has no property '{bound['property']}'")
            if name == "menu":
                getattr(bpy.types, bound["menu"])
            self.log.append((name, bound.get("text")))
            if name in self.CONTAINERS:
                return CheckedLayout(self.log)
            if name == "operator":
                module, op = bound["operator"].split(".")
                return _OperatorProps(getattr(getattr(bpy.ops, module), op).get_rna_type())
            return None

        return call


class _OperatorProps:
    def __init__(self, rna):
        object.__setattr__(self, "rna", rna)

    def __setattr__(self, name, value):
        if name not in self.rna.properties:
            raise AttributeError(f"operator {self.rna.identifier} has no property '{name}'")
