"""Helpers for scripts that run inside the bpy module (.venv-blender): install the built
extension, wait on the add-on's poll step, snapshot the scene. Imports nothing but bpy/numpy."""

from __future__ import annotations

import contextlib
import hashlib
import time
import traceback

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


def drain(fe, limit_s: float = 300.0, until=None) -> dict:
    """Call the add-on's timer step (timers never fire in the bpy module) until no job runs (or
    until() is true) -> final status, `seen` (the messages the panel showed meanwhile) and `log`
    (the outcomes reported to Blender's Info area meanwhile: [level, text])."""
    jobs = fe.session.JOBS
    t0, seen, logged = time.monotonic(), [], len(jobs.log)
    while jobs.busy and not (until is not None and until()):
        fe.session.timer_step()
        if time.monotonic() - t0 > limit_s:
            raise SystemExit(f"job still running after {limit_s} s")
        if not seen or seen[-1] != jobs.status.message:
            seen.append(jobs.status.message)
        time.sleep(0.01)
    fe.session.timer_step()
    s = jobs.status
    return {"message": s.message, "error": s.error, "seen": seen, "log": [list(e) for e in jobs.log[logged:]]}


@contextlib.contextmanager
def section(res: dict, name: str):
    """Record whether a part of the driver ran to its end (its traceback otherwise) and its time;
    the driver goes on with the next part either way."""
    t0 = time.perf_counter()
    res.setdefault("sections", {})[name] = "running"
    try:
        yield
        res["sections"][name] = "ok"
    except BaseException:  # noqa: BLE001 - reported to the test, which fails with it
        res["sections"][name] = traceback.format_exc()
        print(res["sections"][name], flush=True)
    res.setdefault("timings_s", {})[name] = round(time.perf_counter() - t0, 2)


def install_connected(res: dict, zip_path: str, address: str, timeout_s: float = 60.0):
    """Section 'install': install the extension, point it at the server at address and Connect
    (res['connect']: drain's status) -> the add-on module (None when the section failed)."""
    with section(res, "install"):
        fe = install(zip_path)
        configure(fe, address, timeout_s=timeout_s, retries=1)
        bpy.ops.faceedit.connect()
        res["connect"] = drain(fe)
        return fe


def poll_refusal(op) -> dict:
    """Whether an operator's poll() refuses now, and what calling it raises."""
    refused = not op.poll()
    try:
        op()
        raised = ""
    except RuntimeError as exc:
        raised = str(exc)
    return {"refused": refused, "raised": raised}


def evaluated_coords(obj) -> np.ndarray:
    """The object's evaluated vertex positions (shape keys and modifiers applied), mesh space [V,3]."""
    dg = bpy.context.evaluated_depsgraph_get()
    dg.update()
    ev = obj.evaluated_get(dg)
    mesh = ev.to_mesh()
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    return co.reshape(-1, 3)


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
        if ob.type == "ARMATURE":
            entry["pose"] = [(pb.name, [round(v, 6) for row in pb.matrix_basis for v in row]) for pb in ob.pose.bones]
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
        "fcurves": _fcurves(),
    }


def _fcurves() -> dict:
    """Every keyframe of every action (channelbags in 5.x), as plain data."""
    out = {}
    for action in bpy.data.actions:
        curves = []
        for layer in getattr(action, "layers", ()):
            for strip in layer.strips:
                for bag in strip.channelbags:
                    curves += list(bag.fcurves)
        if not hasattr(action, "layers"):
            curves = list(action.fcurves)
        out[action.name] = sorted(
            (fc.data_path, fc.array_index, [tuple(round(v, 6) for v in kp.co) for kp in fc.keyframe_points])
            for fc in curves
        )
    return out


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
