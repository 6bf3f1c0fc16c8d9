#!/usr/bin/env python
"""Rasterise the ICT head in a few expressions to PNGs, for looking at (not a test).

    python tools/ict/preview_ict.py [--out /tmp/ict_preview] [--size 384]

Each PNG is a strip of views: front, three-quarter, a mouth close-up and an eye close-up.
Cases: neutral, mouthSmile_L, jawOpen through the jaw joint, eyeBlink on both sides, a PCA
sample, a smile with the jaw half open, the neck turned with the eyes looking left, plus landmark
overlays with the head turned (dynamic contour). Vertex colours come from
faceedit_core.render.ict_materials and are shaded here (Lambert + ambient) with close-up cameras
and landmark dots; the served renders use PreviewRenderer (ict_materials.preview_renderer).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from faceedit_core.flame.ict import load_ict_head  # noqa: E402
from faceedit_core.flame.ict_pca import sample_weights  # noqa: E402
from faceedit_core.flame.layer import FlameLayer  # noqa: E402
from faceedit_core.params import FlameParams  # noqa: E402
from faceedit_core.render.cameras import flame_to_world, orbit  # noqa: E402
from faceedit_core.render.ict_materials import part_colours, render_faces  # noqa: E402
from faceedit_core.render.rasterize import interpolate, rasterize  # noqa: E402

SUPERSAMPLE = 2


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    tri = verts[faces]
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    n = torch.zeros_like(verts).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return F.normalize(n, dim=-1)


def views():
    """(yaw, pitch, radius, pivot in world units) of the four views."""
    mouth = tuple(flame_to_world(torch.tensor([0.0, -0.035, 0.09])).tolist())
    eye = tuple(flame_to_world(torch.tensor([0.031, 0.027, 0.075])).tolist())
    head = tuple(flame_to_world(torch.tensor([0.0, -0.01, 0.02])).tolist())
    return [(0, 0, 3.0, head), (35, 5, 3.0, head), (0, 0, 1.0, mouth), (15, 0, 0.6, eye)]


def render(
    verts: np.ndarray, faces: torch.Tensor, colours: torch.Tensor, size: int, points: np.ndarray | None = None
) -> np.ndarray:
    """verts [V,3] (FLAME metres) -> uint8 [size, 4*size, 3]; points [P,3] drawn as dots."""
    world = flame_to_world(torch.as_tensor(verts, dtype=torch.float32))
    normals = vertex_normals(world, faces)
    tiles = []
    for yaw, pitch, radius, pivot in views():
        cams = orbit([yaw], pitch, radius=radius, pivot=pivot)
        S = size * SUPERSAMPLE
        frags = rasterize(cams.project(world), faces, (S, S), cull_backfaces=True)
        R = cams.cam2world[0, :3, :3]
        light = F.normalize(-0.4 * R[:, 0] - 0.6 * R[:, 1] - 1.0 * R[:, 2], dim=0)
        n = F.normalize(interpolate(normals[None], frags, faces)[0], dim=-1)
        alb = interpolate(colours[None], frags, faces)[0]
        lit = alb * (0.35 + 0.75 * (n @ light).clamp(min=0))[..., None]
        img = torch.where(frags.mask[0, ..., None], lit, torch.full_like(lit, 0.18)).clamp(0, 1)
        img = F.avg_pool2d(img.permute(2, 0, 1)[None], SUPERSAMPLE)[0].permute(1, 2, 0)
        out = (img.numpy() * 255).astype(np.uint8)
        if points is not None:
            clip = cams.project(flame_to_world(torch.as_tensor(points, dtype=torch.float32)))[0]
            px = ((clip[:, 0] / clip[:, 3] + 1) * 0.5 * size).long().numpy()
            py = ((1 - clip[:, 1] / clip[:, 3]) * 0.5 * size).long().numpy()
            for k, (x, y) in enumerate(zip(px, py)):
                if 1 <= x < size - 1 and 1 <= y < size - 1:
                    out[y - 1 : y + 2, x - 1 : x + 2] = (40, 255, 40) if k < 17 else (255, 255, 0)
        tiles.append(out)
    return np.concatenate(tiles, axis=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/ict_preview")
    ap.add_argument("--size", type=int, default=384)
    args = ap.parse_args(argv)
    from PIL import Image

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sem = load_ict_head("semantic")
    pca = load_ict_head("pca")
    faces = torch.as_tensor(sem.model.f[render_faces(sem)], dtype=torch.long)
    colours = torch.as_tensor(part_colours(sem))
    layers = {"semantic": FlameLayer(sem.model, sem.landmarks), "pca": FlameLayer(pca.model, pca.landmarks)}

    def pose(head, expression=None, jaw=0.0, yaw_deg=0.0, neck=None, eyes=None):
        p = FlameParams.zeros(1, head.model.n_shape, head.model.n_exp)
        if neck is not None:
            p.neck_pose[0] = torch.tensor(neck)
        if eyes is not None:
            p.eye_pose[0] = torch.tensor(eyes)
        if expression:
            p.expression[0] = torch.as_tensor(head.expression_vector(expression))
        p.jaw_pose[0] = torch.as_tensor(head.jaw_pose(jaw))
        p.global_pose[0, 1] = np.radians(yaw_deg)
        return p

    # a plausible PCA expression: a sampled mix of semantic shapes, as PCA coefficients
    mixes = sample_weights(pca.semantic_names, 16, seed=11)
    mix = mixes[int(np.argmax((mixes > 0).sum(1)))]
    pca_sample = {c.name: float(x) for c, x in zip(pca.components, pca.semantic_coefficients(mix))}
    print("PCA sample:", {n: round(float(w), 2) for n, w in zip(pca.semantic_names, mix) if w > 0})
    cases = {
        "neutral": (sem, pose(sem)),
        "smile_L": (sem, pose(sem, {"mouthSmile_L": 1.0})),
        "jawOpen": (sem, pose(sem, jaw=1.0)),
        "eyeBlink": (sem, pose(sem, {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0})),
        "pca_sample": (pca, pose(pca, pca_sample)),
        "smile_jaw_half": (sem, pose(sem, {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0}, jaw=0.5)),
        "neck_turn_gaze": (sem, pose(sem, neck=[0.25, 0.6, 0.0], eyes=[0.0, 0.35, 0.0, 0.0, 0.35, 0.0])),
    }
    with torch.no_grad():
        for name, (head, params) in cases.items():
            res = layers[head.parameterisation](params)
            img = render(res.vertices[0].numpy(), faces, colours, args.size, res.landmarks[0].numpy())
            Image.fromarray(img).save(out / f"{name}.png")
            print(out / f"{name}.png")
        for yaw in (-30, 10, 30):
            res = layers["semantic"](pose(sem, yaw_deg=yaw))
            img = render(res.vertices[0].numpy(), faces, colours, args.size, res.landmarks[0].numpy())
            Image.fromarray(img[:, : args.size]).save(out / f"landmarks_yaw{yaw:+d}.png")
            print(out / f"landmarks_yaw{yaw:+d}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
