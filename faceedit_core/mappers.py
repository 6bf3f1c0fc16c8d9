"""Dual Mappers (paper Eq. 5, 6): residual edits of Next3D's ws and of the FLAME expression.

The Texture Mapper predicts dw for the configured ws levels, the Emotion Mapper predicts dpsi;
each attends to the other's input (cross-attention, queries from its own input). Switches turn
off either branch or the cross-attention (the paper's ablations). Final layers start at zero,
so an untrained mapper set is the identity edit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.storage.records import Record, bounded


@dataclass
class MapperConfig(Record):
    RECORD = "mapper config"
    n_exp: int = bounded(100, 1, 400)  # FLAME expression coefficients psi [B, n_exp]
    w_dim: int = bounded(512, 1, 1024)
    texture_levels: tuple[int, ...] = tuple(range(14, 28))  # ws levels the Texture Mapper edits
    texture_branch: bool = True
    emotion_branch: bool = True
    cross_attention: bool = True
    hidden: int = bounded(256, 1, 4096)
    attn_dim: int = bounded(128, 1, 1024)
    psi_tokens: int = bounded(8, 1, 64)  # psi is embedded as this many tokens for attention
    layers: int = bounded(4, 1, 16)

    @classmethod
    def from_dict(cls, d: dict) -> "MapperConfig":
        """A config from its dict (a stored manifest's), each field checked against its bounds
        before any network is built from it; InputError names the field."""
        config = super().from_dict(d)
        for name in ("texture_branch", "emotion_branch", "cross_attention"):
            if not isinstance(getattr(config, name), bool):
                raise InputError(f"mapper config '{name}' must be true or false")
        levels = config.texture_levels
        if (
            not isinstance(levels, (list, tuple))
            or len(set(levels)) != len(levels)
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < MAX_WS_LEVELS for v in levels)
        ):
            raise InputError(f"mapper config 'texture_levels' must be distinct ws levels in [0, {MAX_WS_LEVELS})")
        config.texture_levels = tuple(levels)
        return config


MAX_WS_LEVELS = 64  # Next3D at 512 px has 28


def mlp(n_in: int, n_hidden: int, n_out: int, layers: int) -> nn.Sequential:
    """LeakyReLU MLP whose last layer starts at zero (the residual starts at zero)."""
    mods: list[nn.Module] = []
    width = n_in
    for _ in range(layers - 1):
        mods += [nn.Linear(width, n_hidden), nn.LeakyReLU(0.2)]
        width = n_hidden
    last = nn.Linear(width, n_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*mods, last)


class CrossAttention(nn.Module):
    """softmax(Q K^T / sqrt(d)) V with Q from `query` tokens [B,Tq,Dq], K,V from `context` [B,Tc,Dc]."""

    def __init__(self, d_query: int, d_context: int, d_attn: int):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d_query, d_attn), nn.Linear(d_context, d_attn), nn.Linear(d_context, d_attn)
        self.scale = 1.0 / math.sqrt(d_attn)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attn = torch.softmax(self.q(query) @ self.k(context).transpose(1, 2) * self.scale, dim=-1)
        return attn @ self.v(context)  # [B,Tq,d_attn]


class DualMappers(nn.Module):
    """forward(ws [B,L,w_dim] or None, psi [B,n_exp]) -> (dws [B,L,w_dim] or None, dpsi [B,n_exp])."""

    def __init__(self, config: MapperConfig = MapperConfig()):
        super().__init__()
        self.config = c = config
        if not (c.texture_branch or c.emotion_branch):
            raise ValueError("at least one of texture_branch / emotion_branch must be on")
        use_attn = c.cross_attention and c.texture_branch and c.emotion_branch
        self.use_attention = use_attn
        if use_attn:
            self.psi_embed = nn.Linear(c.n_exp, c.psi_tokens * c.attn_dim)
            self.tex_attn = CrossAttention(c.w_dim, c.attn_dim, c.attn_dim)  # queries from w
            self.emo_attn = CrossAttention(c.attn_dim, c.w_dim, c.attn_dim)  # queries from psi
        extra = c.attn_dim if use_attn else 0
        if c.texture_branch:
            self.texture = nn.ModuleList([mlp(c.w_dim + extra, c.w_dim, c.w_dim, c.layers) for _ in c.texture_levels])
        if c.emotion_branch:
            self.emotion = mlp(c.n_exp + c.psi_tokens * extra, c.hidden, c.n_exp, c.layers)

    def forward(self, ws: torch.Tensor | None, psi: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        c = self.config
        B = psi.shape[0]
        levels = list(c.texture_levels)
        if c.texture_branch and ws is None:
            raise ValueError("the texture branch needs ws [B,L,w_dim]")
        psi_tok = self.psi_embed(psi).view(B, c.psi_tokens, c.attn_dim) if self.use_attention else None
        w_sel = ws[:, levels] if c.texture_branch else None
        dws = None
        if c.texture_branch:
            ctx = self.tex_attn(w_sel, psi_tok) if self.use_attention else None
            dws = torch.zeros_like(ws)
            for i, level in enumerate(levels):
                inp = w_sel[:, i] if ctx is None else torch.cat([w_sel[:, i], ctx[:, i]], dim=1)
                dws[:, level] = self.texture[i](inp)
        if c.emotion_branch:
            inp = psi
            if self.use_attention:
                inp = torch.cat([psi, self.emo_attn(psi_tok, w_sel).reshape(B, -1)], dim=1)
            dpsi = self.emotion(inp)
        else:
            dpsi = torch.zeros_like(psi)
        return dws, dpsi


def apply_mappers(
    mapper_sets: list[tuple[DualMappers, float]], ws: torch.Tensor | None, psi: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Compositional editing: w' = w + sum_i s_i dw_i, psi' = psi + sum_i s_i dpsi_i.

    Each mapper set sees the unedited (w, psi); intensities s_i scale its residuals.
    """
    ws_out, psi_out = ws, psi
    for mapper, intensity in mapper_sets:
        dws, dpsi = mapper(ws, psi)
        psi_out = psi_out + intensity * dpsi
        if dws is not None:
            ws_out = ws_out + intensity * dws
    return ws_out, psi_out


@dataclass
class ConditionedMapperConfig(Record):
    """The preview tier's Emotion Mapper conditioned on an AU target (one network per head).

    n_exp: expression coefficients it edits (a prefix of the head's); n_target: AU channels of the
    target vector (au.critic.CHANNELS); n_pose_in: pose values it reads (jaw 3 + eyes 6);
    n_identity: identity values it reads (au.objective.AUObjective.identity; 0: none, mappers of
    MAPPER_VERSION 2 and earlier); jaw_max / gaze_max: the largest jaw rotation (x open, y sideways)
    and eye rotation (x pitch, y yaw) one application adds, in radians."""

    RECORD = "conditioned mapper config"
    n_exp: int = bounded(50, 1, 400)
    n_target: int = bounded(35, 1, 256)
    n_pose_in: int = bounded(9, 9, 9)
    n_identity: int = bounded(0, 0, 1024)
    hidden: int = bounded(256, 1, 4096)
    layers: int = bounded(4, 1, 16)
    jaw_max: float = bounded(0.5, 0.0, math.pi)
    gaze_max: float = bounded(0.5, 0.0, math.pi)


class ConditionedMapper(nn.Module):
    """forward(psi [B,n_exp], pose [B,9] (jaw 3, eyes 6), identity [B,n_identity], target [B,n_target]) ->
    (dpsi [B,n_exp], djaw [B,2] (x, y rotation), dgaze [B,2] (x, y rotation of both eyes)).

    The residual is g(psi, pose, identity, target) - g(psi, pose, identity, 0): an empty target edits
    nothing, exactly, whatever the weights; the last layer starts at zero, so an untrained mapper is the identity."""

    def __init__(self, config: ConditionedMapperConfig = ConditionedMapperConfig()):
        super().__init__()
        self.config = c = config
        self.net = mlp(c.n_exp + c.n_pose_in + c.n_identity + c.n_target, c.hidden, c.n_exp + 4, c.layers)
        # the identity's columns start at zero: an untrained mapper is identity-blind, as mappers were
        # before they read it, and training adds where the identity matters (how far to close an eye)
        first = c.n_exp + c.n_pose_in
        nn.init.zeros_(self.net[0].weight[:, first : first + c.n_identity])
        # a linear path from the target: each AU channel's own direction, learnt first; the MLP
        # adds how it depends on the face and how actions combine
        self.direct = nn.Linear(c.n_target, c.n_exp + 4, bias=False)
        nn.init.zeros_(self.direct.weight)

    def _g(self, face: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([face, target], dim=1)) + self.direct(target)

    def forward(
        self, psi: torch.Tensor, pose: torch.Tensor, identity: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.config
        if identity.shape[1] != c.n_identity:
            raise InputError(f"the mapper reads {c.n_identity} identity values ('n_identity'), got {identity.shape[1]}")
        face = torch.cat([psi, 5.0 * pose, identity], dim=1)
        # two passes of the same shape (not one stacked batch): a row's result then depends only on its
        # inputs, so an empty target's row cancels bit for bit (a stacked GEMM may round rows differently)
        raw_on, raw_off = self._g(face, target), self._g(face, torch.zeros_like(target))
        dpsi = raw_on[:, : c.n_exp] - raw_off[:, : c.n_exp]
        limit = torch.tensor([c.jaw_max, c.jaw_max, c.gaze_max, c.gaze_max], device=psi.device, dtype=psi.dtype)
        dpose = limit * (torch.tanh(raw_on[:, c.n_exp :]) - torch.tanh(raw_off[:, c.n_exp :]))
        return dpsi, dpose[:, :2], dpose[:, 2:]
