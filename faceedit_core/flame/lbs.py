"""Linear blend skinning for FLAME as small pure functions (shapes in each docstring).

Conventions (checked against DECA, EMOCA and FLAME_PyTorch in tests/test_flame_golden.py):
rotations act on column vectors, the root rotation turns about the root joint, pose
correctives use (R - I) of joints 1..4 flattened row by row.
"""

from __future__ import annotations

import torch


def batch_rodrigues(rot_vecs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Axis-angle [N,3] -> rotation matrices [N,3,3].

    The angle is |r + eps| (eps added to each component, as the references do), so a zero
    vector gives exactly the identity and the gradient stays finite there.
    """
    angle = torch.norm(rot_vecs + eps, dim=1, keepdim=True)  # [N,1]
    axis = rot_vecs / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    rx, ry, rz = axis.unbind(dim=1)
    zeros = torch.zeros_like(rx)
    K = torch.stack([zeros, -rz, ry, rz, zeros, -rx, -ry, rx, zeros], dim=1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)[None]
    return eye + sin * K + (1 - cos) * torch.bmm(K, K)


def blend_shapes(betas: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Coefficients [B,L] x blendshapes [L,V*3] (rows flattened C-order from [V,3]) -> offsets [B,V,3]."""
    return torch.matmul(betas, dirs).reshape(betas.shape[0], -1, 3)


def vertices2joints(J_regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Regressor [J,V] x vertices [B,V,3] -> joints [B,J,3]."""
    return torch.matmul(J_regressor, vertices)


def transform_mat(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rotations [N,3,3] and translations [N,3,1] -> homogeneous transforms [N,4,4]."""
    top = torch.cat([R, t], dim=2)
    bottom = torch.zeros_like(top[:, :1])
    bottom[:, :, 3] = 1
    return torch.cat([top, bottom], dim=1)


def batch_rigid_transform(
    rot_mats: torch.Tensor, joints: torch.Tensor, parents: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward kinematics.

    rot_mats [B,J,3,3], rest joints [B,J,3], parents [J] (root -1)
    -> posed joints [B,J,3], relative transforms [B,J,4,4] (map rest-pose points to posed).
    """
    B, J = joints.shape[:2]
    rel_joints = joints.clone()
    rel_joints[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    local = transform_mat(rot_mats.reshape(-1, 3, 3), rel_joints.reshape(-1, 3, 1)).reshape(B, J, 4, 4)
    chain = [local[:, 0]]
    for j in range(1, J):
        chain.append(torch.matmul(chain[int(parents[j])], local[:, j]))
    world = torch.stack(chain, dim=1)  # [B,J,4,4]
    posed_joints = world[:, :, :3, 3]
    # A_j = [R_j | t_j - R_j J_j]: subtract the rotated rest joint.
    rest = torch.matmul(world[:, :, :3, :3], joints[..., None])  # [B,J,3,1]
    rel = world.clone()
    rel[:, :, :3, 3] = world[:, :, :3, 3] - rest[..., 0]
    return posed_joints, rel


SKIN_CHUNK = 1 << 21  # blended-transform floats per group of meshes (8 MB)


def skin(v_posed: torch.Tensor, transforms: torch.Tensor, lbs_weights: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning: v_posed [B,V,3], joint transforms [B,J,4,4], weights [V,J] -> [B,V,3].

    Each vertex's blended 3x4 transform M is one matmul [V,J] x [b,J,12] -> [b,V,12], applied as
    M[:,0] x + M[:,1] y + M[:,2] z + M[:,3] column by column (never as [B,V,4,4] matrices and a
    batched 3x3 matmul per vertex: for the 26,719-vertex ICT head at batch 64 that took 3x longer).
    Without gradients the meshes go in groups of b (SKIN_CHUNK floats of M, about 8 heads of ICT's
    size), M computed transposed ([b,12,V]: T^T W^T, the same sums) so each of its columns is one
    contiguous row, and written into one output: a whole batch's M (82 MB at 64 ICT heads) and its
    temporaries would be fresh memory, page-faulted in on every call; per group they stay in the
    allocator's heap and in cache. Both ways give the same values."""
    B, J = transforms.shape[:2]
    T = transforms[:, :, :3, :].reshape(B, J, 12)
    if torch.is_grad_enabled() and (v_posed.requires_grad or transforms.requires_grad or lbs_weights.requires_grad):
        M = torch.matmul(lbs_weights, T).view(B, -1, 3, 4)
        return M[..., 0] * v_posed[..., 0:1] + M[..., 1] * v_posed[..., 1:2] + M[..., 2] * v_posed[..., 2:3] + M[..., 3]
    V = v_posed.shape[1]
    out = torch.empty_like(v_posed)
    step = max(1, SKIN_CHUNK // (12 * V))
    for lo in range(0, B, step):
        M = torch.matmul(T[lo : lo + step].transpose(1, 2), lbs_weights.t()).view(-1, 3, 4, V)  # [b,3 rows,4 cols,V]
        x = v_posed[lo : lo + step].transpose(1, 2).contiguous()  # [b,3,V]
        o = M[:, :, 0] * x[:, None, 0]
        term = M[:, :, 1] * x[:, None, 1]
        o += term
        torch.mul(M[:, :, 2], x[:, None, 2], out=term)
        o += term
        o += M[:, :, 3]
        out[lo : lo + step].copy_(o.transpose(1, 2))
    return out


def lbs(
    v_shaped: torch.Tensor,
    full_pose: torch.Tensor,
    posedirs: torch.Tensor,
    J_regressor: torch.Tensor | None,
    parents: torch.Tensor,
    lbs_weights: torch.Tensor,
    rest_joints: torch.Tensor | None = None,
    pose_rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FLAME pose: correctives and skinning of an already shaped mesh.

    v_shaped [B,V,3] (template + shape and expression blendshapes), full_pose [B,J*3]
    axis-angle, posedirs [(J-1)*9, V*3], J_regressor [J,V], parents [J], lbs_weights [V,J]
    -> vertices [B,V,3], posed joints [B,J,3]. rest_joints [B,J,3], when given, replaces the
    regression (for a vertex subset whose joints were regressed from the full mesh). pose_rows [R]
    long, when given: the only rows of posedirs that are not zero (the ICT head's 9 jaw rows).
    """
    B = v_shaped.shape[0]
    joints = vertices2joints(J_regressor, v_shaped) if rest_joints is None else rest_joints
    J = joints.shape[1]
    rot_mats = batch_rodrigues(full_pose.reshape(-1, 3)).reshape(B, J, 3, 3)
    eye = torch.eye(3, dtype=v_shaped.dtype, device=v_shaped.device)
    pose_feature = (rot_mats[:, 1:] - eye).reshape(B, -1)
    if pose_rows is not None:
        pose_feature, posedirs = pose_feature.index_select(1, pose_rows), posedirs.index_select(0, pose_rows)
    if (torch.is_grad_enabled() and full_pose.requires_grad) or pose_feature.any():
        v_posed = torch.matmul(pose_feature, posedirs).reshape(B, -1, 3).add_(v_shaped)
    else:  # every non-root joint at rest: the correctives are exactly zero (a zero vector gives R = I)
        v_posed = v_shaped
    posed_joints, A = batch_rigid_transform(rot_mats, joints, parents)
    return skin(v_posed, A, lbs_weights), posed_joints
