"""FaceEdit for Blender: edit the expression of a FLAME head from a text prompt.

A 3D view sidebar panel talks to the out-of-process FaceEdit backend (`faceedit-server`, which the
add-on can also start and stop) over ZeroMQ without blocking the UI; results become shape keys
(live sliders), FLAME rig values, keyframes, image planes and turntables, and every outcome is
reported in the Info area and the status bar. `batch.turntable()` is the blocking variant for
`blender -b`.
"""

from __future__ import annotations

import bpy

from . import backend, batch, operators, prefs, session, tools, ui  # noqa: F401  (batch: public API for scripts)

CLASSES = prefs.CLASSES + operators.CLASSES + backend.CLASSES + tools.CLASSES + ui.CLASSES


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.faceedit = bpy.props.PointerProperty(type=prefs.FaceEditSceneSettings)
    bpy.types.Object.faceedit_history = bpy.props.CollectionProperty(type=prefs.FaceEditHistoryItem)
    bpy.types.Object.faceedit_history_index = bpy.props.IntProperty(default=0)
    session.register()
    backend.register()


def unregister():
    session.unregister()
    backend.unregister()
    del bpy.types.Object.faceedit_history_index
    del bpy.types.Object.faceedit_history
    del bpy.types.Scene.faceedit
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
