"""Training configuration (YAML on disk, validated by pydantic, saved in every checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Union

import yaml
from pydantic import Field, field_validator

from emseg.config_base import StrictConfig
from emseg.errors import ConfigError

Roi = list[list[int]]  # [[z0, z1], [y0, y1], [x0, x1]] in voxels


class Source(StrictConfig):
    """One annotated volume: raw + labels (+ masks), optionally limited to an ROI."""

    config_name = "training source"

    name: str = ""
    raw: str
    labels: str
    label_values: Union[list[int], Literal["nonzero"]] = "nonzero"
    sample_mask: str | None = None
    metric_mask: str | None = None
    exclusion_width: int | None = Field(default=None, ge=0)
    roi: Roi | None = None
    weight: float | None = Field(default=None, gt=0)
    voxel_size: list[float] | None = None

    @field_validator("roi")
    @classmethod
    def _roi_shape(cls, roi: Roi | None) -> Roi | None:
        if roi is not None and (len(roi) != 3 or any(len(r) != 2 or r[1] <= r[0] for r in roi)):
            raise ValueError("roi must be [[z0, z1], [y0, y1], [x0, x1]] with z0 < z1 etc.")
        return roi


class Augment(StrictConfig):
    mirror: bool = True
    transpose: bool = True
    elastic_probability: float = Field(default=0.5, ge=0, le=1)
    control_point_spacing: int = 32
    jitter_sigma: float = 2.0
    rotate: bool = True
    intensity_scale: float = 0.15
    intensity_shift: float = 0.15
    noise_probability: float = Field(default=0.0, ge=0, le=1)
    blur_probability: float = Field(default=0.0, ge=0, le=1)


class Sampling(StrictConfig):
    min_foreground: float = 0.05
    reject_probability: float = Field(default=0.9, ge=0, le=1)
    min_annotated: float = 0.5


class TrainConfig(StrictConfig):
    """Everything `emseg train` needs; see docs/training.md."""

    config_name = "training config"

    @field_validator("voxel_size")
    @classmethod
    def _voxel_size(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (len(value) != 3 or any(v <= 0 for v in value)):
            raise ValueError("voxel_size must be three positive numbers (z, y, x) in nm")
        return value

    @field_validator("output_shape")
    @classmethod
    def _output_shape(cls, value: list[int]) -> list[int]:
        if len(value) != 3 or any(v <= 0 for v in value):
            raise ValueError(f"output_shape must be three positive sizes (z, y, x) in voxels, got {value}")
        return value

    organelle: str = "object"
    model: dict = Field(default_factory=lambda: {"architecture": "unet3d"})
    output_shape: list[int] = [44, 44, 44]
    voxel_size: list[float] | None = None  # the model's working voxel size (nm, z y x); sources are resampled to it
    train: list[Source]
    validation: list[Source] = []
    iterations: int = Field(default=10000, gt=0)
    batch_size: int = Field(default=1, gt=0)
    learning_rate: float = Field(default=1e-4, gt=0)
    weight_decay: float = 0.0
    loss: Literal["bce", "bce+dice"] = "bce"
    # BCE with foreground and background weighing half each (ASEM); false: plain BCE. Unset: true,
    # or, when fine-tuning, what the base model was trained with
    class_balance: bool | None = None
    validate_every: int = Field(default=500, gt=0)
    checkpoint_every: int = Field(default=500, gt=0)
    max_minutes: float | None = None
    threshold: Union[float, Literal["auto"]] = 0.5
    lr_schedule: Literal["constant", "cosine"] = "constant"
    # bf16: forward and backward under bfloat16 autocast (weights and optimizer stay float32); about 2.4x
    # faster on CPUs with AVX512-BF16 or AMX and on recent GPUs, much slower on CPUs without them
    precision: Literal["fp32", "bf16"] = "fp32"
    augment: Augment = Augment()
    sampling: Sampling = Sampling()
    normalization: dict[str, float] | None = None
    num_workers: int = Field(default=1, ge=0)
    in_memory_limit_gb: float = 4.0
    seed: int = 0
    output_dir: str = "runs/model"
    device: str = "auto"


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a training YAML; relative paths are taken from the YAML's folder."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: training config not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    config = parse_config(raw, str(path))
    return resolve_paths(config, path.parent)


def parse_config(raw: dict, where: str = "config") -> TrainConfig:
    """Validate a dict; errors name the source (train[1] …) and the key, on one line."""
    return TrainConfig.from_dict(raw, where, label=lambda loc: describe_location(raw, loc))


def describe_location(raw: dict, loc: tuple) -> str:
    """``train[1] 'cell2' → weight`` style location for error messages."""
    parts = []
    if len(loc) >= 2 and loc[0] in ("train", "validation") and isinstance(loc[1], int):
        name = ""
        try:
            name = raw[loc[0]][loc[1]].get("name", "")
        except (KeyError, IndexError, AttributeError, TypeError):
            pass
        parts.append(f"source {loc[0]}[{loc[1]}]" + (f" '{name}'" if name else ""))
        loc = loc[2:]
    parts += [str(p) for p in loc]
    return " → ".join(parts) if parts else "config"


def resolve_paths(config: TrainConfig, base: Path) -> TrainConfig:
    def fix(p: str | None) -> str | None:
        if p is None:
            return None
        file_part, sep, inner = p.partition(".h5:") if ".h5:" in p else (p, "", "")
        candidate = Path(file_part)
        if not candidate.is_absolute() and (base / candidate).exists():
            return str(base / candidate) + (sep + inner if sep else "")
        return p

    for source in [*config.train, *config.validation]:
        source.raw, source.labels = fix(source.raw), fix(source.labels)  # type: ignore[assignment]
        source.sample_mask, source.metric_mask = fix(source.sample_mask), fix(source.metric_mask)
    return config
