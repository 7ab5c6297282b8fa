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
    vol = make_volume((12, 64, 64), (8.0, 8.0, 8.0), seed=4, mito_density=4.0)  # ~12 % mitochondria on every slice
    tifffile.imwrite(folder / "raw.tif", vol.raw)
    tifffile.imwrite(folder / "mito.tif", vol.mito.astype(np.uint8))
    return folder

def write_config(path, folder, **extra):
    cfg = {"train": {"image": str(folder / "raw.tif"), "labels": str(folder / "mito.tif"), "slices": "0:9"},
           "validation": {"image": str(folder / "raw.tif"), "labels": str(folder / "mito.tif"), "slices": [9, 10, 11]},
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

    cfg = Transfer2DConfig(**yaml.safe_load(write_config(tmp_path / "t.yaml", synth_tifs, iterations=80,
                                                         loss="bce+dice").read_text()))
    summary = train2d(cfg, tmp_path / "m.pt", progress=False)
    assert summary["frozen"] is False
    assert summary["iou"] > 0.3  # ~0.56; an untrained net gives ~0.1 or less (12 % of the pixels are mitochondria)

def test_bad_config_is_a_clear_error(tmp_path, synth_tifs):
    from emseg.errors import ConfigError
    from emseg.train.transfer2d import load_config, load_slices

    (tmp_path / "bad.yaml").write_text("train: {image: x}\n")
    with pytest.raises(ConfigError, match="invalid train2d config"):
        load_config(tmp_path / "bad.yaml")
    cfg = load_config(write_config(tmp_path / "t.yaml", synth_tifs))
    with pytest.raises(ConfigError, match="outside"):
        load_slices(cfg.train.model_copy(update={"slices": [0, 99]}))


def test_config_vocabulary_old_names_warn_and_unknown_keys_fail(tmp_path, synth_tifs):
    from emseg.errors import ConfigError
    from emseg.train.transfer2d import load_config

    with pytest.warns(DeprecationWarning, match="'lr' is deprecated, use 'learning_rate'"):
        cfg = load_config(write_config(tmp_path / "old.yaml", synth_tifs, lr=0.01))
    assert cfg.learning_rate == 0.01 and cfg.validation is not None and cfg.validation.slices == [9, 10, 11]
    with pytest.raises(ConfigError, match="iteratons"):
        load_config(write_config(tmp_path / "typo.yaml", synth_tifs, iteratons=5))
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(write_config(tmp_path / "both.yaml", synth_tifs, lr=0.01, learning_rate=0.02))


@pytest.mark.timeout(120)
def test_sparse_slices_sample_mask_selects_slices_and_limits_loss(tmp_path, synth_tifs):
    """A sample mask picks the annotated slices; labels outside it never reach the loss."""
    import tifffile

    from emseg.models import load_checkpoint
    from emseg.train.transfer2d import load_config, load_slices, train2d

    mito = tifffile.imread(synth_tifs / "mito.tif")
    annotated = np.zeros_like(mito)
    annotated[[1, 4, 7]] = 1
    garbage = mito.copy()
    garbage[annotated == 0] = 1  # wrong labels wherever nothing is annotated
    tifffile.imwrite(tmp_path / "sparse.tif", garbage)
    tifffile.imwrite(tmp_path / "annotated.tif", annotated)
    cfg = load_config(write_config(tmp_path / "t.yaml", synth_tifs, iterations=80, threshold="auto",
                                   loss="bce+dice", validate_every=40, inference_mode="orthoplane"))
    cfg.train = cfg.train.model_copy(update={"labels": str(tmp_path / "sparse.tif"), "slices": None,
                                             "sample_mask": str(tmp_path / "annotated.tif")})
    data = load_slices(cfg.train)
    assert data.raw.shape[0] == 3 and data.mask is not None and data.mask.all()
    summary = train2d(cfg, tmp_path / "m.pt", progress=False)
    assert summary["iou"] > 0.3  # learnt from 3 correct slices despite the all-foreground garbage elsewhere
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.threshold == summary["threshold"] and 0.3 <= loaded.threshold <= 0.9
    assert [h["iteration"] for h in summary["history"]] == [40, 80]
    assert summary["best_iteration"] in (40, 80) and summary["images_per_s"] > 0
    assert loaded.inference == {"mode": "orthoplane"}


def test_empty_sample_mask_is_a_clear_error(tmp_path, synth_tifs):
    import tifffile

    from emseg.errors import ConfigError
    from emseg.train.transfer2d import SliceSet, load_slices

    tifffile.imwrite(tmp_path / "none.tif", np.zeros((12, 64, 64), np.uint8))
    spec = SliceSet(image=str(synth_tifs / "raw.tif"), labels=str(synth_tifs / "mito.tif"),
                    sample_mask=str(tmp_path / "none.tif"))
    with pytest.raises(ConfigError, match="annotates no pixel"):
        load_slices(spec)


@pytest.mark.timeout(120)
def test_cem500k_release_layout_inits_train2d(tmp_path, synth_tifs):
    """A file laid out like the published CEM500K MoCoV2 ResNet-50 (module.encoder_q.*, norms) is an
    ``init:`` of train2d: its query encoder and norms are used, frozen by default."""
    from test_resnet import fake_cem500k

    from emseg.models import load_checkpoint
    from emseg.train.transfer2d import load_config, train2d

    moco = fake_cem500k(tmp_path / "cem500k_mocov2_resnet50_200ep.pth.tar", "resnet50", 8)
    cfg = load_config(write_config(tmp_path / "t.yaml", synth_tifs, init=str(tmp_path / "cem500k_mocov2_resnet50_200ep.pth.tar"),
                                   iterations=2))
    train2d(cfg, tmp_path / "m.pt", progress=False)
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.model_config["arch"] == "resnet50" and loaded.training["frozen"] is True
    assert loaded.normalization["mean"] == pytest.approx(0.58331613)
    for key, value in moco.encoder_q.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(loaded.model.encoder.state_dict()[key], value), key
