"""Edits rigs of a FLAME file, built as the official FLAME add-on builds them, inside the bpy module.

    BPY_PYTHON tests/blender_addon/in_blender/drive_flame_rig.py ZIP ADDRESS PROMPT RIG_NPZ OUT_DIR

Run by tests/blender_addon/test_blender_flame_rig.py against a server started on that FLAME file
(`--flame`). RIG_NPZ holds the file's model as the loader reads it. Two rigs are made from it with
drive_rig_tools.official_rig (5023 vertices; all Shape, Exp and Pose keys; the armature), one with
padded key names (`Exp000`, as `FLAME-female`) and one unpadded (`Exp1`, as `FLAME-male`), and each is
edited by PROMPT at intensity 1 from its neutral pose, keyframing on. Records per rig (prefix
`female_` / `male_`): the parameters the add-on sent (arrays `<rig>_sent_<field>`), the evaluated
mesh in mesh space [V,3], the Exp and Pose values, which key values and bones carry keyframes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import drain, evaluated_coords, install_connected, section  # noqa: E402
from drive_rig_tools import BONES, official_rig  # noqa: E402

RIGS = {"female": True, "male": False}  # rig -> padded key names


def main() -> None:
    zip_path, address, prompt, rig_npz, out = sys.argv[-5:]
    out = Path(out)
    res: dict = {"timings_s": {}}
    arrays: dict = {}
    data = dict(np.load(rig_npz))
    fe = install_connected(res, zip_path, address, timeout_s=120.0)
    scene, settings = bpy.context.scene, bpy.context.scene.faceedit
    sent: list[dict] = []
    read_params = fe.rig.read_params

    def recorded(*args, **kwargs):  # what the add-on sends, as it reads it from the rig
        sent.append(read_params(*args, **kwargs))
        return sent[-1]

    fe.rig.read_params = recorded
    for tag, padded in RIGS.items():
        with section(res, tag):
            rig, arm = official_rig(data, name=f"FLAME-{tag}", n_shape=int(data["n_shape"]), padded=padded)
            keys = fe.rig.flame_keys(rig)
            res[f"{tag}_keys"] = {kind: [len(b), b[0].name] for kind, b in keys.items()}
            res[f"{tag}_verts"] = len(rig.data.vertices)
            res[f"{tag}_describe"] = fe.rig.describe(rig)
            settings.target = rig
            settings.prompt, settings.intensity, settings.mix, settings.keyframe = prompt, 1.0, "REPLACE", True
            scene.frame_set(5)
            sent.clear()
            bpy.ops.faceedit.edit_expression()
            res[f"{tag}_edit"] = drain(fe)
            arrays.update({f"{tag}_sent_{k}": np.asarray(v) for k, v in sent[-1].items()})
            arrays[f"{tag}_evaluated"] = evaluated_coords(rig)
            arrays[f"{tag}_exp"] = np.array([kb.value for kb in keys["Exp"]], np.float32)
            arrays[f"{tag}_pose"] = np.array([kb.value for kb in keys["Pose"]], np.float32)
            shape_keys = rig.data.shape_keys
            res[f"{tag}_keyed"] = sorted(
                kb.name for kb in keys["Exp"] if fe.apply.fcurve(shape_keys, kb.path_from_id("value")) is not None
            )
            res[f"{tag}_pose_keyed"] = [
                [kp.co[0] for kp in fc.keyframe_points]
                if (fc := fe.apply.fcurve(shape_keys, kb.path_from_id("value")))
                else []
                for kb in keys["Pose"]
            ]
            res[f"{tag}_bones_keyed"] = {
                b: [kp.co[0] for kp in fc.keyframe_points]
                for b in BONES
                if (fc := fe.apply.fcurve(arm, f'pose.bones["{b}"].rotation_euler', 0)) is not None
            }
            basis = {k: fe.session.server["basis"][k] for k in fe.rig.basis_ids(rig, fe.session.server)}
            res[f"{tag}_frame"] = fe.rig.match_basis(rig, basis)[2]

    np.savez(out / "arrays.npz", **arrays)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
