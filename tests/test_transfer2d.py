"""2D transfer: tiny pretrain → train2d (frozen) end to end, config errors, random init learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from test_pretrain import _one_thread, make_patch_store  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def synth_tifs(tmp_path_factory):
    import tifffile

    from emseg.synth import make_volume

    folder = tmp_path_factory.mktemp("synth2d")
    vol = make_volume((12, 64, 64), (8.0, 8.0, 8.0), seed=5)
    tifffile.imwrite(folder / "raw.tif", vol.raw)
    tifffile.imwrite(folder / "mito.tif", vol.mito.astype(np.uint8))
    return folder

def write_config(path, folder, **extra):
    cfg = {"train": {"image": str(folder / "raw.tif"), "labels": str(folder / "mito.tif"), "slices": "0:9"},
           "val": {"image": str(folder / "raw.tif"), "labels": str(folder / "mito.tif"), "slices": [9, 10, 11]},
           "arch": "resnet18", "width": 8, "iterations": 30, "batch_size": 4, "patch_size": 64,
           "device": "cpu", "scale": [0.3, 1.0], **extra}
    path.write_text(yaml.safe_dump(cfg))
    return path

@pytest.mark.timeout(120)
def test_pretrain_then_train2d_cli_frozen(tmp_path, synth_tifs):
    from emseg.cli import main
    from emseg.models import load_checkpoint

    store = make_patch_store(tmp_path / "p.zarr", n=24)
    enc = tmp_path / "enc.pt"
    assert main(["pretrain", str(store), "-o", str(enc), "--arch", "resnet18", "--width", "8", "--epochs", "1",
                 "--batch-size", "8", "--image-size", "32", "--queue-size", "32", "--device", "cpu"]) == 0
    config = write_config(tmp_path / "t.yaml", synth_tifs, init=str(enc), iterations=6)
    assert main(["train2d", str(config), "-o", str(tmp_path / "m.pt")]) == 0
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.architecture == "unet2d_resnet" and loaded.model.spatial_dims == 2
    assert loaded.training["frozen"] is True and 0 <= loaded.training["iou"] <= 1
    # the frozen encoder is exactly the pretrained one
    payload = torch.load(enc, weights_only=False)
    w = payload["state_dict"]["module.encoder_q.layer2.0.conv1.weight"]
    assert torch.equal(loaded.model.encoder.layer2[0].conv1.weight, w)
    assert loaded.normalization["mean"] == pytest.approx(payload["norms"][0])

@pytest.mark.timeout(120)
def test_random_init_learns_synthetic_mito(tmp_path, synth_tifs):
    from emseg.train.transfer2d import Transfer2DConfig, train2d

    cfg = Transfer2DConfig(**yaml.safe_load(write_config(tmp_path / "t.yaml", synth_tifs, iterations=40).read_text()))
    summary = train2d(cfg, tmp_path / "m.pt", progress=False)
    assert summary["frozen"] is False
    assert summary["iou"] > 0.3  # synthetic mitochondria are easy; an untrained net gives ~0.1 or less

def test_bad_config_is_a_clear_error(tmp_path, synth_tifs):
    from emseg.errors import ConfigError
    from emseg.train.transfer2d import load_config, load_slices

    (tmp_path / "bad.yaml").write_text("train: {image: x}\n")
    with pytest.raises(ConfigError, match="invalid train2d config"):
        load_config(tmp_path / "bad.yaml")
    cfg = load_config(write_config(tmp_path / "t.yaml", synth_tifs))
    with pytest.raises(ConfigError, match="outside"):
        load_slices(cfg.train.model_copy(update={"slices": [0, 99]}))
