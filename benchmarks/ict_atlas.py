"""Pictures for the ICT head's evaluation (benchmarks/eval_ict.py): the atlas and per-prompt render checks.

atlas(editor, prompts, params, path): every prompt edited on two identities, front and
three-quarter (yaw 35, pitch 5: the demo's two views, `portrait` framing), one labelled cell per prompt, one
PNG or JPEG. render_checks(editor, params, views): holes in the silhouette (background pixels the
background around the head cannot reach: a crack or a missing face) and teeth pixels, per view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from faceedit_core.params import FlameParams
from faceedit_core.render.cameras import flame_to_world, portrait
from faceedit_core.render.images import contact_sheet, save_png
from faceedit_core.render.rasterize import rasterize
from faceedit_core.storage.atomic import atomic_write

VIEWS = ((0.0, 0.0), (35.0, 5.0))  # (yaw, pitch) degrees: front, three-quarter
TILE = 224
LABEL_H = 26
BACKGROUND = (38, 40, 52)


def cameras():
    return portrait([y for y, _ in VIEWS], [p for _, p in VIEWS])


def _label(width: int, text: str) -> np.ndarray:
    """A strip [LABEL_H, width, 3] with the text on the atlas background."""
    img = Image.new("RGB", (width, LABEL_H), BACKGROUND)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=16)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    draw.text((8, 4), text, fill=(235, 235, 235), font=font)
    return np.asarray(img)


def atlas(editor, cells: list[tuple[str, FlameParams]], path: str | Path, columns: int = 2) -> Path:
    """cells: (label, params [2] of two identities) -> one PNG of labelled cells, each the two
    identities front and three-quarter side by side; `columns` cells a row."""
    images = []
    for label, params in cells:
        tiles = editor.render(params, cameras(), TILE)  # uint8 [2 ids, 2 views, H, W, 4]
        sheet = contact_sheet(tiles.reshape(1, -1, TILE, TILE, 4))  # one row: id0 front, id0 3/4, id1 ...
        images.append(np.concatenate([_label(sheet.shape[1], label), sheet], 0))
    blank = np.zeros_like(images[0]) + np.array(BACKGROUND, np.uint8)
    while len(images) % columns:
        images.append(blank)
    rows = [np.concatenate(images[i : i + columns], 1) for i in range(0, len(images), columns)]
    grid = np.concatenate(rows, 0)
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):  # a quarter of the PNG's size for a 2k x 3k atlas
        return atomic_write(path, lambda f: Image.fromarray(grid).save(f, "JPEG", quality=92))
    return save_png(path, np.concatenate([grid, np.full(grid.shape[:2] + (1,), 255, np.uint8)], -1))


def holes(alpha: np.ndarray) -> int:
    """Background pixels of a view [H,W] that the background around the head cannot reach (4-connected)."""
    from scipy.ndimage import binary_fill_holes

    solid = alpha > 0
    return int((binary_fill_holes(solid) & ~solid).sum())


def render_checks(editor, params: FlameParams, size: int = 256) -> dict:
    """{holes: [B][views], teeth: [B][views]}: hole pixels and teeth pixels of params [B] in the
    atlas views, on the faces the preview renderer draws."""
    from faceedit_core.render.ict_materials import render_faces

    ict = editor.head.info["ict"]
    drawn = torch.as_tensor(np.nonzero(render_faces(ict))[0])  # the preview renderer's faces, in order
    faces = editor.renderer.faces
    teeth = torch.as_tensor(np.isin(ict.face_part, [ict.part_labels.index(n) for n in ("teeth_upper", "teeth_lower")]))
    with torch.no_grad():
        verts = editor.layer(editor.checked_params(params)).vertices
    out = {"holes": [], "teeth": []}
    for v in verts:
        frags = rasterize(cameras().project(flame_to_world(v)), faces, (size, size), cull_backfaces=True)
        out["holes"].append([holes(m.numpy()) for m in frags.mask])
        out["teeth"].append([int(teeth[drawn[f[f >= 0]]].sum()) for f in frags.face_id])
    return out
