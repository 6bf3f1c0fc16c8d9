"""The target head: an official FLAME rig or the FaceEdit demo head, and its FLAME parameters.

- Official FLAME add-on object: a mesh of 5023 vertices with shape keys `Shape<i>` (identity
  beta) and `Exp<i>` (expression psi), sorted by their number. Its parameters are the key values;
  an edit's result is written as basis + sum_k dpsi_k (Exp_k - basis), i.e. through the rig's own
  blendshapes, which needs a server whose head is FLAME (5023 vertices).
- Demo head: built from the server's head mesh (`hello` with head_mesh); the object keeps the
  server's head hash, and its parameters are zero (the neutral template); edits are the
  server's vertices. Mesh data stay in FLAME coordinates (metres, +Y up); the object is rotated
  90 degrees about X to stand up in Blender.
"""

from __future__ import annotations

import math
import re

import numpy as np

from .wire.client import ServerError

FLAME_VERTS = 5023
KEY_RE = re.compile(r"^(Shape|Exp)(\d+)$")
DEMO_NAME = "FaceEdit demo head"
SKIN_RGBA = (0.8, 0.6, 0.5, 1.0)


def flame_keys(obj) -> dict[str, list]:
    """{'Shape': [key blocks by number], 'Exp': [...]} of a mesh's shape keys."""
    found: dict[str, list] = {"Shape": [], "Exp": []}
    keys = obj.data.shape_keys if obj is not None and obj.type == "MESH" else None
    for kb in keys.key_blocks if keys else []:
        m = KEY_RE.match(kb.name)
        if m:
            found[m.group(1)].append((int(m.group(2)), kb))
    return {k: [kb for _, kb in sorted(v, key=lambda t: t[0])] for k, v in found.items()}


def target_kind(obj) -> str:
    """'demo', 'flame' or '' (not a head FaceEdit can edit)."""
    if obj is None or obj.type != "MESH":
        return ""
    if obj.get("faceedit_head"):
        return "demo"
    keys = flame_keys(obj)
    if len(obj.data.vertices) == FLAME_VERTS and keys["Exp"] and keys["Shape"]:
        return "flame"
    return ""


def describe(obj) -> str:
    kind = target_kind(obj)
    if kind == "demo":
        return f"demo head, {len(obj.data.vertices)} vertices"
    if kind == "flame":
        keys = flame_keys(obj)
        return f"FLAME rig, {len(keys['Shape'])} Shape + {len(keys['Exp'])} Exp keys"
    return "not a FLAME rig or FaceEdit demo head"


def read_params(obj) -> dict:
    """The target's FLAME parameters: shape [1,Ns], expression [1,Ne] (float32)."""
    kind = target_kind(obj)
    if kind == "demo":
        return {
            "shape": np.zeros((1, int(obj["faceedit_n_shape"])), np.float32),
            "expression": np.zeros((1, int(obj["faceedit_n_exp"])), np.float32),
        }
    if kind == "flame":
        keys = flame_keys(obj)
        return {
            "shape": np.array([[kb.value for kb in keys["Shape"]]], np.float32),
            "expression": np.array([[kb.value for kb in keys["Exp"]]], np.float32),
        }
    raise ServerError("invalid_target", f"'{obj.name if obj else None}' is {describe(obj)}")


def check_server_fits(obj, server: dict) -> None:
    """Refuse before sending when the server's head cannot drive this target."""
    kind, n = target_kind(obj), server.get("head_verts")
    if kind == "demo" and obj["faceedit_head"] != server.get("head_hash"):
        raise ServerError(
            "invalid_target",
            f"'{obj.name}' was built from another server head "
            f"({obj['faceedit_head'][:12]}, the server has {str(server.get('head_hash'))[:12]}): "
            "add the demo head again",
        )
    if kind == "flame" and n != FLAME_VERTS:
        raise ServerError(
            "invalid_target",
            f"the server's head has {n} vertices ({server.get('tier')} tier), not FLAME's "
            f"{FLAME_VERTS}: an official FLAME rig needs a server started with your FLAME file "
            f"(faceedit-server --models DIR)",
        )


def _key_coords(kb) -> np.ndarray:
    co = np.empty(len(kb.data) * 3, np.float32)
    kb.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def edited_coords(obj, sent: dict, result: dict) -> np.ndarray:
    """The edited vertex positions [V,3] in the object's mesh space, from an edit reply."""
    n = len(obj.data.vertices)
    if target_kind(obj) == "demo":
        verts = np.asarray(result.get("vertices"))
        if verts.ndim != 3 or verts.shape[1:] != (n, 3):
            raise ServerError(
                "invalid_reply",
                f"the server returned vertices of shape {list(verts.shape)}, '{obj.name}' needs [1, {n}, 3]",
            )
        return verts[0].astype(np.float32)
    keys = flame_keys(obj)
    psi = np.asarray(result.get("params", {}).get("expression"))
    if psi.ndim != 2 or psi.shape[1] < len(keys["Exp"]):
        raise ServerError(
            "invalid_reply",
            f"the server returned an expression of shape {list(psi.shape)}, "
            f"'{obj.name}' has {len(keys['Exp'])} Exp keys",
        )
    dpsi = psi[0, : len(keys["Exp"])] - sent["expression"][0]
    basis = _key_coords(obj.data.shape_keys.reference_key)
    out = basis.copy()
    for k in np.flatnonzero(np.abs(dpsi) > 1e-7):
        out += dpsi[k] * (_key_coords(keys["Exp"][k]) - basis)
    return out


def build_demo_head(context, head: dict):
    """A mesh object from the server's head {vertices [V,3], faces [F,3], uvs [T,2], uv_faces [F,3]}."""
    import bpy

    verts, faces = np.asarray(head["vertices"], np.float32), np.asarray(head["faces"], np.int32)
    mesh = bpy.data.meshes.new(DEMO_NAME)
    mesh.vertices.add(len(verts))
    mesh.vertices.foreach_set("co", verts.ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), bool))
    if head.get("uvs") is not None and head.get("uv_faces") is not None:
        uv = np.asarray(head["uvs"], np.float32)[np.asarray(head["uv_faces"], np.int64).ravel()]
        mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", uv.ravel())
    mesh.update(calc_edges=True)
    mat = bpy.data.materials.new("FaceEdit skin")
    mat.diffuse_color = SKIN_RGBA
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = SKIN_RGBA
        bsdf.inputs["Roughness"].default_value = 0.55
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(DEMO_NAME, mesh)
    obj.rotation_euler = (math.pi / 2, 0.0, 0.0)
    obj["faceedit_head"] = str(head["head_hash"])
    obj["faceedit_n_shape"], obj["faceedit_n_exp"] = int(head["n_shape"]), int(head["n_exp"])
    context.scene.collection.objects.link(obj)
    return obj
