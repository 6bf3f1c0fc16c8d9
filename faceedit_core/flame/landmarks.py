"""68 landmarks on a FLAME mesh: barycentric lookup and DECA's yaw-dependent jaw contour."""

from __future__ import annotations

import math

import torch

from faceedit_core.flame.lbs import batch_rodrigues


def landmarks_from_faces(
    verts: torch.Tensor, faces: torch.Tensor, lmk_faces: torch.Tensor, lmk_bary: torch.Tensor
) -> torch.Tensor:
    """verts [B,V,3], faces [F,3], lmk_faces [B,L] or [L], lmk_bary [B,L,3] or [L,3] -> [B,L,3]."""
    B = verts.shape[0]
    if lmk_faces.dim() == 1:
        lmk_faces = lmk_faces.expand(B, -1)
        lmk_bary = lmk_bary.expand(B, -1, -1)
    tri = faces[lmk_faces]  # [B,L,3]
    corners = torch.gather(verts, 1, tri.reshape(B, -1, 1).expand(-1, -1, 3)).reshape(B, -1, 3, 3)
    return (corners * lmk_bary[..., None]).sum(dim=2)


def contour_rows(global_pose: torch.Tensor, neck_pose: torch.Tensor) -> torch.Tensor:
    """Which of the 79 contour rows each item uses, as DECA/EMOCA choose it: long [B].

    yaw (degrees, about y) of R_global @ R_neck; y = round_half_even(min(yaw, 39));
    row y for y >= 0, 39 - y for -39 <= y < 0, and 78 below -39.
    """
    B = global_pose.shape[0]
    rots = batch_rodrigues(torch.cat([global_pose, neck_pose]).reshape(-1, 3)).reshape(2, B, 3, 3)
    rel = torch.matmul(rots[0], rots[1])
    yaw = torch.atan2(-rel[:, 2, 0], torch.sqrt(rel[:, 0, 0] ** 2 + rel[:, 1, 0] ** 2)) * (180.0 / math.pi)
    y = torch.round(torch.clamp(yaw, max=39.0)).to(torch.long)
    neg = torch.where(y < -39, torch.full_like(y, 78), 39 - y)
    return torch.where(y >= 0, y, neg)
