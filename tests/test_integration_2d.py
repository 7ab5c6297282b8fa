"""The ResNet 2D U-Net (pretraining issue) runs through the blockwise predictor (stack and
orthoplane modes) from a checkpoint, as `emseg predict` would."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emseg.io import array_volume, open_volume
from emseg.models import build, save_checkpoint
from emseg.predict.run import predict


@pytest.mark.parametrize("mode", ["stack", "orthoplane"])
def test_resnet_unet2d_checkpoint_predicts_blockwise(tmp_path, mode):
    torch.manual_seed(0)
    model = build("unet2d_resnet", arch="resnet18", width=8, halo=16)
    ckpt = save_checkpoint(tmp_path / "m.pt", model, architecture="unet2d_resnet",
                           model_config={"arch": "resnet18", "width": 8, "halo": 16}, voxel_size=(8, 8, 8),
                           normalization={"mean": 0.5, "std": 0.2})
    raw = np.random.default_rng(0).integers(0, 255, (16, 48, 48), dtype=np.uint8)
    result = predict(str(ckpt), array_volume(raw, (8, 8, 8)), tmp_path / "p.ome.zarr", mode=mode,
                     device="cpu", block_shape=(16, 32, 32), chunks=16)
    assert result.complete
    out = open_volume(tmp_path / "p.ome.zarr")
    assert out.shape == raw.shape and out.dtype == np.uint8
    values = out[:, :, :]
    assert values.std() > 0  # a real, non-constant prediction was written everywhere
