"""FaceEdit for Blender: edit the expression of a FLAME head from a text prompt.

A 3D view sidebar panel talks to the out-of-process FaceEdit backend (`faceedit-server`) over
ZeroMQ without blocking the UI; results become shape keys, keyframes, image planes and
turntables. `batch.turntable()` is the blocking variant for `blender -b`.
"""

from __future__ import annotations

import bpy

from . import batch, operators, prefs, session, ui  # noqa: F401  (batch: public API for scripts)

CLASSES = prefs.CLASSES + operators.CLASSES + ui.CLASSES


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.faceedit = bpy.props.PointerProperty(type=prefs.FaceEditSceneSettings)


def unregister():
    session.stop()
    del bpy.types.Scene.faceedit
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
