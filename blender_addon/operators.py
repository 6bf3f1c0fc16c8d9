"""Operators: connect, add the demo head, edit expression, render views, keyframe, turntable, train, cancel.

Each request operator checks everything it can (its poll() says why it is unavailable, in F3
search and tooltips too), sends one request and returns FINISHED with an Info report saying
that the request was sent; the reply is applied by `on_done` on the main thread from the poll
timer and its outcome (written, failed, cancelled) is reported to the Info area and the status
bar. `wait=True` drives the same poll loop until the reply has arrived (scripts, background
mode) and then returns FINISHED only when the request succeeded.
"""

from __future__ import annotations

import math
import time

import bpy
import numpy as np

from . import apply, demo_head, rig, session
from .wire.client import ServerError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------- poll() helpers
def busy_reason() -> str | None:
    job = session.JOBS.job
    return f"FaceEdit is busy with '{job.label}': wait, or press Esc to cancel it" if job else None


def target_reason(context) -> str | None:
    scene = getattr(context, "scene", None)
    fe = getattr(scene, "faceedit", None)
    if fe is None:
        return "No scene"
    obj = fe.target
    if obj is None:
        return "Choose a head first: the Head field in the FaceEdit panel, or Add Demo Head"
    if rig.target_kind(obj) == "":
        return f"'{obj.name}' is not a FLAME rig (Exp*/Shape* keys) or the FaceEdit demo head"
    if obj.mode != "OBJECT":
        return f"'{obj.name}' is in {obj.mode.replace('_', ' ').title()} Mode: switch to Object Mode"
    return None


def prompt_reason(context) -> str | None:
    if not context.scene.faceedit.prompt.strip():
        return "Type a prompt first (or pick one from the presets menu)"
    return None


def identity_reason(context) -> str | None:
    field = identity_field(context.scene.faceedit.identity)
    if field is not None and field.get("seed", 0) >= 2**63:
        return "Identity: a seed must lie within 0..2^63-1"
    return None


def refuse(cls, *reasons) -> bool:
    """poll(): False with the first reason that applies (shown by Blender), else True."""
    for reason in reasons:
        text = reason() if callable(reason) else reason
        if text:
            cls.poll_message_set(text)
            return False
    return True


# ---------------------------------------------------------------------------- targets
def _target(scene):
    obj = scene.faceedit.target
    if rig.target_kind(obj) == "":
        raise ServerError(
            "invalid_target",
            "choose a head: an official FLAME rig (FLAME-<gender> with Exp*/Shape* keys) "
            "or the FaceEdit demo head (Add Demo Head)",
        )
    return obj


def target_names(context) -> list[str]:
    """The heads an edit or turntable works on: the Head, plus every selected head when asked."""
    scene = context.scene
    names = [_target(scene).name]
    if scene.faceedit.all_selected:
        names += [ob.name for ob in context.selected_objects if rig.target_kind(ob) and ob.name not in names]
    return names


def _alive(name: str):
    obj = bpy.data.objects.get(name)
    if obj is None:
        raise ServerError("invalid_target", f"the head '{name}' was deleted while the server worked")
    return obj


with_server = session.with_server


def identity_field(text: str) -> dict | None:
    """The panel's Identity -> the requests' 'identity' field (paper tier): None when empty (the server's
    default face), {"seed": n} for a number, else {"latent": name}."""
    text = text.strip()
    if not text:
        return None
    return {"seed": int(text)} if text.isascii() and text.isdigit() else {"latent": text}


def request_settings(scene) -> dict:
    """The scene settings a request uses, read when it is sent (the reply may come much later)."""
    fe = scene.faceedit
    keys = ("prompt", "intensity", "keyframe", "mix", "replace_keyed", "views", "view_size", "planes_in_render")
    return {k: getattr(fe, k) for k in keys} | {
        "frame": scene.frame_current,
        "scene": scene.name,
        "identity": fe.identity.strip(),
    }


def with_identity(args: dict, settings: dict) -> dict:
    """args with the 'identity' field when the panel names one (only then: a preview-tier server refuses it)."""
    field = identity_field(settings["identity"])
    return args if field is None else args | {"identity": field}


# ---------------------------------------------------------------------------- edits
def rig_frame(obj, then) -> None:
    """For a FLAME rig: fetch the server's expression basis it lacks, check the rig against it and
    call then(flame_to_mesh); for the demo head call then(None) at once."""
    if rig.target_kind(obj) != "flame":
        then(None)
        return
    ids = rig.basis_ids(obj, session.server)
    if not ids:
        raise ServerError("invalid_target", f"'{obj.name}' has no Exp keys the server's head can drive")
    name = obj.name

    def check():
        t, _scale, _frame = rig.match_basis(_alive(name), {k: session.server["basis"][k] for k in ids})
        then(t)

    need = [k for k in ids if k not in session.server["basis"]]
    if not need:
        check()
        return

    def on_basis(result):
        basis = result.get("expression_basis") or {}
        dirs = np.asarray(basis.get("dirs"))
        if list(basis.get("ids") or []) != need or dirs.shape != (len(need), len(_alive(name).data.vertices), 3):
            raise ServerError("invalid_reply", f"the server sent no expression basis for components {need}")
        session.server["basis"].update({k: dirs[i] for i, k in enumerate(need)})
        check()
        return "rig checked"

    session.JOBS.submit("hello", {"expression_basis": need}, f"Check '{name}'", on_basis)


def send_edit(obj_name: str, settings: dict, label: str) -> None:
    """Check the head against the server and send the edit (at intensity 1: the key's value is the intensity)."""
    obj = _alive(obj_name)
    rig.check_server_fits(obj, session.server)

    def send(flame_to_mesh):
        target = _alive(obj_name)
        params = rig.read_params(target, session.server, settings["mix"], flame_to_mesh)
        args = with_identity({"params": params, "prompt": settings["prompt"], "intensity": 1.0}, settings)
        session.JOBS.submit(
            "edit",
            args,
            label,
            lambda r: apply_edit(
                bpy.data.scenes[settings["scene"]], _alive(obj_name), args, r, settings, flame_to_mesh
            ),
        )

    rig_frame(obj, send)


def apply_edit(scene, obj, args: dict, result: dict, settings: dict, flame_to_mesh=None) -> str:
    """Write an edit reply: the demo head's key 'FE <prompt>' (value = intensity) or a rig's Exp values and jaw."""
    if rig.target_kind(obj) == "flame":
        return apply_rig_edit(scene, obj, args, result, settings, flame_to_mesh)
    coords = rig.edited_coords(obj, result)
    name = apply.key_name(args["prompt"])
    changes = apply.check_key_write(obj, name, coords, settings["replace_keyed"])  # before any write
    kb = apply.write_shape_key(obj, name, coords) if changes else obj.data.shape_keys.key_blocks[name]
    kb.slider_min, kb.slider_max = apply.SLIDER_RANGE
    kb.value = settings["intensity"]
    notes = []
    if settings["mix"] == "REPLACE":
        others = [k for k in apply.fe_keys(obj) if k.name != name and k.value != 0.0]
        for other in others:
            other.value = 0.0
        if others:
            notes.append(f"{len(others)} earlier FE key(s) set to 0 (Mix: Replace)")
    if settings["keyframe"]:
        _fc, replaced = apply.keyframe_key(obj, name, settings["frame"])
        notes.append(
            f"keyed at frame {settings['frame']}"
            + (f" (replaced the key there, {replaced:.2f})" if replaced is not None else "")
        )
    add_history(obj, args["prompt"], settings, name, "demo", result)
    ok = all(result.get("success") or [False])
    reached = "expression reached" if ok else "expression only partly reached"
    shape = "" if changes else ", shape unchanged"
    return (
        f"{name} = {settings['intensity']:.2f} on '{obj.name}' ({reached}{shape}"
        + "".join(f"; {n}" for n in notes)
        + ")"
    )


def apply_rig_edit(scene, obj, args: dict, result: dict, settings: dict, flame_to_mesh) -> str:
    """A FLAME rig: Exp values psi + s * dpsi, the jaw and eye bones jaw + s * djaw, eyes + s * dgaze
    (checked, then written)."""
    values = rig.rig_edit_values(obj, args["params"], result, settings["intensity"])
    keys = rig.flame_keys(obj)
    exp = keys["Exp"]
    t = rig.FRAMES["as is"] if flame_to_mesh is None else flame_to_mesh
    bones = {b: rig.bone_frame(obj, b, t) is not None for b in ("jaw", *rig.EYE_BONES)}
    correctives = rig.correctives_on(obj, t)  # read before the bones move
    # every check passed: write
    changed = []
    for i, kb in enumerate(exp):
        new = float(values["Exp"][i]) if i < len(values["Exp"]) else (0.0 if settings["mix"] == "REPLACE" else kb.value)
        if kb.value != new:
            changed.append(kb)
        rig.set_value(kb, new)
    posed, notes = [], []
    if bones["jaw"]:
        posed.append(rig.write_bone(obj, "jaw", t, values["jaw_pose"]))
    elif values["jaw_pose_moved"]:
        notes.append("the jaw change was not applied (no armature with a jaw bone)")
    for i, bone in enumerate(rig.EYE_BONES):
        if bones[bone]:
            posed.append(rig.write_bone(obj, bone, t, values["eye_pose"][3 * i : 3 * i + 3]))
        elif values["eye_pose_moved"]:
            notes.append(f"the gaze change was not applied to the {bone} (no such bone)")
    if correctives:
        for kb, w in zip(keys["Pose"], rig.pose_correctives(obj, t)):
            rig.set_value(kb, float(w))
        notes.append("pose correctives updated")
    notes.insert(0, f"{len(changed)} Exp values set")
    if settings["keyframe"]:
        frame = settings["frame"]
        for kb in exp:
            if kb.value != 0.0 or kb in changed:
                kb.keyframe_insert("value", frame=frame)
        for pb in posed:
            pb.keyframe_insert(rig.bone_path(pb), frame=frame)
        if correctives:  # keyed with the bones they follow, so scrubbing never shows stale correctives
            for kb in keys["Pose"]:
                kb.keyframe_insert("value", frame=frame)
        notes.append(f"keyed at frame {frame}")
    add_history(obj, args["prompt"], settings, "", "flame", result)
    jaw_deg = math.degrees(float(np.linalg.norm(values["jaw_pose"])))
    what = f"{settings['prompt']!r} at {settings['intensity']:.2f}, jaw {jaw_deg:.1f} deg"
    return f"'{obj.name}': {what} ({'; '.join(notes)})"


def add_history(obj, prompt: str, settings: dict, key: str, kind: str, result: dict) -> None:
    item = obj.faceedit_history.add()
    item.prompt, item.intensity, item.key, item.kind = prompt, settings["intensity"], key, kind
    item.mix, item.frame = settings["mix"], settings["frame"]
    item.identity = settings["identity"]
    item.mapper_ids = ",".join(str(i) for i in result.get("mapper_ids") or [])
    obj.faceedit_history_index = len(obj.faceedit_history) - 1


def camera_yaws_deg(cameras) -> list[float]:
    """EG3D cameras [N,25] (cam2world 4x4 first) -> yaw of each camera about the head's +Y, degrees."""
    c2w = np.asarray(cameras, np.float64)[:, :16].reshape(-1, 4, 4)
    return [math.degrees(math.atan2(p[0], p[2])) for p in c2w[:, :3, 3]]


def apply_views(scene, obj, args: dict, result: dict, settings: dict) -> str:
    images, size = result.get("images"), result.get("size")
    pngs = images[0] if isinstance(images, list) and images and isinstance(images[0], list) else []
    want = args["turntable"]["views"]
    if len(pngs) != want or not all(isinstance(p, bytes) and p.startswith(PNG_MAGIC) for p in pngs):
        raise ServerError("invalid_reply", f"the server returned {len(pngs)} images, expected {want} PNGs")
    text = apply.prompt_text(args["prompt"])
    yaws = camera_yaws_deg(result["cameras"])
    coll = apply.image_planes(scene, obj, text, pngs, int(size), yaws, settings["planes_in_render"])
    hidden = "" if settings["planes_in_render"] else ", hidden from final renders"
    return f"{coll.name}: {len(pngs)} image planes{hidden}"


# ---------------------------------------------------------------------------- operators
class FACEEDIT_OT_report(bpy.types.Operator):
    """Put a FaceEdit outcome into the Info area and the status bar.

    Reports of an operator called from Python stay with the caller (bpy_operator.cc: "Own so these
    don't move into global reports"), so a plain call from the poll timer would only print. Invoked,
    this one goes modal and reports from its first timer event: the window manager owns a modal
    operator's reports and shows them in the Info area and the status bar (errors also as a popup)."""

    bl_idname = "faceedit.report"
    bl_label = "FaceEdit Report"
    bl_options = {"INTERNAL"}
    level: bpy.props.EnumProperty(items=[(k, k, "") for k in ("INFO", "WARNING", "ERROR")], default="INFO")
    message: bpy.props.StringProperty()

    @classmethod
    def poll(cls, context):
        return refuse(cls, None if getattr(context, "window_manager", None) else "No window manager to report to")

    def invoke(self, context, event):
        if context.window is None:
            return self.execute(context)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.0, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        self.report({self.level}, self.message)
        return {"FINISHED"}

    def execute(self, context):  # no window (background mode): the console only
        print(f"{self.level.title()}: {self.message}")
        return {"FINISHED"}


class _Request(bpy.types.Operator):
    """Base: subclasses implement start(context) -> the label of what was sent."""

    bl_options = {"REGISTER"}
    wait: bpy.props.BoolProperty(
        name="Wait",
        default=False,
        options={"SKIP_SAVE"},
        description="Block until the reply is applied (scripts, background mode)",
    )

    @classmethod
    def poll(cls, context):
        return refuse(cls, busy_reason)

    def execute(self, context):
        jobs = session.JOBS
        outcomes = len(jobs.log)
        try:
            label = self.start(context) or self.bl_label
        except ServerError as exc:
            jobs.local_error(str(exc))
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not self.wait:
            session.ensure_timer()
            if jobs.busy:
                self.report({"INFO"}, f"{label}: sent; the outcome will be reported here (Esc cancels)")
            return {"FINISHED"}
        while jobs.busy:  # the queue's next request starts as soon as one ends
            jobs.poll_step()
            time.sleep(0.02)
        ended = jobs.log[outcomes:]
        return {"CANCELLED"} if ended and ended[-1][0] != "INFO" else {"FINISHED"}


class _EditRequest(_Request):
    """Base of the requests that edit the head with the panel's prompt (and identity)."""

    @classmethod
    def poll(cls, context):
        return refuse(
            cls,
            busy_reason,
            lambda: target_reason(context),
            lambda: prompt_reason(context),
            lambda: identity_reason(context),
        )


class FACEEDIT_OT_connect(_Request):
    """Ask the server for its tier, models and known expressions"""

    bl_idname = "faceedit.connect"
    bl_label = "Connect"

    def start(self, context):
        session.server.clear()
        with_server("Connect", lambda: None, touches_scene=False)
        return "Connect"


class FACEEDIT_OT_add_demo_head(_Request):
    """Add the server's demo head (FLAME layout, with UVs) clear of the other objects, select it, frame it with
    a camera and make it the target"""

    bl_idname = "faceedit.add_demo_head"
    bl_label = "Add Demo Head"

    @classmethod
    def poll(cls, context):
        mode = getattr(context, "mode", "OBJECT")
        return refuse(cls, busy_reason, "Switch to Object Mode first" if mode != "OBJECT" else None)

    def start(self, context):
        scene_name = context.scene.name

        def on_hello(result):
            session.remember_hello(result)
            head = result.get("head")
            if not head or head.get("vertices") is None:
                raise ServerError("invalid_reply", "the server sent no head mesh")
            return add_demo_head(bpy.context, bpy.data.scenes[scene_name], head)

        session.JOBS.submit("hello", {"head_mesh": True}, "Add demo head", on_hello)
        return "Add demo head"


def add_demo_head(context, scene, mesh: dict) -> str:
    """Build the head from the server's mesh clear of the scene's objects, select it, frame it (camera and
    3D views) -> a message."""
    obj = demo_head.build_demo_head(context, mesh)
    moved = apply.place_clear_of_others(scene, obj)
    scene.faceedit.target = obj
    apply.select_only(context, obj)
    old = scene.camera
    cam = apply.frame_camera(scene, [obj], "FE camera")
    scene.camera = cam
    if not any(ob.type == "LIGHT" for ob in scene.objects):
        light = bpy.data.objects.new("FE key light", bpy.data.lights.new("FE key light", "SUN"))
        light.data.energy, light.rotation_euler = 3.0, (0.9, 0.2, -0.6)
        scene.collection.objects.link(light)
    views = apply.view_selected(context)
    where = " beside the other objects" if moved else ""
    return (
        f"added '{obj.name}' ({len(obj.data.vertices)} vertices){where}, selected; scene camera "
        f"'{old.name if old else 'none'}' -> '{cam.name}', framing the head" + (f" in {views} view(s)" if views else "")
    )


class FACEEDIT_OT_set_prompt(bpy.types.Operator):
    """Use this expression as the prompt"""

    bl_idname = "faceedit.set_prompt"
    bl_label = "Set Prompt"
    bl_options = {"INTERNAL"}
    prompt: bpy.props.StringProperty()
    intensity: bpy.props.FloatProperty(default=math.nan, options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return refuse(cls, "No scene" if getattr(context, "scene", None) is None else None)

    def execute(self, context):
        context.scene.faceedit.prompt = self.prompt
        if not math.isnan(self.intensity):
            context.scene.faceedit.intensity = self.intensity
        return {"FINISHED"}


class FACEEDIT_OT_edit_expression(_EditRequest):
    """Edit the head's expression from the prompt. Demo head: writes (or reuses) the shape key 'FE <prompt>' at
    intensity 1 and sets its value to the intensity (a live slider). FLAME rig: sets its Exp values and jaw"""

    bl_idname = "faceedit.edit_expression"
    bl_label = "Edit Expression"

    def start(self, context):
        settings = request_settings(context.scene)
        names = target_names(context)
        text = apply.prompt_text(settings["prompt"])
        labels = [
            f"Edit '{text}'" + (f" on '{n}' ({i + 1}/{len(names)})" if len(names) > 1 else "")
            for i, n in enumerate(names)
        ]
        sends = [lambda n=n, label=label: send_edit(n, settings, label) for n, label in zip(names, labels)]
        session.JOBS.queue[:] = sends[1:]
        with_server(labels[0], sends[0])
        return labels[0]


class FACEEDIT_OT_render_views(_EditRequest):
    """Render the edited head from several views and place the images beside it as planes (packed in the .blend;
    hidden from final renders unless 'Planes in renders')"""

    bl_idname = "faceedit.render_views"
    bl_label = "Render Views"

    def start(self, context):
        settings = request_settings(context.scene)
        name = _target(context.scene).name
        label = f"Render '{apply.prompt_text(settings['prompt'])}'"

        def send():
            obj = _alive(name)
            rig.check_server_fits(obj, session.server)

            def then(flame_to_mesh):
                params = rig.read_params(_alive(name), session.server, "ADD", flame_to_mesh)
                n = settings["views"]
                spread = 60.0 if n > 1 else 0.0
                args = with_identity(
                    {
                        "params": params,
                        "prompt": settings["prompt"],
                        "intensity": float(settings["intensity"]),
                        "size": settings["view_size"],
                        "turntable": {"views": n, "pitch": 0.0, "yaw_min": -spread, "yaw_max": spread},
                    },
                    settings,
                )
                session.JOBS.submit(
                    "render",
                    args,
                    label,
                    lambda r: apply_views(bpy.data.scenes[settings["scene"]], _alive(name), args, r, settings),
                )

            rig_frame(obj, then)

        with_server(label, send)
        return label


class FACEEDIT_OT_train(_Request):
    """Train the server's mapper for the prompt now (progress in the status bar; Esc or Cancel stops it)"""

    bl_idname = "faceedit.train"
    bl_label = "Train"

    @classmethod
    def poll(cls, context):
        return refuse(cls, busy_reason, lambda: prompt_reason(context))

    def start(self, context):
        prompt = context.scene.faceedit.prompt
        label = f"Train '{apply.prompt_text(prompt)}'"

        def send():
            session.JOBS.submit(
                "train",
                {"prompt": prompt},
                label,
                lambda r: f"{label}: mapper {r.get('mapper_id')} ready (edits with this prompt now reuse it)",
                touches_scene=False,
            )

        with_server(label, send, touches_scene=False)
        return label


class _OnTarget(bpy.types.Operator):
    """Base: subclasses implement run(context, obj) on the checked target -> a message."""

    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return refuse(cls, lambda: target_reason(context))

    def execute(self, context):
        try:
            self.report({"INFO"}, self.run(context, _target(context.scene)))
        except ServerError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class FACEEDIT_OT_keyframe(_OnTarget):
    """Keyframe the edit at the current frame: the prompt's shape key value (demo head), or the Exp values and
    the jaw bone (FLAME rig)"""

    bl_idname = "faceedit.keyframe"
    bl_label = "Keyframe"

    @classmethod
    def poll(cls, context):
        if not refuse(cls, lambda: target_reason(context)):
            return False
        obj, fe = context.scene.faceedit.target, context.scene.faceedit
        if rig.target_kind(obj) == "demo":
            name = apply.key_name(fe.prompt)
            keys = obj.data.shape_keys
            if keys is None or name not in keys.key_blocks:
                cls.poll_message_set(f"'{obj.name}' has no shape key '{name}': Edit Expression first")
                return False
        return True

    def run(self, context, obj):
        scene = context.scene
        frame = scene.frame_current
        if rig.target_kind(obj) == "flame":
            exp = [kb for kb in rig.flame_keys(obj)["Exp"] if kb.value != 0.0]
            for kb in exp:
                kb.keyframe_insert("value", frame=frame)
            bones = []
            for bone in ("jaw", *rig.EYE_BONES):
                found = rig.bone_frame(obj, bone, rig.FRAMES["as is"])
                if found is not None:
                    found[0].keyframe_insert(rig.bone_path(found[0]), frame=frame)
                    bones.append(bone)
            return f"keyed {len(exp)} Exp values" + (f" and {', '.join(bones)}" if bones else "") + f" at frame {frame}"
        name = apply.key_name(scene.faceedit.prompt)
        keys = obj.data.shape_keys
        if keys is None or name not in keys.key_blocks:
            raise ServerError("invalid_target", f"'{obj.name}' has no shape key '{name}': Edit Expression first")
        _fc, replaced = apply.keyframe_key(obj, name, frame)
        was = f" (replaced {replaced:.2f})" if replaced is not None else ""
        return f"keyed '{name}' = {keys.key_blocks[name].value:.2f} at frame {frame}{was}"


class FACEEDIT_OT_turntable(_OnTarget):
    """Add (or update) a turntable around the head (or all selected heads): an empty turning once from the start
    frame and its own camera tracking it. Keeps your frame range unless 'Set frame range'"""

    bl_idname = "faceedit.turntable"
    bl_label = "Turntable"

    def run(self, context, obj):
        scene, fe = context.scene, context.scene.faceedit
        heads = [bpy.data.objects[n] for n in target_names(context)]
        _empty, _cam, message = apply.turntable_rig(
            scene, heads, fe.turntable_frames, set_camera=fe.turntable_camera, set_range=fe.turntable_range
        )
        return message + (f" ({len(heads)} heads)" if len(heads) > 1 else "")


class FACEEDIT_OT_cancel(bpy.types.Operator):
    """Cancel the running FaceEdit request (also on the server)"""

    bl_idname = "faceedit.cancel"
    bl_label = "Cancel FaceEdit Request"

    @classmethod
    def poll(cls, context):
        return refuse(cls, None if session.JOBS.busy else "No FaceEdit request is running")

    def execute(self, context):
        session.JOBS.cancel("cancelled")
        return {"FINISHED"}


CLASSES = (
    FACEEDIT_OT_report,
    FACEEDIT_OT_connect,
    FACEEDIT_OT_add_demo_head,
    FACEEDIT_OT_set_prompt,
    FACEEDIT_OT_edit_expression,
    FACEEDIT_OT_render_views,
    FACEEDIT_OT_train,
    FACEEDIT_OT_keyframe,
    FACEEDIT_OT_turntable,
    FACEEDIT_OT_cancel,
)
