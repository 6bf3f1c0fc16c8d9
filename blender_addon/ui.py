"""The sidebar panel (3D view > N > FaceEdit), its sub-panels and the presets menu."""

from __future__ import annotations

import bpy

from . import backend, prefs, rig, session
from .wire.prompts import PAPER_PROMPTS


class FACEEDIT_MT_presets(bpy.types.Menu):
    bl_idname = "FACEEDIT_MT_presets"
    bl_label = "Presets"

    def draw(self, context):
        layout = self.layout
        p = prefs.preferences()
        for item in p.presets if p is not None else ():
            op = layout.operator("faceedit.set_prompt", text=f"{item.prompt}  ({item.intensity:.2f})", icon="BOOKMARKS")
            op.prompt, op.intensity = item.prompt, item.intensity
        if p is not None and len(p.presets):
            layout.separator()
        for name in session.server.get("expressions") or list(PAPER_PROMPTS):
            layout.operator("faceedit.set_prompt", text=name).prompt = name
        layout.separator()
        layout.operator("faceedit.preset_add", icon="ADD")
        layout.operator("faceedit.preset_remove", icon="REMOVE")


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "FaceEdit"


class FACEEDIT_PT_panel(_Panel, bpy.types.Panel):
    bl_idname = "FACEEDIT_PT_panel"
    bl_label = "FaceEdit"

    def draw(self, context):
        layout, fe, jobs = self.layout, context.scene.faceedit, session.JOBS
        box = layout.box()
        if session.server:
            models = ", ".join(k for k, v in session.server.get("models", {}).items() if v) or "embedded default"
            box.label(text=f"Connected: {session.server['tier']} tier", icon="LINKED")
            box.label(text=f"Models: {models}")
        else:
            box.label(text="Not connected", icon="UNLINKED")
        row = box.row(align=True)
        row.operator("faceedit.connect", icon="FILE_REFRESH")
        row.operator("faceedit.backend_start", text="Start", icon="PLAY")
        row.operator("faceedit.backend_stop", text="Stop", icon="CANCEL")
        if backend.BACKEND.proc is not None:
            box.label(text=f"Backend: {backend.BACKEND.state()}"[:80])

        col = layout.column()
        col.prop(fe, "target")
        col.label(text=rig.describe(fe.target) if fe.target else "no head chosen")
        col.operator("faceedit.add_demo_head", icon="MONKEY")

        col = layout.column()
        row = col.row(align=True)
        row.prop(fe, "prompt", text="")
        row.menu("FACEEDIT_MT_presets", text="", icon="PRESET")
        col.prop(fe, "intensity", slider=True)
        row = col.row(align=True)
        row.prop(fe, "mix", expand=True)
        col.prop(fe, "identity")
        col.prop(fe, "keyframe")
        col.prop(fe, "replace_keyed")
        col.prop(fe, "all_selected")
        col.enabled = not jobs.busy
        row = layout.row(align=True)
        row.operator("faceedit.edit_expression", icon="SHAPEKEY_DATA")
        row.operator("faceedit.keyframe", icon="KEY_HLT")
        row.operator("faceedit.train", icon="EXPERIMENTAL")
        row = layout.row(align=True)
        row.prop(fe, "views")
        row.prop(fe, "view_size")
        row.operator("faceedit.render_views", icon="IMAGE_PLANE")
        layout.prop(fe, "planes_in_render")
        row = layout.row(align=True)
        row.prop(fe, "turntable_frames")
        row.operator("faceedit.turntable", icon="CAMERA_DATA")
        row = layout.row(align=True)
        row.prop(fe, "turntable_camera")
        row.prop(fe, "turntable_range")

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
            layout.label(text=status.message[:120], icon="CHECKMARK")


class FACEEDIT_PT_tools(_Panel, bpy.types.Panel):
    bl_idname = "FACEEDIT_PT_tools"
    bl_label = "Animation and Export"
    bl_parent_id = "FACEEDIT_PT_panel"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout, fe = self.layout, context.scene.faceedit
        col = layout.column(align=True)
        col.prop(fe, "sequence")
        row = col.row(align=True)
        row.prop(fe, "sequence_start")
        row.prop(fe, "sequence_end")
        col.prop(fe, "sequence_easing")
        col.operator("faceedit.key_sequence", icon="ACTION")
        layout.operator("faceedit.arkit52", icon="SHAPEKEY_DATA")
        row = layout.row(align=True)
        row.prop(fe, "export_path", text="")
        row.operator("faceedit.export_gltf", icon="EXPORT")
        obj = fe.target
        if obj is not None and rig.target_kind(obj):
            layout.label(text=f"History of '{obj.name}'")
            layout.template_list(
                "FACEEDIT_UL_history", "", obj, "faceedit_history", obj, "faceedit_history_index", rows=3
            )
            layout.operator("faceedit.history_apply", icon="RECOVER_LAST")


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


CLASSES = (FACEEDIT_MT_presets, FACEEDIT_PT_panel, FACEEDIT_PT_tools)
