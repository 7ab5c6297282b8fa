"""Networks (registered by name), checkpoints, normalisation and bundled models."""

from __future__ import annotations

from pathlib import Path

from emseg.models.checkpoint import LoadedModel, load_checkpoint, read_checkpoint, save_checkpoint, slim_checkpoint
from emseg.models.normalization import normalize, unit_scale
from emseg.models.registry import available, build, register
from emseg.models.resnet import ResNet
from emseg.models.unet2d import UNetResNet2D
from emseg.models.unet3d import UNet3D

register("unet3d")(UNet3D)
register("unet2d_resnet")(UNetResNet2D)

BUNDLED_DIR = Path(__file__).parent / "bundled"


def bundled() -> list[str]:
    """Names of the models shipped inside the package (``<name>.pt`` in models/bundled)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.pt"))


def load(name_or_path: str, device: str = "cpu") -> LoadedModel:
    """A bundled model by name (``"mito"``) or a checkpoint path."""
    candidate = BUNDLED_DIR / f"{name_or_path}.pt"
    if candidate.exists():
        return load_checkpoint(candidate, device)
    if Path(name_or_path).exists() or "/" in name_or_path or name_or_path.endswith(".pt"):
        return load_checkpoint(name_or_path, device)
    from emseg.errors import ConfigError

    raise ConfigError(f"no bundled model named {name_or_path!r} (bundled: {', '.join(bundled()) or 'none'}) "
                      "and no checkpoint file at that path")


__all__ = ["LoadedModel", "ResNet", "UNet3D", "UNetResNet2D", "available", "build", "bundled", "load", "load_checkpoint",
           "normalize",
           "read_checkpoint", "register", "save_checkpoint", "slim_checkpoint", "unit_scale"]
