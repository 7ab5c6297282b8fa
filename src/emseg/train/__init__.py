"""Training 3D U-Nets from loose annotations: data config, sampling, augmentation, loss, validation, checkpoints."""

from emseg.train.config import TrainConfig, load_config, parse_config
from emseg.train.loop import Trainer, finetune, train

__all__ = ["TrainConfig", "Trainer", "finetune", "load_config", "parse_config", "train"]
