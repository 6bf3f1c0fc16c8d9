"""Add-on preferences (server, backend to start, presets) and the per-scene and per-object settings."""

from __future__ import annotations

import bpy

from .wire.prompts import PAPER_PROMPTS

DRAW_HOOKS: list = []  # more to draw in the preferences' backend box (registered by backend.py)


class FaceEditPreset(bpy.types.PropertyGroup):
    """A user preset: a prompt and an intensity (kept with the preferences)."""

    prompt: bpy.props.StringProperty(name="Prompt")
    intensity: bpy.props.FloatProperty(name="Intensity", default=1.0, min=-2.0, max=2.0)


class FaceEditPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    address: bpy.props.StringProperty(
        name="Server address",
        default="tcp://127.0.0.1:5555",
        description="ZeroMQ address of faceedit-server; anything but loopback needs CURVE keys and Online Access",
    )
    curve_client_secret: bpy.props.StringProperty(
        name="Client key pair",
        subtype="FILE_PATH",
        default="",
        description="This client's CURVE key file with its secret (from `faceedit-server keys`); empty: no encryption",
    )
    curve_server_public: bpy.props.StringProperty(
        name="Server public key", subtype="FILE_PATH", default="", description="The server's CURVE public key file"
    )
    timeout_s: bpy.props.FloatProperty(
        name="Timeout (s)",
        default=10.0,
        min=0.2,
        max=600.0,
        description="How long the server may stay silent before a request is resent. A running job never "
        "times out while the server answers (progress, or its replies to the add-on's status probes)",
    )
    retries: bpy.props.IntProperty(
        name="Retries", default=2, min=0, max=10, description="Resends of a request to a silent server before giving up"
    )
    # ---------------------------------------------------------------- the local backend (Start / Stop)
    backend_env: bpy.props.StringProperty(
        name="Backend environment",
        subtype="DIR_PATH",
        default="",
        description="A Python environment with FaceEdit installed (e.g. the repository's .venv): Start runs its "
        "python -m backend_server",
    )
    backend_command: bpy.props.StringProperty(
        name="Backend command",
        default="",
        description="Instead of an environment: the command that starts the backend (e.g. faceedit-server, or "
        "conda run -n faceedit faceedit-server); --bind is added",
    )
    backend_args: bpy.props.StringProperty(
        name="Backend arguments",
        default="",
        description="Extra arguments for the backend, e.g. --models D:/faceedit-models or --device cuda",
    )
    presets: bpy.props.CollectionProperty(type=FaceEditPreset)
    preset_index: bpy.props.IntProperty(default=0)

    def draw(self, context):
        col = self.layout.column()
        box = col.box()
        box.label(text="Server", icon="LINKED")
        box.prop(self, "address")
        box.prop(self, "curve_client_secret")
        box.prop(self, "curve_server_public")
        row = box.row()
        row.prop(self, "timeout_s")
        row.prop(self, "retries")
        box = col.box()
        box.label(text="Local backend (started and stopped by Blender, on a free loopback port)", icon="CONSOLE")
        box.prop(self, "backend_env")
        box.prop(self, "backend_command")
        box.prop(self, "backend_args")
        for draw in DRAW_HOOKS:  # the backend's state, buttons and log (backend.draw_state)
            draw(box)


def _is_head(self, obj) -> bool:
    return obj.type == "MESH"


def _planes_in_render(self, context) -> None:
    from . import apply

    apply.set_planes_in_render(self.planes_in_render)


class FaceEditSceneSettings(bpy.types.PropertyGroup):
    target: bpy.props.PointerProperty(
        name="Head",
        type=bpy.types.Object,
        poll=_is_head,
        description="An official FLAME rig (FLAME-<gender>, Exp*/Shape* keys) or the FaceEdit demo head",
    )
    prompt: bpy.props.StringProperty(
        name="Prompt",
        default=PAPER_PROMPTS[0],
        description="What the face should do, e.g. 'slight smile' or 'raise brows'",
    )
    identity: bpy.props.StringProperty(
        name="Identity",
        description="Paper tier: whose face to edit and render. Empty: the server's default (seed 0); a number: "
        "the face of that seed; else the name of a saved latent (the server's latents/, e.g. an inverted photo)",
    )
    intensity: bpy.props.FloatProperty(
        name="Intensity",
        default=1.0,
        min=-2.0,
        max=2.0,
        description="Scales the expression change (negative inverts it). On the demo head it becomes the shape "
        "key's value, which stays a live slider",
    )
    keyframe: bpy.props.BoolProperty(
        name="Keyframe after edit", default=False, description="Key the edit's values at the current frame"
    )
    mix: bpy.props.EnumProperty(
        name="Mix",
        items=(
            ("REPLACE", "Replace", "The new edit alone: earlier FE keys go to 0 (a FLAME rig starts from neutral)"),
            ("ADD", "Add", "Layer the new edit on the earlier ones (a FLAME rig starts from its current expression)"),
        ),
        default="REPLACE",
        description="How a new edit combines with earlier ones",
    )
    replace_keyed: bpy.props.BoolProperty(
        name="Replace keyed shapes",
        default=False,
        description="Let an edit overwrite the shape of a key that has keyframes (otherwise such an edit is "
        "refused, so existing animation never changes silently)",
    )
    all_selected: bpy.props.BoolProperty(
        name="All selected heads",
        default=False,
        description="Edit (and make turntables for) every selected head, not only the Head above",
    )
    views: bpy.props.IntProperty(name="Views", default=4, min=1, max=16, description="Rendered views (image planes)")
    view_size: bpy.props.IntProperty(name="Size", default=256, min=32, max=1024, subtype="PIXEL")
    planes_in_render: bpy.props.BoolProperty(
        name="Planes in renders",
        default=False,
        update=_planes_in_render,
        description="Show the rendered-view image planes in final renders (they always show in the viewport)",
    )
    turntable_frames: bpy.props.IntProperty(
        name="Frames", default=48, min=2, max=720, description="Frames for one turn of the turntable camera"
    )
    turntable_camera: bpy.props.BoolProperty(
        name="Use as scene camera",
        default=True,
        description="Make the turntable's own camera the scene camera (the Info report names the one it replaced)",
    )
    turntable_range: bpy.props.BoolProperty(
        name="Set frame range",
        default=False,
        description="Set the scene's frame range to the turn (otherwise your frame range is kept)",
    )
    sequence: bpy.props.StringProperty(
        name="Sequence",
        default="",
        description="Prompts separated by ';' (empty: every FE key of the head, in order) for Key Sequence",
    )
    sequence_start: bpy.props.IntProperty(name="Start", default=1, description="First frame of the sequence")
    sequence_end: bpy.props.IntProperty(name="End", default=100, description="Last frame of the sequence")
    sequence_easing: bpy.props.EnumProperty(
        name="Easing",
        items=(
            ("EASE_IN_OUT", "Ease in and out", "Bezier keys that ease in and out"),
            ("LINEAR", "Linear", "Straight ramps"),
            ("CONSTANT", "Hold", "Jump from one expression to the next"),
        ),
        default="EASE_IN_OUT",
    )
    export_path: bpy.props.StringProperty(
        name="glTF file", subtype="FILE_PATH", default="//faceedit_head.glb", description="Where Export glTF writes"
    )


class FaceEditHistoryItem(bpy.types.PropertyGroup):
    """One edit applied to an object (kept in the .blend with the object)."""

    prompt: bpy.props.StringProperty(name="Prompt")
    intensity: bpy.props.FloatProperty(name="Intensity")
    key: bpy.props.StringProperty(name="Key", description="The shape key the edit wrote (demo head)")
    kind: bpy.props.StringProperty(name="Kind", description="'demo' or 'flame'")
    mix: bpy.props.StringProperty(name="Mix")
    identity: bpy.props.StringProperty(name="Identity", description="The panel's Identity of the edit")
    mapper_ids: bpy.props.StringProperty(name="Mappers", description="The server's mapper ids, comma-separated")
    frame: bpy.props.IntProperty(name="Frame")


def preferences() -> FaceEditPreferences | None:
    addon = bpy.context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


CLASSES = (FaceEditPreset, FaceEditHistoryItem, FaceEditPreferences, FaceEditSceneSettings)
