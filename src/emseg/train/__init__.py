"""Training 3D U-Nets from loose annotations: data config, sampling, augmentation, loss, validation, checkpoints.

Names are imported lazily so that `emseg --help` does not pay for torch.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {"TrainConfig": "config", "load_config": "config", "parse_config": "config",
            "Trainer": "loop", "train": "loop", "finetune": "loop"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"emseg.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'emseg.train' has no attribute {name!r}")
