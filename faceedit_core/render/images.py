"""Images out: float RGBA -> PNG bytes and files, and contact sheets."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from faceedit_core.storage.atomic import atomic_write


def to_uint8(rgba: np.ndarray) -> np.ndarray:
    """float [...,H,W,4] in [0,1] -> uint8."""
    return (np.clip(np.asarray(rgba), 0, 1) * 255 + 0.5).astype(np.uint8)


def png_bytes(rgba_u8: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba_u8).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: str | os.PathLike, rgba_u8: np.ndarray) -> Path:
    """Write a PNG atomically."""
    return atomic_write(path, lambda f: f.write(png_bytes(rgba_u8)))


def contact_sheet(tiles: np.ndarray, background=(38, 40, 52)) -> np.ndarray:
    """tiles uint8 [R,C,H,W,4] -> one RGB image [R*H, C*W, 3] composited on a background."""
    R, C, H, W, _ = tiles.shape
    alpha = tiles[..., 3:4].astype(np.float32) / 255
    rgb = tiles[..., :3] * alpha + np.array(background, np.float32) * (1 - alpha)
    return rgb.astype(np.uint8).transpose(0, 2, 1, 3, 4).reshape(R * H, C * W, 3)
