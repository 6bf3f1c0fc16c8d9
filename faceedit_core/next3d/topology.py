"""The mesh topology and UV mask the Next3D generator rasterises its neural texture with.

`Next3DTopology` holds what the release derives from its template OBJ (FLAME's
`head_template.obj`) and DECA's `uv_face_eye_mask.png`:
- `faces [F,3]` vertex indices, `uvs [T,2]` texture coordinates (u right, v up), `uv_faces [F,3]`;
- `uv_mask [1,1,S,S]` in [0,1] (face and eyes; 0 in the eye holes and off the face).

Derived exactly as the release's buffers: `uvcoords [T,3] = (2u-1, 1-2v, 1)`,
`face_uvcoords [F,3,3]` (the corners' uvcoords) and `dense_faces [122990,3]` (a regular
triangulation of a 256x256 grid, unused by any forward pass but part of the state dict).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceedit_core.errors import InputError
from faceedit_core.storage.reading import reading_errors

MASK_SIZE = 256
MAX_MASK_PIXELS = 4096 * 4096  # a UV mask read from a file (DECA's is 256 x 256) may have at most this many


def dense_faces(size: int = 256, skip_cols: int = 2, skip_rows: int = 5) -> torch.Tensor:
    """Two triangles per cell of a size x size grid (point a*size+b), leaving out `skip_cols`
    columns of cells left and right and `skip_rows` rows top and bottom -> [F,3] long.

    Cells are enumerated with b (columns) outer and a (rows) inner, as in the release. Built
    on the CPU even under a meta-device context (construction before loading weights).
    """
    b, a = torch.meshgrid(
        torch.arange(skip_cols, size - 1 - skip_cols, device="cpu"),
        torch.arange(skip_rows, size - 1 - skip_rows, device="cpu"),
        indexing="ij",
    )
    p = (a * size + b).reshape(-1)
    first = torch.stack([p, p + size, p + 1], 1)
    second = torch.stack([p + 1, p + size, p + size + 1], 1)
    return torch.stack([first, second], 1).reshape(-1, 3)


def read_uv_mask(path: str | os.PathLike) -> torch.Tensor:
    """A UV face/eye mask PNG -> [1,1,256,256] float32 in [0,1] (value / 255 in float32).

    As the release reads it with OpenCV (BGR, channel 0 kept): greyscale images give their grey
    value, colour images their blue channel.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"UV mask {path} does not exist (DECA's data/uv_face_eye_mask.png)")
    with reading_errors(f"UV mask {path}"), Image.open(path) as img:  # a corrupt PNG is an InputError
        if img.width * img.height > MAX_MASK_PIXELS:  # checked on the header, before any pixel is decoded
            raise InputError(f"UV mask {path} is {img.width} x {img.height}; the limit is {MAX_MASK_PIXELS} pixels")
        arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr[..., 2] if arr.shape[2] >= 3 else arr[..., 0]
    if arr.dtype != np.uint8:
        raise InputError(f"UV mask {path} must be an 8-bit image, got {arr.dtype}")
    mask = torch.from_numpy(arr.astype(np.float32)) / 255.0
    return resize_mask(mask[None, None], path.name)


def resize_mask(mask: torch.Tensor, name: str = "uv_mask", size: int = MASK_SIZE) -> torch.Tensor:
    """[1,1,h,w] or [h,w] in [0,1] -> [1,1,size,size] (bilinear when the size differs)."""
    if mask.dim() == 2:
        mask = mask[None, None]
    if mask.dim() != 4 or mask.shape[:2] != (1, 1):
        raise InputError(f"{name} must have shape [H,W] or [1,1,H,W], got {list(mask.shape)}")
    mask = mask.to(torch.float32)
    if mask.shape[-2:] != (size, size):
        mask = torch.nn.functional.interpolate(
            mask, size=(size, size), mode="bilinear", align_corners=False, antialias=size < mask.shape[-1]
        )
    return mask


@dataclass
class Next3DTopology:
    """faces [F,3] long, uvs [T,2] float32, uv_faces [F,3] long, uv_mask [1,1,256,256] float32
    (given as a tensor, a PNG path, or None for all ones)."""

    faces: torch.Tensor
    uvs: torch.Tensor
    uv_faces: torch.Tensor
    uv_mask: torch.Tensor

    def __post_init__(self):
        self.faces = torch.as_tensor(self.faces).long().reshape(-1, 3)
        self.uvs = torch.as_tensor(self.uvs).to(torch.float32)
        self.uv_faces = torch.as_tensor(self.uv_faces).long()
        self.uv_mask = _mask_from(self.uv_mask)
        if self.uvs.dim() != 2 or self.uvs.shape[1] != 2:
            raise InputError(f"uvs must have shape [T,2], got {list(self.uvs.shape)}")
        if self.uv_faces.shape != self.faces.shape:
            raise InputError(f"uv_faces {list(self.uv_faces.shape)} must match faces {list(self.faces.shape)}")
        if (
            len(self.faces) == 0
            or self.faces.min() < 0
            or self.uv_faces.min() < 0
            or self.uv_faces.max() >= len(self.uvs)
        ):
            raise InputError("faces and uv_faces must be non-empty and index existing vertices / uvs")

    @property
    def n_verts(self) -> int:
        """The smallest vertex count the faces can index (the mesh may have more vertices)."""
        return int(self.faces.max()) + 1

    def uvcoords(self) -> torch.Tensor:
        """[T,3]: (2u-1, 1-2v, 1), the release's `uvcoords` buffer (grid_sample coordinates)."""
        uv = torch.cat([self.uvs, torch.ones_like(self.uvs[:, :1])], 1) * 2 - 1
        uv[:, 1] = -uv[:, 1]
        return uv

    def face_uvcoords(self) -> torch.Tensor:
        """[F,3,3]: the uvcoords of each face corner."""
        return self.uvcoords()[self.uv_faces]

    def buffers(self) -> dict[str, torch.Tensor]:
        """The release's topology buffers, batch-first as in its state dict."""
        return {
            "dense_faces": dense_faces()[None],
            "faces": self.faces[None],
            "raw_uvcoords": self.uvs[None],
            "uvcoords": self.uvcoords()[None],
            "uvfaces": self.uv_faces[None],
            "face_uvcoords": self.face_uvcoords()[None],
        }

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_obj(
        cls, obj_path: str | os.PathLike, mask: str | os.PathLike | torch.Tensor | None = None
    ) -> "Next3DTopology":
        """A template OBJ with `vt` and `f a/ta ...` lines, and a mask PNG / tensor (None: all ones)."""
        from faceedit_core.storage.mesh_io import read_obj

        _, faces, uvs, uv_faces = read_obj(obj_path)
        if uvs is None or uv_faces is None:
            raise InputError(f"{obj_path} has no texture coordinates (vt and f a/ta lines): Next3D needs UVs")
        return cls(
            torch.from_numpy(faces),
            torch.from_numpy(uvs.astype(np.float32)),
            torch.from_numpy(uv_faces),
            _mask_from(mask),
        )

    @classmethod
    def from_flame_layer(cls, layer, mask: str | os.PathLike | torch.Tensor | None = None) -> "Next3DTopology":
        """The topology of a `FlameLayer` with UVs (the demo head has them)."""
        if layer.uvs is None or layer.uv_faces is None:
            raise InputError("this FLAME model has no UVs (vt, ft): Next3D needs a textured topology")
        return cls(layer.faces.cpu(), layer.uvs, layer.uv_faces, _mask_from(mask))

    @classmethod
    def from_state_dict(
        cls, sd: dict[str, torch.Tensor], mask: str | os.PathLike | torch.Tensor | None = None
    ) -> "Next3DTopology":
        """From the release's buffers `faces`, `raw_uvcoords`, `uvfaces` (batch-first)."""
        missing = [k for k in ("faces", "raw_uvcoords", "uvfaces") if k not in sd]
        if missing:
            raise InputError(f"state dict lacks the topology buffers {missing}")
        return cls(sd["faces"][0], sd["raw_uvcoords"][0], sd["uvfaces"][0], _mask_from(mask))

    @classmethod
    def demo_head(cls) -> "Next3DTopology":
        """The procedural head (faceedit_core.flame.default_head; FLAME-sized, one UV tile), mask all ones.
        Next3D is built on FLAME's topology: the ICT default head cannot stand in here."""
        from faceedit_core.flame.default_head import load_procedural_flame

        return cls.from_flame_layer(load_procedural_flame())


def _mask_from(mask) -> torch.Tensor:
    if mask is None:
        return torch.ones(1, 1, MASK_SIZE, MASK_SIZE)
    if isinstance(mask, torch.Tensor):
        return resize_mask(mask)
    return read_uv_mask(mask)
