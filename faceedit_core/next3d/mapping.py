"""StyleGAN2 mapping network with camera conditioning: `(z [B,z_dim], c [B,c_dim]) -> ws [B,num_ws,w_dim]`."""

from __future__ import annotations

import torch
from torch import nn

from faceedit_core.errors import InputError
from faceedit_core.next3d.layers import FullyConnectedLayer, normalize_2nd_moment


class MappingNetwork(nn.Module):
    """z and the embedded camera `c` are each normalised, concatenated (z first), sent through
    `num_layers` lrelu layers (lr multiplier 0.01) and broadcast to `num_ws` rows.

    Truncation: rows `[:truncation_cutoff]` (all rows when None) become
    `w_avg + psi * (w - w_avg)`. Next3D uses cutoff 14, which leaves the 14 texture rows alone.
    """

    def __init__(
        self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2, lr_multiplier: float = 0.01
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        embed_features = w_dim if c_dim > 0 else 0
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        features = [z_dim + embed_features] + [w_dim] * num_layers
        for idx in range(num_layers):
            self.add_module(
                f"fc{idx}",
                FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier),
            )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InputError(f"z must have shape [B,{self.z_dim}], got {list(z.shape)}")
        if self.c_dim > 0 and (c.ndim != 2 or c.shape != (z.shape[0], self.c_dim)):
            raise InputError(f"c must have shape [{z.shape[0]},{self.c_dim}], got {list(c.shape)}")
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
            head = self.w_avg.lerp(ws[:, :cut], truncation_psi)
            ws = torch.cat([head, ws[:, cut:]], dim=1)
        return ws
