"""2D (same-padded) nets: stack and orthoplane modes, halo crop-and-stitch, flip TTA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from torch import nn

from emseg.errors import ConfigError
from emseg.io import array_volume
from emseg.models import load_checkpoint, normalize, register, save_checkpoint, slim_checkpoint
from emseg.predict import predict

VOXEL = (8.0, 8.0, 8.0)


class TinyNet2D(nn.Module):
    """Same-padded 2D net (zero padding); receptive radius = layers × dilation."""

    spatial_dims = 2

    def __init__(self, layers: int = 3, dilation: int = 1, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        convs = []
        for i in range(layers):
            convs += [nn.Conv2d(1 if i == 0 else 4, 4, 3, padding=dilation, dilation=dilation), nn.ReLU()]
        self.body = nn.Sequential(*convs, nn.Conv2d(4, 2, 1))  # 2 channels: softmax, channel 1
        self.halo = layers * dilation

    def forward(self, x):
        return self.body(x)


_THREADS = torch.get_num_threads()


def setup_module():
    torch.set_num_threads(1)  # tiny nets: one thread is fastest, above all on a busy CPU


def teardown_module():
    torch.set_num_threads(_THREADS)


@pytest.fixture(scope="module")
def raw():
    return np.random.default_rng(2).integers(0, 256, (12, 40, 36), dtype=np.uint8)


def whole_slices(model, raw, axis, halo, flips=False):
    """Reference: every whole slice along ``axis`` (mirror-padded by ``halo`` in-plane) at once."""
    pad = [(0, 0) if a == axis else (halo, halo) for a in range(3)]
    x = torch.from_numpy(normalize(np.pad(raw, pad, mode="reflect")))
    slices = x.movedim(axis, 0)[:, None]
    with torch.inference_mode():
        def run(t):
            return torch.softmax(model(t), 1)[:, 1]
        prob = run(slices)
        if flips:
            prob = (prob + run(slices.flip(2)).flip(1) + run(slices.flip(3)).flip(2)) / 3
    prob = prob.movedim(0, axis).numpy()
    crop = tuple(slice(0, n) if a == axis else slice(halo, halo + n) for a, n in enumerate(raw.shape))
    return prob[crop]


def out(path):
    return zarr.open_array(f"{path}/0", mode="r")[:]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("axis", [0, 2])
def test_stack_mode_with_enough_halo_equals_whole_slices(raw, tmp_path, axis):
    model = TinyNet2D().eval()  # receptive radius 3; default halo = model.halo = 3
    predict(model, array_volume(raw, VOXEL), tmp_path / "s.zarr", mode="stack", axis=axis, chunks=8,
            block_shape=8, dtype="float32", device="cpu")
    np.testing.assert_allclose(out(tmp_path / "s.zarr"), whole_slices(model, raw, axis, 3), rtol=0, atol=1e-6)


@pytest.mark.timeout(60)
def test_small_halo_error_is_bounded_and_shrinks_with_halo(raw, tmp_path):
    """The crop-and-stitch bound: with a halo below the receptive radius (8) blocks differ
    from whole slices; the measured error falls as the halo grows and vanishes at 8."""
    model = TinyNet2D(layers=4, dilation=2).eval()
    ref = whole_slices(model, raw, 0, 8)
    errors = {}
    for halo in (2, 4, 8):
        path = tmp_path / f"h{halo}.zarr"
        predict(model, array_volume(raw, VOXEL), path, mode="stack", halo=halo, chunks=8, block_shape=8,
                dtype="float32", device="cpu")
        errors[halo] = float(np.abs(out(path) - ref).max())
    print("max |blockwise - whole| by halo:", errors)
    assert errors[2] > errors[4] > 0 and errors[8] < 1e-6
    assert errors[2] < 0.5


@pytest.mark.timeout(60)
def test_orthoplane_is_the_mean_of_three_stack_passes(raw, tmp_path):
    model = TinyNet2D().eval()
    predict(model, array_volume(raw, VOXEL), tmp_path / "o.zarr", mode="orthoplane", chunks=8, block_shape=8,
            dtype="float32", device="cpu")
    expected = np.mean([whole_slices(model, np.pad(raw, 3, mode="reflect"), a, 3) for a in range(3)], axis=0)
    np.testing.assert_allclose(out(tmp_path / "o.zarr"), expected[3:-3, 3:-3, 3:-3], rtol=0, atol=1e-6)


@pytest.mark.timeout(60)
def test_flip_tta_averages_flipped_predictions(raw, tmp_path):
    model = TinyNet2D().eval()
    predict(model, array_volume(raw, VOXEL), tmp_path / "t.zarr", mode="stack", tta=True, chunks=8,
            block_shape=8, dtype="float32", device="cpu")
    got = out(tmp_path / "t.zarr")
    np.testing.assert_allclose(got, whole_slices(model, raw, 0, 3, flips=True), rtol=0, atol=1e-6)
    assert np.abs(got - whole_slices(model, raw, 0, 3)).max() > 1e-3  # TTA changed something


def test_mode_must_fit_the_model(raw, tmp_path):
    with pytest.raises(ConfigError, match="does not fit a 2D model"):
        predict(TinyNet2D(), array_volume(raw, VOXEL), tmp_path / "x.zarr", mode="3d", device="cpu")


# ---- inference settings stored in the checkpoint (issue #22 item 2) ------------------------------
register("tiny2d_test")(TinyNet2D)


def save_tiny2d(path, inference=None, voxel_size=VOXEL):
    model = TinyNet2D(seed=4).eval()
    save_checkpoint(path, model, architecture="tiny2d_test", model_config={"layers": 3}, voxel_size=voxel_size,
                    normalization={"mean": 0.5, "std": 0.25}, inference=inference)
    return model


def stored_settings(path):
    group = zarr.open_group(str(path), mode="r")
    inner = group["model_scale"] if "model_scale" in group else group
    return dict(inner.attrs["emseg"]["predict"])


@pytest.mark.timeout(60)
def test_auto_mode_and_tta_come_from_the_checkpoint(raw, tmp_path):
    model = save_tiny2d(tmp_path / "m.pt", {"mode": "orthoplane", "tta": True})
    assert load_checkpoint(tmp_path / "m.pt").inference == {"mode": "orthoplane", "tta": True}
    kwargs = dict(chunks=8, block_shape=8, dtype="float32", device="cpu")
    predict(str(tmp_path / "m.pt"), array_volume(raw, VOXEL), tmp_path / "auto.zarr", **kwargs)
    predict(model, array_volume(raw, VOXEL), tmp_path / "ref.zarr", mode="orthoplane", tta=True, **kwargs)
    settings = stored_settings(tmp_path / "auto.zarr")
    assert (settings["mode"], settings["tta"]) == ("orthoplane", True)
    np.testing.assert_array_equal(out(tmp_path / "auto.zarr"), out(tmp_path / "ref.zarr"))
    # the caller's explicit choice wins over the stored one
    predict(str(tmp_path / "m.pt"), array_volume(raw, VOXEL), tmp_path / "own.zarr", mode="stack", tta=False,
            **kwargs)
    settings = stored_settings(tmp_path / "own.zarr")
    assert (settings["mode"], settings["tta"]) == ("stack", False)


def test_checkpoint_without_inference_settings_loads_and_keeps_todays_defaults(raw, tmp_path):
    save_tiny2d(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["inference"]  # a checkpoint written before the key existed
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").inference == {}
    predict(str(tmp_path / "old.pt"), array_volume(raw, VOXEL), tmp_path / "o.zarr", chunks=8, block_shape=8,
            device="cpu")
    settings = stored_settings(tmp_path / "o.zarr")
    assert (settings["mode"], settings["tta"]) == ("stack", False)


def test_slim_checkpoint_sets_inference_and_bad_settings_name_the_file(raw, tmp_path):
    save_tiny2d(tmp_path / "m.pt")
    slim_checkpoint(tmp_path / "m.pt", tmp_path / "slim.pt", inference={"mode": "orthoplane"})
    assert load_checkpoint(tmp_path / "slim.pt").inference == {"mode": "orthoplane"}
    assert load_checkpoint(tmp_path / "m.pt").inference == {}  # the source is untouched
    with pytest.raises(ConfigError, match=r"bad\.pt: inference mode must be one of 3d, stack, orthoplane"):
        save_tiny2d(tmp_path / "bad.pt", {"mode": "4d"})
    with pytest.raises(ConfigError, match=r"bad\.pt: unknown inference setting\(s\) 'halo'"):
        slim_checkpoint(tmp_path / "m.pt", tmp_path / "bad.pt", inference={"halo": 3})
    with pytest.raises(ConfigError, match=r"bad\.pt: inference mode '3d' does not fit a 2D model"):
        save_tiny2d(tmp_path / "bad.pt", {"mode": "3d"})
    with pytest.raises(ConfigError, match=r"bad\.pt: inference tta must be true or false"):
        slim_checkpoint(tmp_path / "m.pt", tmp_path / "bad.pt", inference={"tta": "yes"})
    assert not (tmp_path / "bad.pt").exists()
    slim_checkpoint(tmp_path / "m.pt", tmp_path / "wrong.pt", inference={"mode": "3d"})  # slim cannot see the net
    with pytest.raises(ConfigError, match=r"wrong\.pt: mode '3d' \(stored in the checkpoint\) does not fit a 2D"):
        predict(str(tmp_path / "wrong.pt"), array_volume(raw, VOXEL), tmp_path / "w.zarr", device="cpu")


@pytest.mark.timeout(60)
def test_cli_predict_2d_checkpoint_needs_no_mode_flag(raw, tmp_path):
    """`emseg predict MODEL2D IMG OUT --allow-resample`: the stored orthoplane + TTA are used."""
    from emseg.cli import main
    from emseg.io import write_ome_zarr

    save_tiny2d(tmp_path / "m.pt", {"mode": "orthoplane", "tta": True})
    image = write_ome_zarr(raw, tmp_path / "img.ome.zarr", (8.0, 8.0, 16.0), chunks=16, levels=1)
    with pytest.warns(UserWarning, match="resampling"):
        assert main(["predict", str(tmp_path / "m.pt"), str(image), str(tmp_path / "a.zarr"), "--allow-resample",
                     "--chunks", "8", "--block", "8", "--device", "cpu"]) == 0
    settings = stored_settings(tmp_path / "a.zarr")
    assert (settings["mode"], settings["tta"]) == ("orthoplane", True)
    assert zarr.open_array(f"{tmp_path / 'a.zarr'}/0", mode="r").shape == raw.shape
    with pytest.warns(UserWarning, match="resampling"):
        assert main(["predict", str(tmp_path / "m.pt"), str(image), str(tmp_path / "b.zarr"), "--allow-resample",
                     "--chunks", "8", "--block", "8", "--device", "cpu", "--no-tta", "--mode", "stack"]) == 0
    settings = stored_settings(tmp_path / "b.zarr")
    assert (settings["mode"], settings["tta"]) == ("stack", False)
