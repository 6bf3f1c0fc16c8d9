"""Next3D generator configurations as data.

- `full`: the release (next3d_ffhq_512.pkl): channel_base 32768, channel_max 512, 64^2 neural
  rendering, 48 + 48 samples per ray; its state dict has the 674 names and shapes of
  `../shared/reference/next3d_full_state_dict_keys.txt` (for the FLAME topology).
- `golden`: the small configuration the golden vectors were recorded with (README §2):
  channel_base 2048, channel_max 32, 32^2 neural rendering.
- `tiny`: test-sized (a second or two per head and view on CPU): few channels, thin
  super-resolution blocks, 16^2 neural rendering, 12 + 12 samples. Same code paths, the same
  28 ws and the same fixed sizes (256^2 texture and planes, 64^2 mouth crop, 512^2 output) as
  the release: those sizes set most of its cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..errors import InputError
from .renderer import RenderSettings


@dataclass(frozen=True)
class Next3DConfig:
    name: str
    channel_base: int
    channel_max: int
    neural_rendering_resolution: int
    render: RenderSettings = field(default_factory=RenderSettings)
    sr_block_channels: tuple[int, int] = (256, 128)
    sr_num_fp16_res: int = 4
    sr_antialias: bool = True
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    fused_modconv_default: bool | str = "inference_only"
    mapping_layers: int = 2
    decoder_lr_mul: float = 1.0
    c_scale: float = 1.0
    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 25

    def validate(self) -> None:
        if not 4 <= self.neural_rendering_resolution <= 512:
            raise InputError(f"neural_rendering_resolution must be within 4..512, got {self.neural_rendering_resolution}")
        self.render.validate()

    def synthesis_kwargs(self) -> dict:
        return dict(channel_base=self.channel_base, channel_max=self.channel_max, num_fp16_res=self.num_fp16_res,
                    conv_clamp=self.conv_clamp, fused_modconv_default=self.fused_modconv_default)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sr_block_channels"] = list(self.sr_block_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Next3DConfig":
        d = dict(d)
        d["render"] = RenderSettings(**d.get("render", {}))
        d["sr_block_channels"] = tuple(d.get("sr_block_channels", (256, 128)))
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown Next3D config fields {sorted(unknown)}")
        return cls(**d)

    def with_(self, **changes) -> "Next3DConfig":
        return replace(self, **changes)


CONFIGS = {
    "full": Next3DConfig("full", channel_base=32768, channel_max=512, neural_rendering_resolution=64),
    "golden": Next3DConfig("golden", channel_base=2048, channel_max=32, neural_rendering_resolution=32),
    "tiny": Next3DConfig("tiny", channel_base=512, channel_max=8, neural_rendering_resolution=16,
                         render=RenderSettings(depth_resolution=12, depth_resolution_importance=12),
                         sr_block_channels=(16, 8)),
}


def get_config(name: str | Next3DConfig) -> Next3DConfig:
    if isinstance(name, Next3DConfig):
        return name
    if name not in CONFIGS:
        raise InputError(f"unknown Next3D configuration {name!r} (one of {sorted(CONFIGS)})")
    return CONFIGS[name]
