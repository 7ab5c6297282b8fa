"""Blockwise prediction: exactness, output metadata, masks, resumption, failures, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from emseg.blocks import Ledger
from emseg.errors import ConfigError, EmsegError, OutputExistsError
from emseg.io import array_volume, write_ome_zarr
from emseg.models import UNet3D, normalize, save_checkpoint
from emseg.predict import BlocksFailedError, predict
from emseg.predict.engine import PredictJob

SRC = Path(__file__).resolve().parents[1] / "src"
VOXEL = (8.0, 8.0, 8.0)


def tiny_unet(seed: int = 0, levels: int = 1) -> UNet3D:
    torch.manual_seed(seed)
    return UNet3D(fmaps=2, downsample_factors=((2, 2, 2),) * levels).eval()


def whole_volume(model: UNet3D, raw: np.ndarray, mean=0.5, std=0.25) -> np.ndarray:
    """One forward pass over the whole (mirror-padded) volume: the reference."""
    lo = model.context[0] // 2
    need = model.input_shape_for(raw.shape)
    x = np.pad(raw, [(lo, n - s - lo) for n, s in zip(need, raw.shape)], mode="reflect")
    with torch.inference_mode():
        prob = model.probabilities(model(torch.from_numpy(normalize(x, mean, std))[None, None]))
    return prob[0, 0].numpy()[tuple(slice(0, s) for s in raw.shape)]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny nets: one thread is faster, and much faster on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def raw():
    return np.random.default_rng(1).integers(0, 256, (20, 36, 44), dtype=np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = tiny_unet(seed=5)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, architecture="unet3d", model_config=model.config, voxel_size=VOXEL,
                    normalization={"mean": 0.5, "std": 0.25}, organelle="mito", threshold=0.5)
    return path


@pytest.fixture(scope="module")
def raw_zarr(raw, tmp_path_factory):
    return write_ome_zarr(raw, tmp_path_factory.mktemp("in") / "raw.ome.zarr", VOXEL, chunks=16, levels=1)


def read_out(path) -> np.ndarray:
    return zarr.open_array(f"{path}/0", mode="r")[:]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("levels,block", [(1, 8), (2, 16)])
def test_blockwise_equals_whole_volume_bit_for_bit(raw, tmp_path, levels, block):
    model = tiny_unet(levels=levels)
    result = predict(model, array_volume(raw, VOXEL), tmp_path / "p.zarr", chunks=8, block_shape=block,
                     dtype="float32", device="cpu")
    assert len(result.plan) > 8 and result.complete
    np.testing.assert_array_equal(read_out(tmp_path / "p.zarr"), whole_volume(model, raw))


@pytest.mark.timeout(60)
def test_stem_model_blockwise_equals_whole_volume_bit_for_bit(raw, tmp_path):
    """A stride-2 stem doubles the translation period (grid 4): blocks must snap to it."""
    torch.manual_seed(2)
    model = UNet3D(fmaps=2, downsample_factors=((2, 2, 2),), stem_factor=2).eval()
    result = predict(model, array_volume(raw, VOXEL), tmp_path / "p.zarr", chunks=8, block_shape=8,
                     dtype="float32", device="cpu")
    assert len(result.plan) > 4 and result.complete
    np.testing.assert_array_equal(read_out(tmp_path / "p.zarr"), whole_volume(model, raw))


@pytest.mark.timeout(60)
def test_batched_blocks_match_to_float_rounding(raw, tmp_path):
    """Batches > 1 may take another conv kernel path in torch: equal to ~1 ulp, not bitwise."""
    model = tiny_unet(levels=2)
    predict(model, array_volume(raw, VOXEL), tmp_path / "p.zarr", chunks=8, block_shape=16, dtype="float32",
            device="cpu", batch_size=3)
    np.testing.assert_allclose(read_out(tmp_path / "p.zarr"), whole_volume(model, raw), rtol=0, atol=1e-6)


@pytest.mark.timeout(60)
def test_output_metadata_dtype_and_completion(raw_zarr, checkpoint, raw, tmp_path):
    out = tmp_path / "p.ome.zarr"
    result = predict(str(checkpoint), str(raw_zarr), out, chunks=16, block_shape=16, device="cpu")
    group = zarr.open_group(str(out), mode="r")
    attrs = dict(group.attrs)["emseg"]
    assert attrs["complete"] is True and attrs["voxel_size"] == list(VOXEL)
    assert attrs["model"]["source"] == str(checkpoint) and attrs["model"]["organelle"] == "mito"
    assert attrs["model"]["model_config"]["fmaps"] == 2 and attrs["predict"]["dtype"] == "uint8"
    assert dict(group.attrs)["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == list(VOXEL)
    data = read_out(out)
    assert data.dtype == np.uint8 and data.shape == raw.shape
    ref = whole_volume(tiny_unet(seed=5), raw)
    assert np.abs(data.astype(int) - np.rint(ref * 255).astype(int)).max() <= 1
    assert Ledger(out).done() == {b.key for b in result.plan.blocks}
    again = predict(str(checkpoint), str(raw_zarr), out, chunks=16, block_shape=16, device="cpu")
    assert again.report.done == [] and again.report.skipped == len(result.plan)  # already complete


@pytest.mark.timeout(60)
def test_only_blocks_inside_mask_and_roi_are_computed(raw, tmp_path):
    model = tiny_unet()
    mask = np.zeros((10, 18, 22), dtype=np.uint8)  # at half the resolution
    mask[1, 2, 3] = 1
    out = tmp_path / "m.zarr"
    result = predict(model, array_volume(raw, VOXEL), out, mask=array_volume(mask, (16, 16, 16)), chunks=8,
                     block_shape=8, dtype="float32", device="cpu")
    assert Ledger(out).done() == {"0_0_0"}
    data, ref = read_out(out), whole_volume(model, raw)
    np.testing.assert_array_equal(data[:8, :8, :8], ref[:8, :8, :8])
    assert not data[8:].any() and not data[:, 8:].any()
    out2 = tmp_path / "r.zarr"
    result = predict(model, array_volume(raw, VOXEL), out2, roi="9:12,20:30,0:5", chunks=8, block_shape=8,
                     dtype="float32", device="cpu")
    assert sorted(b.key for b in result.plan.blocks) == ["1_2_0", "1_3_0"]
    np.testing.assert_array_equal(read_out(out2)[8:16, 16:32, :8], ref[8:16, 16:32, :8])


@pytest.mark.timeout(60)
def test_failed_block_reported_not_marked_then_rerun_completes(raw, tmp_path, monkeypatch):
    model = tiny_unet()
    out = tmp_path / "f.zarr"
    original = PredictJob.write

    def failing_write(self, block, prob):
        if block.key == "1_1_1":
            raise OSError("no space left on device (simulated)")
        original(self, block, prob)

    monkeypatch.setattr(PredictJob, "write", failing_write)
    with pytest.raises(BlocksFailedError, match="1_1_1.*no space left") as info:
        predict(model, array_volume(raw, VOXEL), out, chunks=8, block_shape=8, dtype="float32", device="cpu")
    assert "1_1_1" in info.value.report.failed
    assert "1_1_1" not in Ledger(out).done()
    assert zarr.open_group(str(out)).attrs["emseg"]["complete"] is False
    monkeypatch.setattr(PredictJob, "write", original)
    result = predict(model, array_volume(raw, VOXEL), out, chunks=8, block_shape=8, dtype="float32", device="cpu")
    assert result.report.done == ["1_1_1"] and result.complete
    np.testing.assert_array_equal(read_out(out), whole_volume(model, raw))


def run_cli(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "emseg", "predict", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.timeout(150)
def test_sigkilled_run_resumes_to_identical_output(raw_zarr, checkpoint, tmp_path):
    args = ["--chunks", "8", "--block", "8", "--device", "cpu", "--dtype", "float16"]
    killed = tmp_path / "killed.zarr"
    proc = run_cli(checkpoint, raw_zarr, killed, *args)
    ledger, deadline = Ledger(killed), time.time() + 100
    while len(ledger.done()) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(ledger.done())
    total = 3 * 5 * 6
    assert 3 <= n_done < total, f"could not kill mid-run ({n_done} of {total} blocks done)"
    assert zarr.open_group(str(killed)).attrs["emseg"]["complete"] is False
    resumed = predict(str(checkpoint), str(raw_zarr), killed, chunks=8, block_shape=8, device="cpu",
                      dtype="float16")  # the same settings: resumes
    assert resumed.report.skipped == n_done and len(resumed.report.done) == total - n_done
    clean = tmp_path / "clean.zarr"
    predict(str(checkpoint), str(raw_zarr), clean, chunks=8, block_shape=8, device="cpu", dtype="float16")
    np.testing.assert_array_equal(read_out(killed), read_out(clean))
    assert zarr.open_group(str(killed)).attrs["emseg"]["complete"] is True


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_local_cluster_with_two_workers_equals_in_process(raw_zarr, checkpoint, tmp_path):
    local = predict(str(checkpoint), str(raw_zarr), tmp_path / "a.zarr", chunks=8, block_shape=16,
                    dtype="float32", device="cpu")
    dist = predict(str(checkpoint), str(raw_zarr), tmp_path / "b.zarr", chunks=8, block_shape=16,
                   dtype="float32", device="cpu", workers=2)
    assert dist.complete and sorted(dist.report.done) == sorted(local.report.done)
    np.testing.assert_array_equal(read_out(tmp_path / "a.zarr"), read_out(tmp_path / "b.zarr"))


# ---- bad input --------------------------------------------------------------------------------
def test_voxel_size_mismatch_refused_or_resampled_with_warning(raw, checkpoint, tmp_path):
    volume = array_volume(raw, (16.0, 8.0, 8.0))
    with pytest.raises(ConfigError, match=r"\(16.0, 8.0, 8.0\).*\(8.0, 8.0, 8.0\).*--allow-resample"):
        predict(str(checkpoint), volume, tmp_path / "v.zarr", device="cpu")
    assert not (tmp_path / "v.zarr").exists()
    with pytest.warns(UserWarning, match="resampling"):
        result = predict(str(checkpoint), volume, tmp_path / "v.zarr", device="cpu", allow_resample=True,
                         chunks=16, block_shape=16, dtype="float32")
    assert result.complete and result.plan.volume_shape == (40, 36, 44)  # the net ran at 8 nm
    model_scale = zarr.open_group(str(tmp_path / "v.zarr" / "model_scale"))
    assert model_scale.attrs["emseg"]["voxel_size"] == [8.0, 8.0, 8.0]
    out = zarr.open_group(str(tmp_path / "v.zarr"))
    assert out.attrs["emseg"]["voxel_size"] == [16.0, 8.0, 8.0] and out.attrs["emseg"]["complete"]
    coarse = np.asarray(model_scale["0"])
    assert out["0"].shape == raw.shape  # back on the input's grid: each z voxel averages two 8 nm ones
    np.testing.assert_allclose(out["0"][:], (coarse[0::2] + coarse[1::2]) / 2, atol=1e-6)
    assert coarse.std() > 0


def test_resampled_prediction_is_confined_to_the_roi_and_resumes(raw, checkpoint, tmp_path):
    volume, out = array_volume(raw, (16.0, 8.0, 8.0)), tmp_path / "v.zarr"
    kwargs = dict(device="cpu", allow_resample=True, chunks=8, block_shape=16, roi="4:12,0:20,8:30")
    with pytest.warns(UserWarning, match="resampling"):
        first = predict(str(checkpoint), volume, out, **kwargs)
        whole = predict(str(checkpoint), volume, tmp_path / "whole.zarr", device="cpu", allow_resample=True,
                        chunks=8, block_shape=16)
    data, reference = zarr.open_group(str(out))["0"][:], zarr.open_group(str(whole.output))["0"][:]
    assert data.dtype == np.uint8 and zarr.open_group(str(out)).attrs["emseg"]["model"]["organelle"] == "mito"
    inside = np.zeros(raw.shape, bool)
    inside[4:12, 0:20, 8:30] = True
    assert first.complete and not data[~inside].any()
    np.testing.assert_array_equal(data[inside], reference[inside])  # the same values as a whole-volume run
    with pytest.warns(UserWarning, match="resampling"):
        again = predict(str(checkpoint), volume, out, **kwargs)
    assert again.report.done == [] and again.complete  # every block was already in the ledger
    np.testing.assert_array_equal(zarr.open_group(str(out))["0"][:], data)


def test_roi_outside_volume_is_refused(raw, tmp_path):
    with pytest.raises(ConfigError, match="outside the volume"):
        predict(tiny_unet(), array_volume(raw, VOXEL), tmp_path / "o.zarr", roi="0:10,0:10,40:60", device="cpu")


def test_output_from_other_model_or_settings_refused_unless_overwrite(raw, tmp_path):
    volume, out = array_volume(raw, VOXEL), tmp_path / "o.zarr"
    predict(tiny_unet(seed=0), volume, out, chunks=16, block_shape=16, device="cpu")
    with pytest.raises(OutputExistsError, match="another model or other settings"):
        predict(tiny_unet(seed=1), volume, out, chunks=16, block_shape=16, device="cpu")
    with pytest.raises(OutputExistsError, match="another model or other settings"):
        predict(tiny_unet(seed=0), volume, out, chunks=16, block_shape=16, device="cpu", dtype="float16")
    write_ome_zarr(raw, tmp_path / "raw.zarr", VOXEL)
    with pytest.raises(OutputExistsError, match="not an emseg prediction"):
        predict(tiny_unet(seed=0), volume, tmp_path / "raw.zarr", device="cpu")
    result = predict(tiny_unet(seed=1), volume, out, chunks=16, block_shape=16, device="cpu", overwrite=True)
    assert result.complete and len(result.report.done) == len(result.plan)


def test_unwritable_output_is_a_clear_error(raw, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(EmsegError, match="cannot write the output"):
        predict(tiny_unet(), array_volume(raw, VOXEL), blocker / "out.zarr", device="cpu")


def test_cli_corrupt_checkpoint_and_usage_errors(raw_zarr, checkpoint, tmp_path, capsys):
    from emseg.cli import main

    bad = tmp_path / "bad.pt"
    bad.write_bytes(checkpoint.read_bytes()[:300])
    assert main(["predict", str(bad), str(raw_zarr), str(tmp_path / "x.zarr")]) == 2
    assert "bad.pt: not a readable checkpoint" in capsys.readouterr().err
    assert main(["predict", str(checkpoint), str(raw_zarr), str(tmp_path / "x.zarr"), "--workers", "2",
                 "--scheduler", "tcp://localhost:1"]) == 2
    assert "either --workers or --scheduler" in capsys.readouterr().err
    assert main(["predict", "no-such-model", str(raw_zarr), str(tmp_path / "x.zarr")]) == 2
    assert "no bundled model named 'no-such-model'" in capsys.readouterr().err
