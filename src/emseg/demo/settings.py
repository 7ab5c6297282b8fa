"""Settings of one demo run (validated; saved next to the report as demo_settings.json)."""

from __future__ import annotations

from pydantic import Field, model_validator

from emseg.config_base import StrictConfig
from emseg.errors import ConfigError


class DemoSettings(StrictConfig):
    """Sizes, training budget and seeds of `emseg demo` (defaults: about 8 minutes on 2 CPU cores)."""

    config_name = "demo settings"
    renamed_keys = {"minutes": "max_minutes"}

    shape: tuple[int, int, int] = (96, 256, 256)  #: synthetic volume, voxels (z, y, x)
    voxel_size: float = Field(5.0, gt=0)  #: nm, isotropic (the voxel size of the bundled model's training data)
    mito_density: float = Field(1.0, gt=0)  #: scales the number of synthetic mitochondria
    block: int = Field(64, ge=16)  #: edge of an annotated block, voxels
    train_blocks: int = Field(3, ge=1)  #: blocks with simulated loose annotation
    stroke_planes: int = Field(4, ge=1)  #: annotated planes per block (then graph cut)
    fmaps: int = Field(8, ge=1)  #: first-level feature maps of the demo's 3D U-Net
    output_shape: int = Field(32, ge=4)  #: training output box edge, voxels
    max_minutes: float = Field(4.0, gt=0)  #: training wall-clock budget
    iterations: int = Field(100_000, gt=0)  #: training iteration cap
    validate_every: int = Field(25, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    num_workers: int = Field(1, ge=0)  #: data-loader processes during training
    min_size_nm3: float = Field(5e5, ge=0)  #: post-processing size filter
    seed: int = 0
    device: str = "auto"

    @model_validator(mode="after")
    def _fits(self) -> "DemoSettings":
        z, y, x = self.shape
        if min(self.shape) < self.block:
            raise ConfigError(f"demo volume {self.shape} is smaller than one annotated block ({self.block}³ voxels)")
        grid = (y // self.block) * (x // self.block)
        if grid < self.train_blocks + 1:
            raise ConfigError(f"demo volume {self.shape} holds {grid} blocks of {self.block}³ in one z layer; "
                              f"{self.train_blocks} training blocks and 1 validation block need more")
        return self
