"""The Next3D generator (the release's TriPlaneGenerator), assembled from this package's parts.

    ws = G.mapping(z [B,512], c [B,25], truncation_psi, truncation_cutoff)      # [B,28,512]
    planes = G.planes(ws, verts [B,V+68,3])     # view independent: once per (w, mesh)
    out = G.render_view(planes, ws, c [N,25])   # image [N,3,512,512], image_raw, image_depth

(Sizes as in the release; the configuration sets them: planes and texture P^2 =
plane_resolution, mouth crop mouth_resolution^2, image output_resolution^2.)

ws[:, :14] drive the static tri-plane, the mouth and blending StyleUNets and the
super-resolution (its last row); ws[:, 14:] drive the UV neural texture. Plane assembly:
the texture is rasterised into four orthographic views (`neural_raster`); the front view gets
the mouth StyleUNet pasted into the lip box and is smoothed by neural blending; slots are
[front, yaw+90 + yaw-90 (summed), top], alphas [front, (alpha_yaw+90 > 0) twice (the release's
quirk), top]; the tri-plane is `features * alpha + static * (1 - alpha)`.

Everything is differentiable with respect to ws and the vertices (barycentrics of this
project's rasteriser); the mouth box and the hole fill are decided without gradients, as in
the release.

`ws` may also be given as its two halves `(ws[:, :14], ws[:, 14:])` (`WsHalves`, `split_ws`):
training edits only some rows, and a half that is the unedited, gradient-free tensor keeps the
networks that read only it (the static tri-plane backbone for texture-only edits) out of the
backward pass; a single [B,28,512] tensor that requires grad would pull all of them in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.next3d import neural_raster as nr
from faceedit_core.next3d.configs import Next3DConfig, get_config
from faceedit_core.next3d.renderer import ImportanceRenderer, OSGDecoder, Uniforms, camera_from_c, sample_rays
from faceedit_core.next3d.stylegan2 import StyleGAN2Backbone
from faceedit_core.next3d.styleunet import StyleUNet
from faceedit_core.next3d.superres import SuperresolutionHybrid8XDC
from faceedit_core.next3d.topology import Next3DTopology, resize_mask

N_LANDMARKS = 68
NUM_WS = 28
HALF_WS = NUM_WS // 2  # ws[:, :14]: static tri-plane, mouth, blending, super-resolution; ws[:, 14:]: texture
PLANE_CHANNELS = 32
TOPOLOGY_BUFFERS = ("dense_faces", "faces", "raw_uvcoords", "uvcoords", "uvfaces", "face_uvcoords")


@dataclass
class Next3DPlanes:
    """planes [B,3,32,P,P] (P = plane_resolution, 256 in the release): the blended tri-plane the
    renderer reads. `parts` holds the intermediates (texture, views, alphas, mouth, ...) when
    asked for with keep_parts=True."""

    planes: torch.Tensor
    parts: dict = field(default_factory=dict)


WsHalves = tuple  # (eg3d_ws [B,14,512], texture_ws [B,14,512])


def split_ws(ws: torch.Tensor | WsHalves, w_dim: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """ws [B,28,w_dim] or its halves (eg3d_ws [B,14,w_dim], texture_ws [B,14,w_dim]) -> the halves."""
    if isinstance(ws, (tuple, list)):
        if len(ws) != 2:
            raise InputError(f"ws halves must be a pair (ws[:, :14], ws[:, 14:]), got {len(ws)} items")
        eg3d, texture = ws
        for name, half in (("ws[:, :14]", eg3d), ("ws[:, 14:]", texture)):
            if half.dim() != 3 or half.shape[1:] != (HALF_WS, w_dim) or half.shape[0] != eg3d.shape[0]:
                raise InputError(f"{name} must have shape [B,{HALF_WS},{w_dim}], got {list(half.shape)}")
        return eg3d, texture
    if ws.dim() != 3 or ws.shape[1:] != (NUM_WS, w_dim):
        raise InputError(f"ws must have shape [B,{NUM_WS},{w_dim}], got {list(ws.shape)}")
    return ws[:, :HALF_WS], ws[:, HALF_WS:]


def edited_halves(ws: torch.Tensor, dws: torch.Tensor | None, levels) -> WsHalves:
    """w + dw as halves, where a half with no edited level is `ws`'s own (gradient-free) rows.

    ws [B,28,512] (no grad), dws [B,28,512] (zero outside `levels`) or None -> (eg3d_ws, texture_ws)."""
    eg3d, texture = ws[:, :HALF_WS], ws[:, HALF_WS:]
    if dws is None:
        return eg3d, texture
    levels = [int(v) for v in levels]
    if any(v < HALF_WS for v in levels):
        eg3d = eg3d + dws[:, :HALF_WS]
    if any(v >= HALF_WS for v in levels):
        texture = texture + dws[:, HALF_WS:]
    return eg3d, texture


def prepare_vertices(source) -> torch.Tensor:
    """FLAME output (`.vertices [B,V,3]`, `.landmarks [B,68,3]`) or a (verts, landmarks) pair ->
    the generator input [B,V+68,3] in metres.

    The release was trained on meshes with the global head rotation zeroed (the head pose is in
    the camera): pass a FLAME output computed that way (see `flame_inputs`)."""
    if isinstance(source, (tuple, list)):
        verts, lmks = source
    else:
        verts, lmks = source.vertices, source.landmarks
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise InputError(f"vertices must have shape [B,V,3], got {list(verts.shape)}")
    if lmks.shape != (verts.shape[0], N_LANDMARKS, 3):
        raise InputError(f"landmarks must have shape [{verts.shape[0]},68,3], got {list(lmks.shape)}")
    return torch.cat([verts, lmks.to(verts.dtype)], dim=1)


def flame_inputs(flame_layer, params) -> torch.Tensor:
    """FlameParams -> generator input [B,V+68,3]: FLAME posed with global_pose and transl zeroed
    (shape, expression, jaw, neck and eyes kept), as Next3D's training data was prepared."""
    neutral = params.replace(global_pose=torch.zeros_like(params.global_pose), transl=torch.zeros_like(params.transl))
    return prepare_vertices(flame_layer(neutral))


class Next3DGenerator(nn.Module):
    """Next3D's TriPlaneGenerator. Submodules and buffers carry the release's state-dict names."""

    def __init__(self, config: Next3DConfig | str, topology: Next3DTopology):
        super().__init__()
        cfg = self.config = get_config(config)
        cfg.validate()
        P, M = cfg.plane_resolution, cfg.mouth_resolution
        for name, value in topology.buffers().items():
            self.register_buffer(name, value)
        self.register_buffer("uv_mask", resize_mask(topology.uv_mask), persistent=False)
        kw = cfg.synthesis_kwargs()
        z, c, w = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.texture_backbone = StyleGAN2Backbone(z, c, w, P, PLANE_CHANNELS, mapping_layers=cfg.mapping_layers, **kw)
        self.mouth_backbone = StyleUNet(
            z,
            c,
            w,
            P,
            PLANE_CHANNELS,
            cond_channels=PLANE_CHANNELS,
            in_size=M,
            final_size=4,
            num_cond_res=M,
            mapping_layers=cfg.mapping_layers,
            **kw,
        )
        self.backbone = StyleGAN2Backbone(
            z, c, w, P, 3 * PLANE_CHANNELS, mapping_ws=NUM_WS, mapping_layers=cfg.mapping_layers, **kw
        )
        self.superresolution = SuperresolutionHybrid8XDC(
            PLANE_CHANNELS,
            cfg.output_resolution,
            sr_num_fp16_res=cfg.sr_num_fp16_res,
            sr_antialias=cfg.sr_antialias,
            fused_modconv_default=cfg.fused_modconv_default,
            w_dim=w,
            block_channels=cfg.sr_block_channels,
        )
        self.decoder = OSGDecoder(PLANE_CHANNELS, 64, PLANE_CHANNELS, lr_multiplier=cfg.decoder_lr_mul)
        self.neural_blending = StyleUNet(
            z,
            c,
            w,
            P,
            PLANE_CHANNELS,
            cond_channels=PLANE_CHANNELS,
            in_size=P,
            final_size=P // 8,
            num_cond_res=P,
            mapping_layers=cfg.mapping_layers,
            **kw,
        )
        self.renderer = ImportanceRenderer()
        self.neural_rendering_resolution = cfg.neural_rendering_resolution
        self.render_settings = cfg.render

    # ------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls, name: str | Next3DConfig, topology: Next3DTopology | None = None, seed: int | None = 0
    ) -> "Next3DGenerator":
        """Random weights (StyleGAN2 initialisation, seeded) in eval mode; topology defaults to
        the demo head (FLAME layout with UVs, mask all ones)."""
        topology = topology or Next3DTopology.demo_head()
        if seed is None:
            return cls(name, topology).eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(name, topology).eval()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, uv_mask=None, cache: bool = True) -> "Next3DGenerator":
        """The release's `.pkl` (read without executing anything in it; converted once to a
        safetensors cache under FACEEDIT_HOME) or our own `<stem>.json` / `<stem>.safetensors`."""
        from faceedit_core.next3d.checkpoint import load_generator

        return load_generator(cls, Path(path), uv_mask=uv_mask, cache=cache)

    # ------------------------------------------------------------ mapping
    def mapping(
        self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        """z [B,512], conditioning camera c [B,25] -> ws [B,28,512]."""
        if c.dim() != 2 or c.shape[1] < self.config.c_dim:
            raise InputError(f"c must have shape [B,{self.config.c_dim}], got {list(c.shape)}")
        c = c[:, : self.config.c_dim]
        if self.config.c_scale != 1:
            c = c * self.config.c_scale
        return self.backbone.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)

    # ------------------------------------------------------------ view-independent part
    def _check_ws(self, ws: torch.Tensor | WsHalves) -> tuple[torch.Tensor, torch.Tensor]:
        return split_ws(ws, self.config.w_dim)

    def _check_planes_inputs(self, ws, verts, fragments) -> int:
        """Validate planes() inputs; -> V, the number of mesh vertices before the landmarks."""
        eg3d_ws, _ = self._check_ws(ws)
        B, n_min = eg3d_ws.shape[0], int(self.faces.max()) + 1
        n_mesh = verts.shape[1] - N_LANDMARKS if verts.dim() == 3 else -1
        if verts.dim() != 3 or verts.shape[0] != B or verts.shape[-1] != 3 or n_mesh < n_min:
            raise InputError(
                f"verts must have shape [{B},V+68,3] with V >= {n_min} "
                f"(mesh vertices, then 68 landmarks), got {list(verts.shape)}"
            )
        if not torch.isfinite(verts).all():
            raise InputError("verts contain NaN or Inf")
        P = self.config.plane_resolution
        size = (B, 4, P, P)
        if fragments is not None and (fragments.pix_to_face.shape != size or fragments.bary.shape != (*size, 3)):
            raise InputError(
                f"fragments must have pix_to_face [{B},4,{P},{P}] and bary [{B},4,{P},{P},3], got "
                f"{list(fragments.pix_to_face.shape)} and {list(fragments.bary.shape)}"
            )
        return n_mesh

    def planes(
        self,
        ws: torch.Tensor | WsHalves,
        verts: torch.Tensor,
        fragments: nr.PlaneFragments | None = None,
        keep_parts: bool = False,
        noise_mode: str = "const",
    ) -> Next3DPlanes:
        """ws [B,28,512] (or its halves, see split_ws), verts [B,V+68,3] (FLAME metres, landmarks
        last) -> Next3DPlanes.

        `fragments` replays recorded rasteriser outputs (else this project's rasteriser runs)."""
        n_mesh = self._check_planes_inputs(ws, verts, fragments)
        s = nr.view_coords(verts.to(torch.float32))
        P = self.config.plane_resolution
        boxes = nr.mouth_box(nr.landmarks_2d(s[:, 0, n_mesh:]), P)  # checks the input before any network runs
        eg3d_ws, texture_ws = self._check_ws(ws)
        B = eg3d_ws.shape[0]
        texture = self.texture_backbone.synthesis(_rows(texture_ws, self.texture_backbone), noise_mode=noise_mode)
        static = self.backbone.synthesis(_rows(eg3d_ws, self.backbone), noise_mode=noise_mode)
        static = static.view(B, 3, PLANE_CHANNELS, *static.shape[-2:])

        if fragments is None:
            fragments = nr.rasterize_views(s[:, :, :n_mesh], self.faces[0], P)
        views = nr.sample_views(texture, fragments, self.face_uvcoords[0], self.uv_mask)
        alpha = nr.fill_holes(views.alpha_prefill.flatten(0, 1)).view_as(views.alpha_prefill)
        front = views.rendering[:, 0]

        mouth_in = nr.crop_mouths(front, boxes, self.config.mouth_resolution)
        mouth = self.mouth_backbone.synthesis(mouth_in, _rows(eg3d_ws, self.mouth_backbone), noise_mode=noise_mode)
        stitched = nr.paste_mouths(front, mouth, boxes)
        blended_front = self.neural_blending.synthesis(
            stitched, _rows(eg3d_ws, self.neural_blending), noise_mode=noise_mode
        )

        features = torch.stack([blended_front, views.rendering[:, 1] + views.rendering[:, 2], views.rendering[:, 3]], 1)
        side = ((alpha[:, 1] > 0) | (alpha[:, 1] > 0)).to(alpha.dtype)  # the release reads yaw+90 twice
        alphas = torch.stack([alpha[:, 0], side, alpha[:, 3]], 1)  # [B,3,1,S,S]
        planes = features * alphas + static * (1 - alphas)
        parts = {}
        if keep_parts:
            parts = dict(texture=texture, static=static, fragments=fragments, views=views, alpha=alpha, mouth_box=boxes)
            parts.update(mouth_in=mouth_in, mouth=mouth, stitched=stitched, blend_out=blended_front)
            parts.update(feature_planes=features, alpha_planes=alphas)
        return Next3DPlanes(planes, parts)

    # ------------------------------------------------------------ per-camera part
    def render_view(
        self,
        planes: Next3DPlanes | torch.Tensor,
        ws: torch.Tensor | WsHalves,
        c: torch.Tensor,
        uniforms: Uniforms | None = None,
        neural_rendering_resolution: int | None = None,
    ) -> dict:
        """Planes of B heads, ws [B,28,512], cameras c [B,25] (or [N,25] for one head: every
        camera reuses the planes) -> dict(image [N,3,O,O] (O = output_resolution), image_raw [N,3,r,r],
        image_depth [N,1,r,r], feature_image [N,32,r,r], weights_sum [N,1,r,r])."""
        eg3d_ws, _ = self._check_ws(ws)
        tri = planes.planes if isinstance(planes, Next3DPlanes) else planes
        cam2world, intrinsics = camera_from_c(c.to(device=tri.device, dtype=torch.float32))
        if tri.shape[0] != eg3d_ws.shape[0] or (len(c) != tri.shape[0] and tri.shape[0] != 1):
            raise InputError(
                f"planes ({tri.shape[0]}), ws ({eg3d_ws.shape[0]}) and c ({len(c)}) need one batch size "
                "(or a single head with several cameras)"
            )
        if tri.shape[0] == 1 and len(c) > 1:
            views = [
                self.render_view(
                    tri, ws, c[i : i + 1], _camera_uniforms(uniforms, i, len(c)), neural_rendering_resolution
                )
                for i in range(len(c))
            ]
            return {k: torch.cat([v[k] for v in views]) for k in views[0]}
        R = int(neural_rendering_resolution or self.neural_rendering_resolution)
        if not 4 <= R <= 512:
            raise InputError(f"neural_rendering_resolution must be within 4..512, got {R}")
        origins, dirs = sample_rays(cam2world, intrinsics, R)
        feats, depth, wsum = self.renderer(tri, self.decoder, origins, dirs, self.render_settings, uniforms)
        N = len(c)
        feature_image = feats.permute(0, 2, 1).reshape(N, feats.shape[-1], R, R).contiguous()
        depth_image = depth.permute(0, 2, 1).reshape(N, 1, R, R)
        rgb = feature_image[:, :3]
        image = self.superresolution(rgb, feature_image, eg3d_ws, noise_mode="none")
        return {
            "image": image,
            "image_raw": rgb,
            "image_depth": depth_image,
            "feature_image": feature_image,
            "weights_sum": wsum.permute(0, 2, 1).reshape(N, 1, R, R),
        }

    def synthesis(self, ws: torch.Tensor | WsHalves, c: torch.Tensor, verts: torch.Tensor, **kwargs) -> dict:
        """planes then render_view; kwargs: fragments (planes), uniforms, neural_rendering_resolution."""
        frags = kwargs.pop("fragments", None)
        return self.render_view(self.planes(ws, verts, fragments=frags), ws, c, **kwargs)

    def turntable(self, ws: torch.Tensor, verts: torch.Tensor, c: torch.Tensor, **kwargs) -> dict:
        """One head (ws [1,28,512], verts [1,V+68,3]) seen by N cameras c [N,25]: the planes are
        computed once and reused for every camera."""
        if self._check_ws(ws)[0].shape[0] != 1:
            raise InputError(f"turntable renders one head, ws has batch {self._check_ws(ws)[0].shape[0]}")
        return self.render_view(self.planes(ws, verts), ws, c, **kwargs)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        verts: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        **kwargs,
    ) -> dict:
        """Mapping on c (conditioning = rendering camera here) then synthesis."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, c, verts, **kwargs)


def _rows(half_ws: torch.Tensor, net: nn.Module) -> torch.Tensor:
    """The first net.num_ws rows of a half of ws [B,14,512]: all 14 at the release's 256^2
    planes, fewer for smaller planes (2 log2(P) - 2); the 28 ws stay the interface."""
    return half_ws[:, : net.num_ws]


def _camera_uniforms(uniforms: Uniforms | None, i: int, n: int) -> Uniforms | None:
    """Camera i's share of uniforms drawn for n cameras (stratified [n,M,D,1], importance [n*M,D'])."""
    if uniforms is None:
        return None
    strat, imp = uniforms.stratified, uniforms.importance
    m = imp.shape[0] // n if imp is not None else 0
    return Uniforms(
        strat[i : i + 1] if strat is not None else None, imp[i * m : (i + 1) * m] if imp is not None else None
    )
