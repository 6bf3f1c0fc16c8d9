"""The target head: an official FLAME rig or the FaceEdit demo head, and its FLAME parameters.

- Official FLAME add-on object (`FLAME-<gender>`): a mesh with shape keys `Shape<i>` (identity
  beta), `Exp<i>` (expression psi) and `Pose<i>` (pose correctives), numbered from 1 (`Exp1`) or
  zero-padded from 0 (`Exp000`), parented to an armature with bones `neck`, `jaw`, `left_eye`,
  `right_eye`. Its parameters are the key values and the bones' rotations. An edit sets the Exp
  key values and the jaw and eye bones' rotations (psi + s * dpsi, jaw + s * djaw, eyes + s *
  dgaze: the intensity scales them exactly), and the Pose correctives when the rig uses them.
  Before the first edit the rig's keys are checked against the server's FLAME expression basis
  (a few components' displacements, up to a scale and the Y-up/Z-up turn), so a rig of another
  FLAME model is refused with the component that differs. Like the official add-on, the bones
  stay at the neutral joints (FLAME moves them slightly with the expression).
- Demo head: built from the server's head mesh (`hello` with head_mesh); the object keeps the
  server's head hash, and its parameters are zero (the neutral template); an edit's key holds the
  server's vertices at intensity 1 (jaw and gaze rotations included, so the key's value v is
  exactly intensity v for the expression and a linear blend of the rotations). Mesh data stay in
  FLAME coordinates (metres, +Y up); the object is rotated 90 degrees about X to stand up in Blender.
"""

from __future__ import annotations

import math
import re

import numpy as np

from .wire.client import ServerError

FLAME_VERTS = 5023
KEY_RE = re.compile(r"^(Shape|Exp|Pose)(\d+)$")
BONES = ("neck", "jaw", "left_eye", "right_eye")
EYE_BONES = ("left_eye", "right_eye")  # FLAME's eye_pose: the left eye's axis-angle, then the right's
CHECK_COMPONENTS = (0, 1, 2, 9)  # expression components compared with the server's basis
MATCH_TOLERANCE = 1e-3  # relative difference of displacements that still counts as the same basis
# FLAME's frame -> the rig's mesh frame: as is, or turned from Y-up to Blender's Z-up
FRAMES = {"as is": np.eye(3), "Y-up to Z-up": np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])}


def flame_keys(obj) -> dict[str, list]:
    """{'Shape': [key blocks by number], 'Exp': [...], 'Pose': [...]} of a mesh's shape keys."""
    found: dict[str, list] = {"Shape": [], "Exp": [], "Pose": []}
    keys = obj.data.shape_keys if obj is not None and obj.type == "MESH" else None
    for kb in keys.key_blocks if keys else []:
        m = KEY_RE.match(kb.name)
        if m:
            found[m.group(1)].append((int(m.group(2)), kb))
    return {k: [kb for _, kb in sorted(v, key=lambda t: t[0])] for k, v in found.items()}


def check_numbering(obj) -> None:
    """Exp keys must be numbered without gaps (Exp1, Exp2, ... or Exp000, Exp001, ...)."""
    for kind, blocks in flame_keys(obj).items():
        numbers = [int(KEY_RE.match(kb.name).group(2)) for kb in blocks]
        if numbers and numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))[:3]
            raise ServerError(
                "invalid_target",
                f"'{obj.name}': the {kind} keys are not numbered without gaps ({kind}{missing[0]} is missing), "
                f"so their order cannot be FLAME's",
            )


def armature_of(obj):
    """The rig's armature: the mesh's parent or the object of its Armature modifier."""
    if obj is None:
        return None
    if obj.parent is not None and obj.parent.type == "ARMATURE":
        return obj.parent
    mod = next((m for m in obj.modifiers if m.type == "ARMATURE" and m.object is not None), None)
    return mod.object if mod is not None else None


def target_kind(obj) -> str:
    """'demo', 'flame' or '' (not a head FaceEdit can edit)."""
    if obj is None or obj.type != "MESH":
        return ""
    if obj.get("faceedit_head"):
        return "demo"
    keys = flame_keys(obj)
    if keys["Exp"] and keys["Shape"]:
        return "flame"
    return ""


def describe(obj) -> str:
    kind = target_kind(obj)
    if kind == "demo":
        return f"demo head, {len(obj.data.vertices)} vertices"
    if kind == "flame":
        keys = flame_keys(obj)
        arm = armature_of(obj)
        bones = f", jaw bone in '{arm.name}'" if arm is not None and "jaw" in arm.pose.bones else ", no jaw bone"
        return f"FLAME rig, {len(keys['Shape'])} Shape + {len(keys['Exp'])} Exp keys{bones}"
    return "not a FLAME rig or FaceEdit demo head"


# ---------------------------------------------------------------------------- FLAME rig frames and bones
def _mat3(m) -> np.ndarray:
    a = np.array([[m[i][j] for j in range(3)] for i in range(3)], np.float64)
    return a / np.cbrt(abs(np.linalg.det(a))) if abs(np.linalg.det(a)) > 1e-12 else a


def rotvec_to_matrix(r: np.ndarray) -> np.ndarray:
    r = np.asarray(r, np.float64)
    theta = float(np.linalg.norm(r))
    if theta < 1e-12:
        return np.eye(3)
    k = r / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx


def matrix_to_rotvec(m: np.ndarray) -> np.ndarray:
    from mathutils import Matrix

    axis, angle = Matrix([list(row) for row in m]).to_quaternion().to_axis_angle()
    return np.array(axis, np.float64) * angle


def bone_frame(obj, bone_name: str, flame_to_mesh: np.ndarray):
    """(pose bone, B) with B mapping a rotation in FLAME's frame to the bone's local frame:
    R_local = B^T R_flame B. None when the rig has no such bone."""
    arm = armature_of(obj)
    if arm is None or bone_name not in arm.pose.bones:
        return None
    pb = arm.pose.bones[bone_name]
    rest = _mat3(pb.bone.matrix_local)  # bone -> armature
    mesh_to_arm = _mat3(arm.matrix_world.inverted() @ obj.matrix_world)
    return pb, (mesh_to_arm @ flame_to_mesh).T @ rest


def read_bone(obj, bone_name: str, flame_to_mesh: np.ndarray) -> np.ndarray:
    """The bone's current rotation as a FLAME axis-angle vector [3] (zeros when there is no such bone)."""
    found = bone_frame(obj, bone_name, flame_to_mesh)
    if found is None:
        return np.zeros(3)
    pb, b = found
    local = _mat3(pb.matrix_basis.to_quaternion().to_matrix())
    return matrix_to_rotvec(b @ local @ b.T)


def bone_path(pb) -> str:
    mode = pb.rotation_mode
    return {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(mode, "rotation_euler")


def write_bone(obj, bone_name: str, flame_to_mesh: np.ndarray, rotvec: np.ndarray):
    """Set the bone's rotation (in its own rotation mode) to a FLAME axis-angle vector -> the pose bone."""
    from mathutils import Matrix

    pb, b = bone_frame(obj, bone_name, flame_to_mesh)
    local = Matrix([list(row) for row in (b.T @ rotvec_to_matrix(rotvec) @ b)])
    q = local.to_quaternion()
    if pb.rotation_mode == "QUATERNION":
        pb.rotation_quaternion = q
    elif pb.rotation_mode == "AXIS_ANGLE":
        axis, angle = q.to_axis_angle()
        pb.rotation_axis_angle = (angle, *axis)
    else:
        pb.rotation_euler = q.to_euler(pb.rotation_mode, pb.rotation_euler)
    return pb


def pose_correctives(obj, flame_to_mesh: np.ndarray) -> np.ndarray:
    """Pose1..Pose18 weights from the neck and jaw as the official add-on computes them (R - I, row by row)."""
    out = []
    for bone in ("neck", "jaw"):
        found = bone_frame(obj, bone, flame_to_mesh)
        r = read_bone(obj, bone, flame_to_mesh) if found is not None else np.zeros(3)
        out.append((rotvec_to_matrix(r) - np.eye(3)).ravel())
    return np.concatenate(out)


def correctives_on(obj, flame_to_mesh: np.ndarray) -> bool:
    """Whether the rig's Pose correctives follow its bones (the official add-on's checkbox): some Pose
    value is set, or the neck and jaw are at rest, where on and off look alike and FLAME's own
    model (the server's vertices) has them on. Off: the bones are posed and every Pose value is zero."""
    pose = flame_keys(obj)["Pose"]
    if not pose:
        return False
    return any(kb.value != 0.0 for kb in pose) or not np.abs(pose_correctives(obj, flame_to_mesh)).max() > 1e-7


def set_value(kb, value: float) -> None:
    """Set a shape key's value, first widening its slider range (Blender clamps a value to it) up to +-10."""
    if not kb.slider_min <= value <= kb.slider_max:
        kb.slider_min, kb.slider_max = max(-10.0, min(kb.slider_min, value)), min(10.0, max(kb.slider_max, value))
    kb.value = value


# ---------------------------------------------------------------------------- checks against the server
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
    if kind == "flame":
        check_numbering(obj)
        if n != len(obj.data.vertices):
            raise ServerError(
                "invalid_target",
                f"'{obj.name}' has {len(obj.data.vertices)} vertices but the server's head has {n} "
                f"({server.get('tier')} tier): an official FLAME rig ({FLAME_VERTS} vertices) needs a server "
                f"started with the FLAME file the rig came from (faceedit-server --flame PATH, or --models DIR)",
            )


def basis_ids(obj, server: dict) -> list[int]:
    """The expression components whose displacements are compared with the server's."""
    n = min(len(flame_keys(obj)["Exp"]), int(server.get("n_exp") or 0))
    return sorted({i for i in CHECK_COMPONENTS if i < n})


def _key_coords(kb) -> np.ndarray:
    co = np.empty(len(kb.data) * 3, np.float32)
    kb.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def match_basis(obj, basis: dict[int, np.ndarray]) -> tuple[np.ndarray, float, str]:
    """Compare the rig's Exp key displacements with the server's expression basis {k: [V,3]}.

    -> (flame_to_mesh [3,3] rotation, scale, frame name); ServerError naming the first component
    that differs when no frame and scale fit all of them.
    """
    keys = flame_keys(obj)["Exp"]
    ref = _key_coords(obj.data.shape_keys.reference_key).astype(np.float64)
    rig = {k: _key_coords(keys[k]).astype(np.float64) - ref for k in basis}
    best = None
    for frame, t in FRAMES.items():
        srv = {k: np.asarray(v, np.float64) @ t.T for k, v in basis.items()}
        num = sum(float((rig[k] * srv[k]).sum()) for k in basis)
        den = sum(float((srv[k] ** 2).sum()) for k in basis)
        scale = num / den if den > 0 else 1.0
        worst = (0.0, None)
        for k in basis:
            norm = max(float(np.linalg.norm(rig[k])), float(np.linalg.norm(srv[k]) * abs(scale)), 1e-12)
            diff = float(np.linalg.norm(rig[k] - scale * srv[k])) / norm
            if np.linalg.norm(rig[k]) < 1e-9 and np.linalg.norm(srv[k]) < 1e-9:
                diff = 0.0
            worst = max(worst, (diff, k), key=lambda t: t[0])
        if best is None or worst[0] < best[0][0]:
            best = (worst, t, scale, frame)
    (diff, k), t, scale, frame = best
    if diff > MATCH_TOLERANCE or scale <= 0:
        name = keys[k].name if k is not None else "?"
        raise ServerError(
            "rig_mismatch",
            f"'{obj.name}' does not match the server's FLAME model: its key {name} moves the vertices "
            f"differently from the server's expression component {k} (relative difference {diff:.3g}, "
            f"tolerance {MATCH_TOLERANCE:g}). The rig and the server use different FLAME models (e.g. FLAME "
            f"2020 and 2023): start the server with the FLAME file this rig came from (faceedit-server --flame PATH)",
        )
    return t, scale, frame


# ---------------------------------------------------------------------------- parameters
def read_params(obj, server: dict | None = None, mix: str = "ADD", flame_to_mesh: np.ndarray | None = None) -> dict:
    """The target's FLAME parameters: shape [1,Ns], expression [1,Ne] (float32), and for a rig its
    jaw and neck poses [1,3]. mix 'REPLACE' starts a rig from its neutral expression and jaw."""
    kind = target_kind(obj)
    if kind == "demo":
        return {
            "shape": np.zeros((1, int(obj["faceedit_n_shape"])), np.float32),
            "expression": np.zeros((1, int(obj["faceedit_n_exp"])), np.float32),
        }
    if kind == "flame":
        keys = flame_keys(obj)
        n_shape = min(len(keys["Shape"]), int((server or {}).get("n_shape") or len(keys["Shape"])))
        n_exp = min(len(keys["Exp"]), int((server or {}).get("n_exp") or len(keys["Exp"])))
        t = FRAMES["as is"] if flame_to_mesh is None else flame_to_mesh
        expression = np.array([[kb.value for kb in keys["Exp"][:n_exp]]], np.float32)
        jaw = read_bone(obj, "jaw", t)[None].astype(np.float32)
        eyes = np.concatenate([read_bone(obj, b, t) for b in EYE_BONES])[None].astype(np.float32)
        if mix == "REPLACE":
            expression, jaw, eyes = np.zeros_like(expression), np.zeros_like(jaw), np.zeros_like(eyes)
        return {
            "shape": np.array([[kb.value for kb in keys["Shape"][:n_shape]]], np.float32),
            "expression": expression,
            "jaw_pose": jaw,
            "eye_pose": eyes,
            "neck_pose": read_bone(obj, "neck", t)[None].astype(np.float32),
        }
    raise ServerError("invalid_target", f"'{obj.name if obj else None}' is {describe(obj)}")


def edited_coords(obj, result: dict) -> np.ndarray:
    """The demo head's edited vertex positions [V,3] (mesh space = FLAME's) from an edit reply."""
    n = len(obj.data.vertices)
    verts = np.asarray(result.get("vertices"))
    if verts.ndim != 3 or verts.shape[1:] != (n, 3) or not np.isfinite(verts).all():
        raise ServerError(
            "invalid_reply",
            f"the server returned vertices of shape {list(verts.shape)}, '{obj.name}' needs [1, {n}, 3]",
        )
    return verts[0].astype(np.float32)


def rig_edit_values(obj, sent: dict, result: dict, intensity: float) -> dict:
    """The rig's new values from an edit reply (sent at intensity 1): {'Exp': [n] psi + s*dpsi,
    'jaw_pose': [3] jaw + s*djaw, 'eye_pose': [6] eyes + s*dgaze, '<field>_moved': bool}. Checks
    the reply first; writes nothing."""
    keys = flame_keys(obj)["Exp"]
    psi0 = np.asarray(sent["expression"], np.float32)[0]
    params = result.get("params") or {}
    psi = np.asarray(params.get("expression"))
    if psi.ndim != 2 or psi.shape[1] < len(psi0) or not np.isfinite(psi).all():
        raise ServerError(
            "invalid_reply",
            f"the server returned an expression of shape {list(psi.shape)}, '{obj.name}' sent {len(psi0)} values",
        )
    dpsi = psi[0, : len(psi0)].astype(np.float32) - psi0
    beyond = np.flatnonzero(np.abs(psi[0, len(psi0) :]) > 1e-6)
    if beyond.size:
        raise ServerError(
            "invalid_target",
            f"the edit moves expression component(s) {', '.join(str(len(psi0) + i) for i in beyond[:5])} but "
            f"'{obj.name}' has only {len(keys)} Exp keys: nothing was written",
        )
    s = np.float32(intensity)
    out = {"Exp": (psi0 + s * dpsi).astype(np.float32)}
    for field, width in (("jaw_pose", 3), ("eye_pose", 6)):
        before = np.asarray(sent.get(field, np.zeros((1, width))), np.float32).reshape(-1)[:width]
        after = np.asarray(params.get(field, before[None]), np.float32).reshape(-1)
        if after.shape != (width,) or not np.isfinite(after).all():
            raise ServerError("invalid_reply", f"the server returned a {field} of shape {list(after.shape)}")
        out[field] = (before + s * (after - before)).astype(np.float32)
        out[field + "_moved"] = bool(np.abs(after - before).max() > 1e-7)
    return out
