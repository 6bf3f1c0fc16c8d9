"""Real-photo inversion (paper Sec. VI): the Next3D latent and camera of a photo, by optimisation.

The paper edits real faces by 3D GAN inversion with pose optimisation (its reference [40]): find
ws (one w for all 28 rows, or w+: 28 free rows) and the camera whose Next3D render, on the photo's
FLAME mesh (an EMOCA/DECA fit: shape, expression, jaw; the global head rotation goes into the
camera, as Next3D's data has it), reproduces the photo. Then the latent is an identity like any
other (latents.py) and the mappers edit it.

Loss (weights in InvertConfig): pixel MSE on [-1,1] images + LPIPS over VGG16 (perceptual.py,
when the user supplies its weights) + ArcFace identity 1 - cos (when ArcFace is loaded).

Optimisation, where the paper is silent, follows the StyleGAN2 projector that EG3D-lineage
inversion (PTI and the 3D GAN inversion work built on it) uses: start from the mean w of the
mapping network (`n_avg` samples with the frontal conditioning camera) and w_std, Adam
(betas 0.9, 0.999), learning rate ramped up over the first 5 % of steps and down by a cosine over
the last 25 %, Gaussian noise of 0.05 w_std added to w, fading quadratically to 0 over the first
75 %. The camera is optimised within Next3D's camera model (EG3D's FFHQ cameras: radius 2.7
around the pivot, looking at it, focal 4.2647) as yaw, pitch and roll, starting from the frontal
camera turned by the inverse of the photo's global head rotation; a free rotation and translation
would let the camera drift along directions the training images never had. While it optimises,
Next3D's weights (and ArcFace's, LPIPS's) are frozen for gradients and its float16
super-resolution blocks run in float32, as in training (train.frozen, train.training_precision).

The photo must be cropped and aligned as Next3D's (FFHQ-style) training images: this module does
not detect or align faces.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from faceedit_core.errors import Cancelled, InputError
from faceedit_core.params import FlameParams
from faceedit_core.storage.records import Record, bounded

MODES = ("w", "w+")
MAX_PHOTO_PIXELS = 4096 * 4096


@dataclass
class InvertConfig(Record):
    """steps: Adam steps (the StyleGAN2 projector's 1,000 by default; 500 is usually enough).
    mode: "w" (one w, broadcast to the 28 rows) or "w+" (28 rows optimised separately).
    lr: peak learning rate of the latent; camera_lr of the camera's yaw, pitch and roll (radians).
    pixel, perceptual, identity: loss weights (perceptual needs a Perceptual net, identity ArcFace).
    noise: initial latent noise in units of w_std. optimize_camera / optimize_latent: False keeps
    the initial camera / latent (pose optimisation alone: optimize_latent False with a given latent).
    n_avg: mapping samples for w_avg / w_std. seed: of those samples, the noise and the ray draws.
    """

    RECORD = "inversion field"
    steps: int = bounded(1000, 1, 100_000)
    mode: str = "w"
    lr: float = bounded(0.01, 0.0, math.inf)
    camera_lr: float = bounded(0.005, 0.0, math.inf)
    pixel: float = bounded(1.0, 0.0, math.inf)
    perceptual: float = bounded(1.0, 0.0, math.inf)
    identity: float = bounded(0.1, 0.0, math.inf)
    noise: float = bounded(0.05, 0.0, math.inf)
    optimize_camera: bool = True
    optimize_latent: bool = True
    n_avg: int = bounded(10000, 1, 1_000_000)
    seed: int = 0

    def validate(self) -> "InvertConfig":
        if self.mode not in MODES:
            raise InputError(f"inversion field 'mode' = {self.mode!r} is not one of {MODES}")
        self.check()
        if not (self.optimize_latent or self.optimize_camera):
            raise InputError("inversion optimises the latent, the camera or both: not neither")
        return self


@dataclass
class InvertResult:
    """ws [1,28,512], camera c [1,25], the photo's params [1], final losses (seeded ray draws),
    per-step history, and the render of the result [1,3,S,S] in [-1,1]."""

    ws: torch.Tensor
    c: torch.Tensor
    params: FlameParams
    losses: dict
    history: list = field(default_factory=list)
    image: torch.Tensor | None = None


# ----------------------------------------------------------------------------- photos
def load_photo(source: str | os.PathLike | bytes, size: int) -> torch.Tensor:
    """A PNG/JPEG file or its bytes -> [1,3,size,size] RGB in [-1,1] (centre square, Lanczos resize)."""
    from PIL import Image

    try:
        data = source if isinstance(source, (bytes, bytearray)) else Path(source).expanduser().read_bytes()
    except OSError as exc:
        raise InputError(f"photo {source}: {exc.strerror}") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PHOTO_PIXELS:
                raise InputError(f"photo is {img.width}x{img.height}: more than {MAX_PHOTO_PIXELS} pixels")
            img = img.convert("RGB")
    except InputError:
        raise
    except Exception as exc:  # PIL's UnidentifiedImageError, DecompressionBombError, truncated files ...
        raise InputError(f"photo is not a readable PNG/JPEG image ({type(exc).__name__})") from None
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
    arr = np.asarray(img, np.float32) / 127.5 - 1
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


def photo_sha256(source: str | os.PathLike | bytes) -> str:
    data = source if isinstance(source, (bytes, bytearray)) else Path(source).expanduser().read_bytes()
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- cameras
def initial_camera(global_pose: torch.Tensor) -> torch.Tensor:
    """The photo's global head rotation (axis-angle [1,3]) -> camera angles [3] (yaw, pitch, roll
    in radians, see `camera_c`): the frontal camera turned by the inverse head rotation, i.e. the
    unrotated head seen as the camera saw the rotated one."""
    from faceedit_core.flame.lbs import batch_rodrigues
    from faceedit_core.render.cameras import orbit

    front = orbit([0.0], [0.0]).cam2world[0]
    R_head = batch_rodrigues(global_pose.reshape(1, 3).float().cpu())[0]
    cam = R_head.T @ front[:3, :3].float()  # columns: right, down, forward (OpenCV axes)
    back = -cam[:, 2]  # from the head towards the camera
    yaw, pitch = torch.atan2(back[0], back[2]), torch.asin(back[1].clamp(-1, 1))
    upright = _look_at_rotation(yaw, pitch)
    roll = torch.atan2(torch.dot(torch.linalg.cross(upright[:, 0], cam[:, 0]), cam[:, 2]), upright[:, 0] @ cam[:, 0])
    return torch.stack([yaw, pitch, roll])


def _look_at_rotation(yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """cam2world rotation [3,3] of a camera at (yaw, pitch) looking at the pivot, world y up."""
    back = torch.stack([torch.sin(yaw) * torch.cos(pitch), torch.sin(pitch), torch.cos(yaw) * torch.cos(pitch)])
    forward = -back
    up = torch.tensor([0.0, 1.0, 0.0], device=back.device, dtype=back.dtype)
    right = -F.normalize(torch.linalg.cross(up, forward), dim=0)
    down = torch.linalg.cross(forward, right)
    return torch.stack([right, down, forward], 1)


def camera_c(angles: torch.Tensor) -> torch.Tensor:
    """Camera angles [3] (yaw, pitch, roll; radians) -> EG3D camera c [1,25], differentiable.

    Next3D's (EG3D's) camera model: the camera sits at radius 2.7 from the pivot [0, 0, 0.2] at
    the given yaw (about +y, towards +x) and pitch (from above), looks at the pivot, and turns by
    `roll` about its viewing axis; focal length 4.2647, principal point 0.5."""
    from faceedit_core.render.cameras import PIVOT, RADIUS, intrinsics

    yaw, pitch, roll = angles.to(torch.float32).unbind()
    rot = _look_at_rotation(yaw, pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    zero, one = torch.zeros_like(roll), torch.ones_like(roll)
    spin = torch.stack([torch.stack([cr, -sr, zero]), torch.stack([sr, cr, zero]), torch.stack([zero, zero, one])])
    rot = rot @ spin
    pos = torch.tensor(PIVOT, device=angles.device) - RADIUS * rot[:, 2]
    top = torch.cat([rot, pos[:, None]], 1)
    cam2world = torch.cat([top, torch.tensor([[0.0, 0.0, 0.0, 1.0]], device=top.device)], 0)
    return torch.cat([cam2world.reshape(1, 16), intrinsics(1).to(top.device).reshape(1, 9)], 1)


# ----------------------------------------------------------------------------- optimisation
@torch.no_grad()
def w_stats(generator, n: int, seed: int, device) -> tuple[torch.Tensor, float]:
    """Mean w [1,512] of n mapping samples (frontal conditioning camera, no truncation) and the
    scalar w_std = sqrt(mean squared distance to it), as the StyleGAN2 projector computes them."""
    from faceedit_core.render.cameras import orbit

    g = torch.Generator().manual_seed(seed)
    c = orbit([0.0], [0.0]).eg3d_c().to(device)
    ws = []
    for start in range(0, n, 1000):
        k = min(1000, n - start)
        z = torch.randn(k, getattr(generator, "z_dim", 512), generator=g).to(device)
        ws.append(generator.mapping(z, c.expand(k, -1), truncation_psi=1.0)[:, 0])
    w = torch.cat(ws)
    avg = w.mean(0, keepdim=True)
    return avg, float(((w - avg).square().sum(1).mean()).sqrt())


def _schedule(t: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * min(1.0, t / rampup)


def invert_photo(
    models,
    photo: torch.Tensor,
    params: FlameParams,
    cfg: InvertConfig = InvertConfig(),
    perceptual=None,
    progress: Callable[[dict], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    init_ws: torch.Tensor | None = None,
) -> InvertResult:
    """photo [1,3,S,S] in [-1,1] (S = Next3D's output resolution), its FLAME params [1] -> InvertResult.

    models: PaperModels (flame, generator; arcface used when loaded and cfg.identity > 0).
    perceptual: a Perceptual net (perceptual.py) or None. init_ws: the starting latent ([1,1,512]
    or [1,28,512], e.g. an earlier inversion to refine; default w_avg). progress gets {stage, step,
    total, loss, loss_pixel, [loss_perceptual], [loss_identity]}; cancel is checked between steps
    (Cancelled)."""
    from faceedit_core.next3d.generator import flame_inputs
    from faceedit_core.paper.train import frozen, training_precision

    cfg.validate()
    G, layer = models.generator, models.flame
    device = layer.v_template.device
    S = G.config.output_resolution
    if photo.shape != (1, 3, S, S):
        raise InputError(f"photo must be [1,3,{S},{S}] (Next3D's output size), got {list(photo.shape)}")
    params = layer_checked(layer, params)
    arcface = models.arcface if cfg.identity > 0 else None
    target = photo.to(device)
    with torch.no_grad():
        verts = flame_inputs(layer, params.to(device))
        target_id = arcface.embed(target) if arcface is not None else None
    angles = initial_camera(params.global_pose).to(device).requires_grad_(True)
    w_avg, w_std = w_stats(G, cfg.n_avg, cfg.seed, device)
    rows = 1 if cfg.mode == "w" else 28
    start = w_avg[:, None] if init_ws is None else init_ws.to(device, torch.float32)
    if start.dim() != 3 or start.shape[0] != 1 or start.shape[1] not in (1, 28) or start.shape[2] != 512:
        raise InputError(f"init_ws must have shape [1,1,512] or [1,28,512], got {list(start.shape)}")
    if rows == 1 and start.shape[1] == 28 and not torch.equal(start[:, :1].expand_as(start), start):
        raise InputError("mode 'w' starts from one w: init_ws has 28 different rows (use mode 'w+')")
    w_opt = start[:, :1].clone() if rows == 1 else start.expand(1, 28, -1).clone()  # [1,rows,512]
    w_opt.requires_grad_(cfg.optimize_latent)
    groups = [{"params": [w_opt], "lr": cfg.lr, "base": cfg.lr}] if cfg.optimize_latent else []
    if cfg.optimize_camera and cfg.camera_lr > 0:
        groups.append({"params": [angles], "lr": cfg.camera_lr, "base": cfg.camera_lr})
    opt = torch.optim.Adam(groups, betas=(0.9, 0.999))
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    def losses(image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"pixel": F.mse_loss(image, target)}
        if perceptual is not None and cfg.perceptual > 0:
            out["perceptual"] = perceptual(image, target).mean()
        if target_id is not None:
            out["identity"] = (1 - (arcface.embed(image) * target_id).sum(-1)).mean()
        return out

    def total(parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(getattr(cfg, k) * v for k, v in parts.items())

    history = []
    with frozen(G, arcface, perceptual), training_precision(G):
        for step in range(cfg.steps):
            if cancel is not None and cancel():
                raise Cancelled(f"inversion cancelled at step {step} of {cfg.steps}")
            t = step / cfg.steps
            for g in opt.param_groups:
                g["lr"] = g["base"] * _schedule(t)
            noise_scale = w_std * cfg.noise * max(0.0, 1.0 - t / 0.75) ** 2 if cfg.optimize_latent else 0.0
            noise = torch.randn(w_opt.shape, generator=noise_gen, device=device) * noise_scale
            ws = (w_opt + noise).expand(1, 28, -1) if rows == 1 else w_opt + noise
            c = camera_c(angles)
            image = G.synthesis(ws, c, verts)["image"]
            parts = losses(image)
            loss = total(parts)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append({"total": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}})
            if progress is not None:
                progress(
                    {
                        "stage": "invert photo",
                        "step": step + 1,
                        "total": cfg.steps,
                        "loss": history[-1]["total"],
                        **{f"loss_{k}": v for k, v in history[-1].items() if k != "total"},
                    }
                )
        with torch.no_grad():
            ws = w_opt.detach().expand(1, 28, -1).clone() if rows == 1 else w_opt.detach().clone()
            c = camera_c(angles).detach()
            image = G.synthesis(ws, c, verts, uniforms=seeded_uniforms(G, cfg.seed, device))["image"]
            parts = losses(image)
            final = {"total": float(total(parts)), **{k: float(v) for k, v in parts.items()}}
    return InvertResult(ws, c, params.to("cpu"), final, history, image)


def seeded_uniforms(generator, seed: int, device):
    """Ray-sampling draws of one view from a seeded generator (a reproducible render)."""
    from faceedit_core.next3d.renderer import Uniforms

    g = torch.Generator().manual_seed(seed)
    R, rs = generator.neural_rendering_resolution, generator.render_settings
    strat = torch.rand(1, R * R, rs.depth_resolution, 1, generator=g).to(device)
    di = rs.depth_resolution_importance
    return Uniforms(strat, torch.rand(R * R, di, generator=g).to(device) if di > 0 else None)


def layer_checked(layer, params: FlameParams) -> FlameParams:
    """One photo's FLAME parameters, padded to the layer's widths and checked."""
    if params.batch_size != 1:
        raise InputError(f"the photo's FLAME parameters must be one set, got {params.batch_size}")
    return params.padded(layer.n_shape, layer.n_exp).validate(layer.n_shape, layer.n_exp)


def perceptual_files(models_dir: str | os.PathLike) -> tuple[Path | None, Path | None]:
    """(VGG16 weights, LPIPS linear layers) in DIR/perceptual/, or None each: the VGG file's name
    starts with "vgg16" (torchvision's vgg16-397923af.pth), the LPIPS file is "vgg.pth" (the LPIPS
    release's name) or has "lpips" in its name."""
    folder = Path(models_dir) / "perceptual"
    files = (
        sorted(p for p in folder.glob("*") if p.suffix in (".pth", ".pt", ".safetensors")) if folder.is_dir() else []
    )
    vgg = next((p for p in files if p.name.lower().startswith("vgg16")), None)
    lpips = next((p for p in files if p.stem.lower() == "vgg" or "lpips" in p.name.lower()), None)
    return vgg, lpips


def save_inversion(stem: str | os.PathLike, result: InvertResult, info: dict) -> Path:
    """Write an inversion as a latent file (latents.py) with its camera, FLAME params and losses."""
    from faceedit_core.paper.latents import save_latent

    return save_latent(
        stem,
        result.ws,
        {**info, "source": "photo inversion", "losses": result.losses, "steps": len(result.history)},
        c=result.c,
        params=result.params,
    )
