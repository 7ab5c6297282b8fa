"""Training 3D U-Nets from loose annotations: data config, sampling, augmentation, loss, validation, checkpoints."""
