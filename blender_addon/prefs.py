"""Add-on preferences (server address, CURVE key files, timeouts) and the per-scene settings."""

from __future__ import annotations

import bpy

PAPER_PROMPTS = (
    "A person who is smiling",
    "A person who is angry",
    "A person who is sad",
    "A person who is closing eyes",
    "A person who is raising brow",
    "A person who is frowning",
)


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
        description="Silence after which a request is retried (progress events count as an answer)",
    )
    retries: bpy.props.IntProperty(
        name="Retries", default=2, min=0, max=10, description="Resends of a silent request before giving up"
    )

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "address")
        col.prop(self, "curve_client_secret")
        col.prop(self, "curve_server_public")
        row = col.row()
        row.prop(self, "timeout_s")
        row.prop(self, "retries")


def _is_head(self, obj) -> bool:
    return obj.type == "MESH"


class FaceEditSceneSettings(bpy.types.PropertyGroup):
    target: bpy.props.PointerProperty(
        name="Head",
        type=bpy.types.Object,
        poll=_is_head,
        description="An official FLAME rig (5023 vertices, Exp*/Shape* keys) or the demo head",
    )
    prompt: bpy.props.StringProperty(
        name="Prompt",
        default=PAPER_PROMPTS[0],
        description="What the face should do, e.g. 'slight smile' or 'raise brows'",
    )
    intensity: bpy.props.FloatProperty(
        name="Intensity",
        default=1.0,
        min=-2.0,
        max=2.0,
        description="Scales the expression change (negative inverts it)",
    )
    keyframe: bpy.props.BoolProperty(
        name="Keyframe after edit", default=False, description="Key the new shape key's value at the current frame"
    )
    views: bpy.props.IntProperty(name="Views", default=4, min=1, max=16, description="Rendered views (image planes)")
    view_size: bpy.props.IntProperty(name="Size", default=256, min=32, max=1024, subtype="PIXEL")
    turntable_frames: bpy.props.IntProperty(
        name="Frames", default=48, min=2, max=720, description="Frames for one turn of the turntable camera"
    )


def preferences() -> FaceEditPreferences | None:
    addon = bpy.context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


CLASSES = (FaceEditPreferences, FaceEditSceneSettings)
