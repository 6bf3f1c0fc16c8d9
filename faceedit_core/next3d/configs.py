"""Next3D generator configurations as data.

- `full`: the release (next3d_ffhq_512.pkl): channel_base 32768, channel_max 512, 64^2 neural
  rendering, 48 + 48 samples per ray; its state dict has the 674 names and shapes of
  `../shared/reference/next3d_full_state_dict_keys.txt` (for the FLAME topology).
- `golden`: the small configuration the golden vectors were recorded with (README §2):
  channel_base 2048, channel_max 32, 32^2 neural rendering.
- `tiny`: test-sized (a training step, two renders and a backward pass, in a fraction of a
  second on CPU): few channels, thin super-resolution blocks, 32^2 texture and planes, 16^2
  mouth crop, 16^2 neural rendering, 8 + 8 samples, 64^2 output. Same code paths and the same
  28 ws as the release; only the sizes differ.

Sizes are data: `plane_resolution` (the UV neural texture and the tri-plane, 256 in the
release), `mouth_resolution` (the mouth crop the mouth StyleUNet reads, 64) and
`output_resolution` (the super-resolution's output, 512; it reads the neural rendering resized
to a quarter of it). A manifest written before these fields existed gets the release values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from faceedit_core.errors import InputError
from faceedit_core.next3d.renderer import RenderSettings


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
    plane_resolution: int = 256
    mouth_resolution: int = 64
    output_resolution: int = 512

    def validate(self) -> None:
        if not 4 <= self.neural_rendering_resolution <= 512:
            raise InputError(
                f"neural_rendering_resolution must be within 4..512, got {self.neural_rendering_resolution}"
            )
        for name, low, high in (
            ("plane_resolution", 32, 256),
            ("mouth_resolution", 8, self.plane_resolution),
            ("output_resolution", 16, 2048),
        ):
            value = getattr(self, name)
            if not (isinstance(value, int) and low <= value <= high and value & (value - 1) == 0):
                raise InputError(f"{name} must be a power of two within {low}..{high}, got {value}")
        self.render.validate()

    def synthesis_kwargs(self) -> dict:
        return dict(
            channel_base=self.channel_base,
            channel_max=self.channel_max,
            num_fp16_res=self.num_fp16_res,
            conv_clamp=self.conv_clamp,
            fused_modconv_default=self.fused_modconv_default,
        )

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
    "tiny": Next3DConfig(
        "tiny",
        channel_base=512,
        channel_max=8,
        neural_rendering_resolution=16,
        render=RenderSettings(depth_resolution=8, depth_resolution_importance=8),
        sr_block_channels=(16, 8),
        plane_resolution=32,
        mouth_resolution=16,
        output_resolution=64,
    ),
}


def get_config(name: str | Next3DConfig) -> Next3DConfig:
    if isinstance(name, Next3DConfig):
        return name
    if name not in CONFIGS:
        raise InputError(f"unknown Next3D configuration {name!r} (one of {sorted(CONFIGS)})")
    return CONFIGS[name]
