"""Animator tools: presets, the edit history, a keyed expression sequence, ARKit 52 shapes, glTF export.

- Presets (prompt + intensity) live in the add-on preferences (saved with them); the presets menu
  lists them before the server's known expressions.
- Every edit adds an entry to the object's history (`Object.faceedit_history`, saved in the
  .blend); Re-apply sends it again (the server answers an identical edit from its cache).
- Key Sequence keys FE shape keys one after another over a frame range (0 -> intensity -> 0 each,
  eased), and refuses, writing nothing, when a key the user owns lies in that range on one of
  those curves (the keys it wrote itself, recorded on the Key datablock, it may replace).
- ARKit 52 writes the 52 ARKit-named shape keys (Live Link Face, VRM perfect sync, Ready Player Me,
  Unreal) from their FACS definitions, one edit each, at value 0. Shapes without a FACS action
  FaceEdit can make (cheek puff, jaw thrust, tongue, ...) are written equal to the basis and named
  in the report.
- Export glTF writes the head with its edits as named morph targets (spaces become '_').
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import bpy
import numpy as np

from . import apply, operators, rig, session
from .operators import _alive, busy_reason, refuse, target_reason, with_server
from .wire.client import ServerError


def _arkit_table() -> dict[str, tuple[str, str | None]]:
    """ARKit name -> (FACS definition, the prompt FaceEdit understands for it, or None: no such action
    here), from arkit52.csv beside this file (one row per ARKit blendshape, alphabetical)."""
    with open(Path(__file__).with_name("arkit52.csv"), newline="", encoding="utf-8") as f:
        return {row["name"]: (row["facs"], row["prompt"] or None) for row in csv.DictReader(f)}


ARKIT = _arkit_table()
SEQUENCE_PROP = "faceedit_sequence"  # on the Key datablock: {key name: [frames FaceEdit keyed]}


# ---------------------------------------------------------------------------- presets
class FACEEDIT_OT_preset_add(bpy.types.Operator):
    """Save the prompt and intensity as a preset (kept with the preferences)"""

    bl_idname = "faceedit.preset_add"
    bl_label = "Add Preset"

    @classmethod
    def poll(cls, context):
        from . import prefs

        return refuse(
            cls,
            "The add-on preferences are not available" if prefs.preferences() is None else None,
            lambda: operators.prompt_reason(context),
        )

    def execute(self, context):
        from . import prefs

        p, fe = prefs.preferences(), context.scene.faceedit
        for item in p.presets:
            if item.prompt == fe.prompt:
                item.intensity = fe.intensity
                self.report({"INFO"}, f"preset '{fe.prompt}' updated ({fe.intensity:.2f})")
                return {"FINISHED"}
        item = p.presets.add()
        item.name, item.prompt, item.intensity = fe.prompt[:60], fe.prompt, fe.intensity
        p.preset_index = len(p.presets) - 1
        self.report({"INFO"}, f"preset '{fe.prompt}' ({fe.intensity:.2f}) added")
        return {"FINISHED"}


class FACEEDIT_OT_preset_remove(bpy.types.Operator):
    """Remove the preset with this prompt"""

    bl_idname = "faceedit.preset_remove"
    bl_label = "Remove Preset"
    prompt: bpy.props.StringProperty()

    @classmethod
    def poll(cls, context):
        from . import prefs

        p = prefs.preferences()
        return refuse(cls, "No presets yet" if p is None or not len(p.presets) else None)

    def execute(self, context):
        from . import prefs

        p = prefs.preferences()
        prompt = self.prompt or context.scene.faceedit.prompt
        for i, item in enumerate(p.presets):
            if item.prompt == prompt:
                p.presets.remove(i)
                self.report({"INFO"}, f"preset '{prompt}' removed")
                return {"FINISHED"}
        self.report({"ERROR"}, f"no preset '{prompt}'")
        return {"CANCELLED"}


# ---------------------------------------------------------------------------- history
class FACEEDIT_UL_history(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.label(text=item.prompt, icon="SHAPEKEY_DATA" if item.kind == "demo" else "ARMATURE_DATA")
        row.label(text=f"{item.intensity:.2f}  {item.mix.lower()}  f{item.frame}")


class FACEEDIT_OT_history_apply(bpy.types.Operator):
    """Apply this history entry again (its prompt, intensity, mix mode and identity) to the head"""

    bl_idname = "faceedit.history_apply"
    bl_label = "Re-apply"
    index: bpy.props.IntProperty(default=-1, options={"SKIP_SAVE"})
    wait: bpy.props.BoolProperty(default=False, options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        if not refuse(cls, busy_reason, lambda: target_reason(context)):
            return False
        return refuse(
            cls,
            "This head has no edit history yet" if not len(context.scene.faceedit.target.faceedit_history) else None,
        )

    def execute(self, context):
        obj, fe = context.scene.faceedit.target, context.scene.faceedit
        index = obj.faceedit_history_index if self.index < 0 else self.index
        if not 0 <= index < len(obj.faceedit_history):
            self.report({"ERROR"}, f"no history entry {index} on '{obj.name}'")
            return {"CANCELLED"}
        item = obj.faceedit_history[index]
        fe.prompt, fe.intensity = item.prompt, item.intensity
        if item.mix in ("REPLACE", "ADD"):
            fe.mix = item.mix
        fe.identity = item.identity
        return bpy.ops.faceedit.edit_expression(wait=self.wait)


# ---------------------------------------------------------------------------- sequence
def _sequence_keys(obj, fe) -> list:
    if fe.sequence.strip():
        names = [apply.key_name(p) for p in fe.sequence.split(";") if p.strip()]
        blocks = obj.data.shape_keys.key_blocks if obj.data.shape_keys else {}
        missing = [n for n in names if n not in blocks]
        if missing:
            raise ServerError("invalid_target", f"'{obj.name}' has no key {', '.join(missing)}: Edit Expression first")
        return [blocks[n] for n in names]
    keys = apply.fe_keys(obj)
    if not keys:
        raise ServerError("invalid_target", f"'{obj.name}' has no FE shape keys: Edit Expression first")
    return keys


def key_sequence(obj, fe) -> str:
    """Key each expression in turn over [start, end] (0 -> its intensity -> 0), eased; refuses on user keys."""
    keys = _sequence_keys(obj, fe)
    start, end = fe.sequence_start, fe.sequence_end
    if end - start < 2 * len(keys):
        raise ServerError(
            "invalid_range",
            f"frames {start}-{end} are too few for {len(keys)} expressions (at least {2 * len(keys)} frames)",
        )
    shape_keys = obj.data.shape_keys
    ours = json.loads(shape_keys.get(SEQUENCE_PROP, "{}"))
    conflicts = []
    for kb in keys:
        fc = apply.fcurve(shape_keys, kb.path_from_id("value"))
        mine = set(ours.get(kb.name, []))
        for kp in fc.keyframe_points if fc else ():
            if start - 1e-4 <= kp.co[0] <= end + 1e-4 and round(kp.co[0], 3) not in mine:
                conflicts.append(f"{kb.name} @ {kp.co[0]:g}")
    if conflicts:
        raise ServerError(
            "user_keys",
            f"your keyframes lie in frames {start}-{end} ({', '.join(conflicts[:6])}"
            f"{' ...' if len(conflicts) > 6 else ''}): nothing was keyed. Pick another range or move those keys",
        )
    peaks = {item.key: item.intensity for item in obj.faceedit_history if item.key}
    step = (end - start) / len(keys)
    for i, kb in enumerate(keys):
        fc = apply.fcurve(shape_keys, kb.path_from_id("value"))
        for kp in reversed(list(fc.keyframe_points) if fc else []):  # our own earlier sequence keys
            if round(kp.co[0], 3) in set(ours.get(kb.name, [])):
                fc.keyframe_points.remove(kp)
        frames = [round(start + i * step), round(start + (i + 0.5) * step), round(start + (i + 1) * step)]
        peak = peaks.get(kb.name, 1.0) or 1.0
        value = kb.value
        for frame, v in zip(frames, (0.0, peak, 0.0)):
            kb.value = v
            kb.keyframe_insert("value", frame=frame)
        kb.value = value
        fc = apply.fcurve(shape_keys, kb.path_from_id("value"))
        for kp in fc.keyframe_points:
            if round(kp.co[0], 3) in frames:
                if fe.sequence_easing == "EASE_IN_OUT":
                    kp.interpolation, kp.easing = "BEZIER", "AUTO"
                    kp.handle_left_type = kp.handle_right_type = "AUTO_CLAMPED"
                else:
                    kp.interpolation = fe.sequence_easing
        fc.update()
        ours[kb.name] = [float(f) for f in frames]
    shape_keys[SEQUENCE_PROP] = json.dumps(ours)
    return f"keyed {len(keys)} expressions over frames {start}-{end} ({fe.sequence_easing.lower().replace('_', ' ')})"


class FACEEDIT_OT_key_sequence(bpy.types.Operator):
    """Key the FE expressions one after another over the frame range (0 -> intensity -> 0 each, eased). Never
    touches keyframes you made: with one in the range it refuses"""

    bl_idname = "faceedit.key_sequence"
    bl_label = "Key Sequence"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        if not refuse(cls, lambda: target_reason(context)):
            return False
        obj = context.scene.faceedit.target
        return refuse(cls, "Key Sequence works on the demo head's FE keys" if rig.target_kind(obj) != "demo" else None)

    def execute(self, context):
        try:
            self.report({"INFO"}, key_sequence(context.scene.faceedit.target, context.scene.faceedit))
        except ServerError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


# ---------------------------------------------------------------------------- ARKit 52
def rig_coords(obj, sent: dict, result: dict) -> np.ndarray:
    """A FLAME rig's positions for an edit reply, through its own Exp keys: basis + sum dpsi_k (Exp_k - basis)."""
    values = rig.rig_edit_values(obj, sent, result, 1.0)
    keys = rig.flame_keys(obj)["Exp"]
    basis = apply.key_coords(obj.data.shape_keys.reference_key)
    out = basis.copy()
    for k in np.flatnonzero(np.abs(values["Exp"] - sent["expression"][0]) > 1e-7):
        out += (values["Exp"][k] - sent["expression"][0][k]) * (apply.key_coords(keys[k]) - basis)
    return out


def write_arkit(scene_name: str, obj_name: str, name: str, args: dict, result: dict) -> str:
    obj = _alive(obj_name)
    if rig.target_kind(obj) == "flame":
        coords = rig_coords(obj, args["params"], result)
    else:
        coords = rig.edited_coords(obj, result)
    keys = obj.data.shape_keys
    kb = keys.key_blocks.get(name) if keys else None
    apply.check_key_write(obj, name, coords, replace_keyed=False)
    kb = apply.write_shape_key(obj, name, coords)
    kb.value = 0.0
    return f"'{obj.name}': {name} ({ARKIT[name][0]}) written"


def arkit_names(only: str) -> list[str]:
    names = [n.strip() for n in re.split(r"[,;\s]+", only) if n.strip()] or list(ARKIT)
    unknown = [n for n in names if n not in ARKIT]
    if unknown:
        raise ServerError("invalid_name", f"not ARKit shape names: {', '.join(unknown)}")
    return names


class FACEEDIT_OT_arkit52(operators._Request):
    """Write the 52 ARKit blendshapes (Live Link Face, VRM, Ready Player Me, Unreal) as shape keys at value 0,
    each from its FACS definition, one edit each; shapes with no FACS action FaceEdit can make equal the basis"""

    bl_idname = "faceedit.arkit52"
    bl_label = "ARKit 52"
    only: bpy.props.StringProperty(
        name="Only", default="", options={"SKIP_SAVE"}, description="Comma-separated subset of ARKit names"
    )

    @classmethod
    def poll(cls, context):
        return refuse(cls, busy_reason, lambda: target_reason(context))

    def start(self, context):
        scene = context.scene
        obj = operators._target(scene)
        names = arkit_names(self.only)
        obj_name = obj.name
        empty = [n for n in names if ARKIT[n][1] is None]  # no FACS action FaceEdit can make
        doable = [n for n in names if ARKIT[n][1] is not None]
        refused: list[str] = []  # the server cannot make them on this head (e.g. one side of a symmetric head)
        label = f"ARKit 52 on '{obj_name}'"
        if not doable:
            raise ServerError("invalid_name", f"none of {', '.join(names)} has a FACS action FaceEdit can make")

        def send(i: int):
            name = doable[i]
            target = _alive(obj_name)
            rig.check_server_fits(target, session.server)

            def refuse_one(err: dict) -> str | None:
                if err.get("code") not in ("invalid_field", "prompt_not_understood"):
                    return None
                refused.append(name)
                return f"{label}: {name} not possible on this head ({err.get('message', '')[:160]})"

            def then(flame_to_mesh):
                params = rig.read_params(_alive(obj_name), session.server, "REPLACE", flame_to_mesh)
                args = {"params": params, "prompt": ARKIT[name][1], "intensity": 1.0}
                session.JOBS.submit(
                    "edit",
                    args,
                    f"{label}: {name} ({i + 1}/{len(doable)})",
                    lambda r: write_arkit(scene.name, obj_name, name, args, r),
                    on_error=refuse_one,
                )

            operators.rig_frame(target, then)

        def blanks():
            """The shapes FaceEdit cannot make here, equal to the basis (pipelines expect all 52 names)."""
            target = _alive(obj_name)
            if target.data.shape_keys is None:
                target.shape_key_add(name="Basis", from_mix=False)
            basis = apply.key_coords(target.data.shape_keys.reference_key)
            for n in empty + refused:
                apply.write_shape_key(target, n, basis).value = 0.0
            made = len(doable) - len(refused)
            notes = [f"{made} shapes from their FACS definitions"]
            if empty:
                notes.append(
                    f"{len(empty)} without a FACS action FaceEdit can make, equal to the basis: {', '.join(empty)}"
                )
            if refused:
                notes.append(
                    f"{len(refused)} the server cannot make on this head, equal to the basis: {', '.join(refused)}"
                )
            return f"{label}: " + "; ".join(notes)

        session.JOBS.queue[:] = [lambda i=i: send(i) for i in range(1, len(doable))] + [
            lambda: session.JOBS.submit("ping", {}, label, lambda r: blanks())
        ]
        with_server(label, lambda: send(0))
        return label


# ---------------------------------------------------------------------------- glTF export
def gltf_name(name: str) -> str:
    """A morph target name without spaces: 'FE smiling' -> 'FE_smiling'."""
    return re.sub(r"\s+", "_", name.strip())


def export_gltf(context, obj, path: Path) -> str:
    """Write obj with its shape keys as named morph targets (no spaces) to a .glb/.gltf -> a message."""
    import addon_utils

    if not hasattr(bpy.ops.export_scene, "gltf"):
        addon_utils.enable("io_scene_gltf2", default_set=True)
    copy = obj.copy()
    copy.data = obj.data.copy()
    copy.animation_data_clear()
    if copy.data.shape_keys is not None and copy.data.shape_keys.animation_data is not None:
        copy.data.shape_keys.animation_data_clear()
    context.scene.collection.objects.link(copy)
    names = []
    selected = [ob for ob in context.view_layer.objects if ob.select_get()]
    active = context.view_layer.objects.active
    try:
        for kb in copy.data.shape_keys.key_blocks[1:] if copy.data.shape_keys else ():
            kb.name = gltf_name(kb.name)
            names.append(kb.name)
        apply.select_only(context, copy)
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = "GLB" if path.suffix.lower() == ".glb" else "GLTF_SEPARATE"
        result = bpy.ops.export_scene.gltf(
            filepath=str(path), export_format=fmt, use_selection=True, export_morph=True, export_apply=False
        )
        if result != {"FINISHED"}:
            raise ServerError("export_failed", f"the glTF exporter returned {result}")
    finally:
        mesh = copy.data
        bpy.data.objects.remove(copy)
        bpy.data.meshes.remove(mesh)
        for ob in context.view_layer.objects:
            ob.select_set(ob in selected)
        context.view_layer.objects.active = active
    return f"wrote {path} with {len(names)} morph targets ({', '.join(names[:6])}{' ...' if len(names) > 6 else ''})"


class FACEEDIT_OT_export_gltf(bpy.types.Operator):
    """Export the head to glTF/GLB with its edits as named morph targets (spaces in names become '_')"""

    bl_idname = "faceedit.export_gltf"
    bl_label = "Export glTF"
    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        if not refuse(cls, lambda: target_reason(context)):
            return False
        obj = context.scene.faceedit.target
        return refuse(cls, f"'{obj.name}' has no shape keys to export" if obj.data.shape_keys is None else None)

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath or context.scene.faceedit.export_path))
        if path.suffix.lower() not in (".glb", ".gltf"):
            self.report({"ERROR"}, f"'{path}' must end in .glb or .gltf")
            return {"CANCELLED"}
        try:
            self.report({"INFO"}, export_gltf(context, context.scene.faceedit.target, path))
        except (ServerError, RuntimeError, OSError) as exc:
            self.report({"ERROR"}, f"glTF export failed: {exc}")
            return {"CANCELLED"}
        return {"FINISHED"}


CLASSES = (
    FACEEDIT_OT_preset_add,
    FACEEDIT_OT_preset_remove,
    FACEEDIT_UL_history,
    FACEEDIT_OT_history_apply,
    FACEEDIT_OT_key_sequence,
    FACEEDIT_OT_arkit52,
    FACEEDIT_OT_export_gltf,
)
