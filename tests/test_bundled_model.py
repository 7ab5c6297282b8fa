"""The default mitochondria model ships in the package and segments held-out Lucchi data."""

from __future__ import annotations

import pytest

from emseg.models import UNet3D, bundled, load


def test_mito_is_bundled_with_its_metadata():
    assert "mito" in bundled()
    model = load("mito")
    assert isinstance(model.model, UNet3D) and model.organelle == "mito"
    assert model.voxel_size == (5.0, 5.0, 5.0)
    assert 0 < model.normalization["std"] < 1
    assert model.training["validation"]["f1"] > 0.75  # scores travel with the weights
    assert model.threshold == model.training["validation"]["threshold"]  # chosen by validation F1
    assert "optimizer" not in model.training  # slim: no optimizer state in the package


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mito_segments_held_out_lucchi(shared_data):
    from emseg.io import open_volume
    from emseg.metrics import voxel_scores
    from emseg.train.validate import predict_in_memory

    model = load("mito")
    raw = open_volume(shared_data / "lucchi" / "train_image.tif")[140:164, 256:512, 384:640]
    truth = open_volume(shared_data / "lucchi" / "train_mito.tif")[140:164, 256:512, 384:640] > 0
    prob = predict_in_memory(model.model, raw, model.normalization)
    scores = voxel_scores(prob >= model.threshold, truth)
    assert truth.mean() > 0.01
    assert scores["f1"] > 0.7, scores  # v1 model: validation F1 0.80 on the whole held-out ROI
