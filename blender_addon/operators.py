"""Operators: connect, add the demo head, edit expression, render views, keyframe, turntable, cancel.

Each operator checks everything it can, sends one request and returns; the reply is applied by
`on_done` on the main thread from the poll timer (`wait=True` drives the same poll loop until
the reply has arrived: for scripts in background mode, where no timer runs).
"""

from __future__ import annotations

import math
import time

import bpy
import numpy as np

from . import apply, rig, session
from .jobs import Status
from .wire.client import ServerError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _target(scene):
    obj = scene.faceedit.target
    if rig.target_kind(obj) == "":
        raise ServerError(
            "invalid_target",
            "choose a head: an official FLAME rig (5023 vertices with Exp*/Shape* keys) "
            "or the FaceEdit demo head (Add Demo Head)",
        )
    return obj


def _alive(name: str):
    obj = bpy.data.objects.get(name)
    if obj is None:
        raise ServerError("invalid_target", f"the head '{name}' was deleted while the server worked")
    return obj


def with_server(label: str, then) -> None:
    """Run then() once the server's hello is known (sending hello first when it is not)."""
    if session.server.get("address") == session.settings().address:
        then()
        return

    def on_hello(result):
        session.remember_hello(result)
        then()
        return f"connected: {session.server['tier']} tier"

    session.JOBS.submit("hello", {"head_mesh": True}, label, on_hello)


def edit_args(obj, fe) -> dict:
    rig.check_server_fits(obj, session.server)
    return {"params": rig.read_params(obj), "prompt": fe.prompt, "intensity": float(fe.intensity)}


def apply_edit(scene, obj, args: dict, result: dict, keyframe: bool) -> str:
    """Write an edit reply as the shape key 'FE <prompt>' (value 1), optionally keyed -> a message."""
    coords = rig.edited_coords(obj, args["params"], result)
    name = apply.key_name(args["prompt"])
    kb = apply.write_shape_key(obj, name, coords)
    kb.value = 1.0
    edits = dict(obj.get("faceedit_edits", {}))
    edits[name] = {
        "prompt": args["prompt"],
        "intensity": args["intensity"],
        "mapper_ids": list(result.get("mapper_ids", [])),
    }
    obj["faceedit_edits"] = edits
    if keyframe:
        apply.keyframe_key(obj, name, scene.frame_current)
    ok = all(result.get("success") or [False])
    return f"{name}: written ({'expression reached' if ok else 'expression only partly reached'})"


def camera_yaws_deg(cameras) -> list[float]:
    """EG3D cameras [N,25] (cam2world 4x4 first) -> yaw of each camera about the head's +Y, degrees."""
    c2w = np.asarray(cameras, np.float64)[:, :16].reshape(-1, 4, 4)
    return [math.degrees(math.atan2(p[0], p[2])) for p in c2w[:, :3, 3]]


def apply_views(scene, obj, args: dict, result: dict) -> str:
    images, size = result.get("images"), result.get("size")
    pngs = images[0] if isinstance(images, list) and images and isinstance(images[0], list) else []
    want = args["turntable"]["views"]
    if len(pngs) != want or not all(isinstance(p, bytes) and p.startswith(PNG_MAGIC) for p in pngs):
        raise ServerError("invalid_reply", f"the server returned {len(pngs)} images, expected {want} PNGs")
    name = "FE views " + apply.key_name(args["prompt"]).removeprefix(apply.KEY_PREFIX)
    coll = apply.image_planes(scene, obj, name, pngs, int(size), camera_yaws_deg(result["cameras"]))
    return f"{coll.name}: {len(pngs)} image planes"


class _Request(bpy.types.Operator):
    """Base: subclasses implement start(context), which submits a request."""

    bl_options = {"REGISTER"}
    wait: bpy.props.BoolProperty(
        name="Wait",
        default=False,
        options={"SKIP_SAVE"},
        description="Block until the reply is applied (scripts, background mode)",
    )

    def execute(self, context):
        try:
            self.start(context)
        except ServerError as exc:
            session.JOBS.status = Status(error=str(exc))
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if self.wait:
            while session.JOBS.poll_step():
                time.sleep(0.02)
            if session.JOBS.status.error:
                self.report({"ERROR"}, session.JOBS.status.error)
                return {"CANCELLED"}
        else:
            session.ensure_timer()
        return {"FINISHED"}


class FACEEDIT_OT_connect(_Request):
    """Ask the server for its tier, models and known expressions"""

    bl_idname = "faceedit.connect"
    bl_label = "Connect"

    def start(self, context):
        session.server.clear()
        with_server("Connect", lambda: None)


class FACEEDIT_OT_add_demo_head(_Request):
    """Add the server's demo head (FLAME layout, with UVs) to the scene and make it the target"""

    bl_idname = "faceedit.add_demo_head"
    bl_label = "Add Demo Head"

    def start(self, context):
        scene_name = context.scene.name

        def on_hello(result):
            session.remember_hello(result)
            head = result.get("head")
            if not head or head.get("vertices") is None:
                raise ServerError("invalid_reply", "the server sent no head mesh")
            scene = bpy.data.scenes[scene_name]
            obj = rig.build_demo_head(bpy.context, head)
            scene.faceedit.target = obj
            return f"added '{obj.name}' ({len(obj.data.vertices)} vertices)"

        session.JOBS.submit("hello", {"head_mesh": True}, "Add demo head", on_hello)


class FACEEDIT_OT_set_prompt(bpy.types.Operator):
    """Use this expression as the prompt"""

    bl_idname = "faceedit.set_prompt"
    bl_label = "Set Prompt"
    bl_options = {"INTERNAL"}
    prompt: bpy.props.StringProperty()

    def execute(self, context):
        context.scene.faceedit.prompt = self.prompt
        return {"FINISHED"}


class _EditRequest(_Request):
    """Base: a request carrying the target's edit. Subclasses set `op` and `verb` and give
    request_args(settings, edit_args) -> args and apply(scene, obj, args, settings, reply) -> a message
    (static: the operator instance is gone by the time the reply arrives)."""

    op = verb = ""

    @staticmethod
    def request_args(settings: dict, args: dict) -> dict:
        return args

    def start(self, context):
        cls, scene = type(self), context.scene
        obj_name, scene_name = _target(scene).name, scene.name
        settings = {k: getattr(scene.faceedit, k) for k in ("keyframe", "views", "view_size")}

        def send():  # by name: the scene may have changed while hello was in flight
            args = cls.request_args(settings, edit_args(_alive(obj_name), bpy.data.scenes[scene_name].faceedit))
            session.JOBS.submit(
                cls.op,
                args,
                f"{cls.verb} '{args['prompt']}'",
                lambda r: cls.apply(bpy.data.scenes[scene_name], _alive(obj_name), args, settings, r),
            )

        with_server(self.bl_label, send)


class FACEEDIT_OT_edit_expression(_EditRequest):
    """Edit the head's expression from the prompt: writes (or updates) the shape key 'FE <prompt>'"""

    bl_idname = "faceedit.edit_expression"
    bl_label = "Edit Expression"
    op, verb = "edit", "Edit"

    @staticmethod
    def apply(scene, obj, args, settings, reply):
        return apply_edit(scene, obj, args, reply, settings["keyframe"])


class FACEEDIT_OT_render_views(_EditRequest):
    """Render the edited head from several views and place the images beside it as planes (packed in the .blend)"""

    bl_idname = "faceedit.render_views"
    bl_label = "Render Views"
    op, verb = "render", "Render"

    @staticmethod
    def request_args(settings, args):
        n, spread = settings["views"], 60.0 if settings["views"] > 1 else 0.0
        return args | {
            "size": settings["view_size"],
            "turntable": {"views": n, "pitch": 0.0, "yaw_min": -spread, "yaw_max": spread},
        }

    @staticmethod
    def apply(scene, obj, args, settings, reply):
        return apply_views(scene, obj, args, reply)


class _OnTarget(bpy.types.Operator):
    """Base: subclasses implement run(context, obj) on the checked target -> a message."""

    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        try:
            self.report({"INFO"}, self.run(context, _target(context.scene)))
        except ServerError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class FACEEDIT_OT_keyframe(_OnTarget):
    """Keyframe the value of the prompt's shape key at the current frame"""

    bl_idname = "faceedit.keyframe"
    bl_label = "Keyframe"

    def run(self, context, obj):
        scene = context.scene
        name = apply.key_name(scene.faceedit.prompt)
        keys = obj.data.shape_keys
        if keys is None or name not in keys.key_blocks:
            raise ServerError("invalid_target", f"'{obj.name}' has no shape key '{name}': Edit Expression first")
        apply.keyframe_key(obj, name, scene.frame_current)
        return f"keyed '{name}' = {keys.key_blocks[name].value:.2f} at frame {scene.frame_current}"


class FACEEDIT_OT_turntable(_OnTarget):
    """Add (or update) a turntable camera rig around the head: an empty turning once, a camera tracking it"""

    bl_idname = "faceedit.turntable"
    bl_label = "Turntable"

    def run(self, context, obj):
        scene = context.scene
        apply.turntable_rig(scene, obj, scene.faceedit.turntable_frames)
        return f"turntable over frames {scene.frame_start}-{scene.frame_end}"


class FACEEDIT_OT_cancel(bpy.types.Operator):
    """Cancel the running FaceEdit request"""

    bl_idname = "faceedit.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        session.JOBS.cancel()
        return {"FINISHED"}


CLASSES = (
    FACEEDIT_OT_connect,
    FACEEDIT_OT_add_demo_head,
    FACEEDIT_OT_set_prompt,
    FACEEDIT_OT_edit_expression,
    FACEEDIT_OT_render_views,
    FACEEDIT_OT_keyframe,
    FACEEDIT_OT_turntable,
    FACEEDIT_OT_cancel,
)
