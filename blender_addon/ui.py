"""The sidebar panel (3D view > N > FaceEdit) and the presets menu."""

from __future__ import annotations

import bpy

from . import prefs, rig, session


class FACEEDIT_MT_presets(bpy.types.Menu):
    bl_idname = "FACEEDIT_MT_presets"
    bl_label = "Known expressions"

    def draw(self, context):
        names = session.server.get("expressions") or list(prefs.PAPER_PROMPTS)
        for name in names:
            self.layout.operator("faceedit.set_prompt", text=name).prompt = name


class FACEEDIT_PT_panel(bpy.types.Panel):
    bl_idname = "FACEEDIT_PT_panel"
    bl_label = "FaceEdit"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "FaceEdit"

    def draw(self, context):
        layout, fe, jobs = self.layout, context.scene.faceedit, session.JOBS
        box = layout.box()
        if session.server:
            models = ", ".join(k for k, v in session.server.get("models", {}).items() if v) or "embedded default"
            box.label(text=f"Connected: {session.server['tier']} tier", icon="LINKED")
            box.label(text=f"Models: {models}")
        else:
            box.label(text="Not connected", icon="UNLINKED")
        box.operator("faceedit.connect", icon="FILE_REFRESH")

        col = layout.column()
        col.prop(fe, "target")
        col.label(text=rig.describe(fe.target) if fe.target else "no head chosen")
        col.operator("faceedit.add_demo_head", icon="MONKEY")

        col = layout.column()
        row = col.row(align=True)
        row.prop(fe, "prompt", text="")
        row.menu("FACEEDIT_MT_presets", text="", icon="PRESET")
        col.prop(fe, "intensity", slider=True)
        col.prop(fe, "keyframe")
        col.enabled = not jobs.busy
        row = layout.row(align=True)
        row.enabled = not jobs.busy and bool(rig.target_kind(fe.target))
        row.operator("faceedit.edit_expression", icon="SHAPEKEY_DATA")
        row.operator("faceedit.keyframe", icon="KEY_HLT")
        row = layout.row(align=True)
        row.enabled = not jobs.busy and bool(rig.target_kind(fe.target))
        row.prop(fe, "views")
        row.prop(fe, "view_size")
        row.operator("faceedit.render_views", icon="IMAGE_PLANE")
        row = layout.row(align=True)
        row.prop(fe, "turntable_frames")
        row.operator("faceedit.turntable", icon="CAMERA_DATA")

        status = jobs.status
        if jobs.busy:
            row = layout.row(align=True)
            row.progress(factor=status.factor, type="BAR", text=status.message or status.running)
            row.operator("faceedit.cancel", text="", icon="CANCEL")
        elif status.error:
            err = layout.box()
            err.alert = True
            for i, line in enumerate(_wrap(status.error, 48)):
                err.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
        elif status.message:
            layout.label(text=status.message, icon="CHECKMARK")


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


CLASSES = (FACEEDIT_MT_presets, FACEEDIT_PT_panel)
