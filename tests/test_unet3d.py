"""3D U-Net geometry: reported shapes and context match real forward passes."""

from __future__ import annotations

import pytest
import torch

from emseg.models import UNet3D, build, load_checkpoint, save_checkpoint


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_asem_defaults():
    model = UNet3D()
    assert 5.7e6 < n_params(model) < 5.9e6
    assert model.output_shape((204, 204, 204)) == (116, 116, 116)  # funlib arithmetic, see docs/training.md
    assert model.context == (88, 88, 88)


@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
@pytest.mark.parametrize("out_channels", [1, 2])
def test_reported_shapes_match_forward(upsample, out_channels):
    model = UNet3D(fmaps=2, downsample_factors=[(1, 2, 2), (2, 2, 2)], upsample=upsample, out_channels=out_channels)
    shape = model.valid_input_shape((20, 30, 30))
    out = model(torch.zeros(1, 1, *shape))
    assert tuple(out.shape) == (1, out_channels, *model.output_shape(shape))
    assert tuple(i - o for i, o in zip(shape, out.shape[2:])) == model.context
    prob = model.probabilities(out).detach()
    assert prob.shape[1] == 1 and float(prob.min()) >= 0 and float(prob.max()) <= 1


def test_input_shape_for_gives_at_least_the_output():
    model = UNet3D(fmaps=2)
    inp = model.input_shape_for((30, 31, 50))
    out = model.output_shape(inp)
    assert all(o >= t for o, t in zip(out, (30, 31, 50)))
    with pytest.raises(ValueError, match="not valid"):
        model.output_shape((inp[0] + 1, inp[1], inp[2]))


def test_checkpoint_roundtrip(tmp_path):
    model = build("unet3d", fmaps=2)
    path = save_checkpoint(tmp_path / "m.pt", model, architecture="unet3d", model_config=model.config,
                           voxel_size=(5, 5, 5), normalization={"mean": 0.5, "std": 0.2}, organelle="mito")
    loaded = load_checkpoint(path)
    assert loaded.organelle == "mito" and loaded.voxel_size == (5, 5, 5)
    for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(a, b)


def test_slim_checkpoint_drops_optimizer_but_stays_usable(tmp_path):
    from emseg.models import read_checkpoint, slim_checkpoint

    model = build("unet3d", fmaps=2)
    full = save_checkpoint(tmp_path / "full.pt", model, architecture="unet3d", model_config=model.config,
                           voxel_size=(5, 5, 5), normalization={"mean": 0.5, "std": 0.2},
                           training={"optimizer": {"state": list(range(1000))}, "validation": {"f1": 0.9}})
    slim = slim_checkpoint(full, tmp_path / "slim.pt")
    payload = read_checkpoint(slim)
    assert "optimizer" not in payload["training"] and payload["training"]["validation"] == {"f1": 0.9}
    assert load_checkpoint(slim).voxel_size == (5, 5, 5)
    chosen = slim_checkpoint(full, tmp_path / "chosen.pt", threshold=0.65, threshold_choice={"chosen_on": "validation"})
    assert load_checkpoint(chosen).threshold == 0.65
    assert read_checkpoint(chosen)["training"]["threshold_choice"] == {"threshold": 0.65, "chosen_on": "validation"}


@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
def test_stem_factor_shapes_context_and_grid(upsample):
    """A stride-s stem runs the U-Net at s× coarser resolution: s× the context, s× the grid."""
    plain = UNet3D(fmaps=2, downsample_factors=[(2, 2, 2)], upsample=upsample)
    stem = UNet3D(fmaps=2, downsample_factors=[(2, 2, 2)], upsample=upsample, stem_factor=2)
    assert stem.context == tuple(2 * c for c in plain.context)
    assert stem.grid == (4, 4, 4) and plain.grid == (2, 2, 2)
    shape = stem.valid_input_shape((30, 40, 50))
    assert all(s % 2 == 0 for s in shape)
    out = stem(torch.zeros(1, 1, *shape))
    assert tuple(out.shape[2:]) == stem.output_shape(shape)
    assert tuple(i - o for i, o in zip(shape, out.shape[2:])) == stem.context
    with pytest.raises(ValueError, match="not valid"):
        stem.output_shape((shape[0] + 1, shape[1], shape[2]))
    with pytest.raises(ValueError, match="stem_factor"):
        UNet3D(stem_factor=0)


def test_stem_model_checkpoint_roundtrip(tmp_path):
    model = build("unet3d", fmaps=2, downsample_factors=[(2, 2, 2)], stem_factor=2)
    path = save_checkpoint(tmp_path / "m.pt", model, architecture="unet3d", model_config=model.config,
                           voxel_size=(5.0, 5.0, 5.0), normalization={"mean": 0.5, "std": 0.2})
    loaded = load_checkpoint(path)
    x = torch.rand(1, 1, *model.valid_input_shape((24, 24, 24)))
    assert loaded.model.stem_factor == 2
    torch.testing.assert_close(loaded.model(x), model(x))
