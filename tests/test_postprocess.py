"""Post-processing pipeline: thresholds, morphology, hole filling, size filter, conflicts, CLI."""

from __future__ import annotations

import cc3d
import dask.array as da
import numpy as np
import pytest
from scipy import ndimage
from test_postprocess_components import same_partition

from emseg.cli import main
from emseg.errors import InvalidValuesError
from emseg.io import open_volume
from emseg.postprocess.classes import write_class_map
from emseg.postprocess.ops import fill_holes, open_close, resolve_conflicts, threshold_mask
from emseg.postprocess.pipeline import PostprocessConfig, postprocess

pytestmark = pytest.mark.timeout(120)


def blobs(shape=(24, 40, 40), seed=0, level=0.55):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 1.5)


def test_postprocess_equals_whole_volume_components_and_keeps_voxel_size(tmp_path):
    prob = blobs().astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    voxel_size = (20.0, 5.0, 5.0)
    config = PostprocessConfig(threshold=0.6, connectivity=6, block=(8, 16, 16))
    info = postprocess(prob, tmp_path / "l.ome.zarr", config, voxel_size=voxel_size)
    out = open_volume(str(tmp_path / "l.ome.zarr"))
    assert out.voxel_size == voxel_size and out.dtype == np.uint32
    expected, n = cc3d.connected_components(prob >= 0.6, connectivity=6, return_N=True)
    assert info["objects"] == n > 3
    assert same_partition(out[:, :, :], expected)


def test_size_filter_in_nm3_respects_anisotropic_voxels(tmp_path):
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[1:3, 1:3, 1:3] = 1  # 8 voxels = 8 * 40*4*4 nm³ = 5120 nm³
    labels[5:8, 10:15, 10:15] = 1  # 75 voxels = 48000 nm³
    voxel_size = (40.0, 4.0, 4.0)
    for min_size, expected in ((5120.0, 2), (5121.0, 1), (48001.0, 0)):
        config = PostprocessConfig(min_size_nm3=min_size, block=(4, 8, 8))
        info = postprocess(labels, tmp_path / f"{min_size}.ome.zarr", config, voxel_size=voxel_size)
        assert info["objects"] == expected


def test_fill_holes_and_open_close_equal_whole_volume_scipy():
    mask = blobs(seed=1) > 0.5
    mask[8:16, 10:20, 10:20] = True
    mask[10:14, 13:17, 13:17] = False  # an enclosed cavity spanning blocks
    lazy = da.from_array(mask, chunks=(6, 11, 9))
    np.testing.assert_array_equal(fill_holes(lazy).compute(), ndimage.binary_fill_holes(mask))
    ball = ndimage.generate_binary_structure(3, 1)  # the radius-1 ball: 7 voxels
    opened = open_close(lazy, opening_vox=1).compute()
    np.testing.assert_array_equal(opened, ndimage.binary_opening(mask, ball))
    closed = open_close(lazy, closing_vox=1).compute()
    whole = ndimage.binary_erosion(ndimage.binary_dilation(mask, ball), ball, border_value=1)
    np.testing.assert_array_equal(closed, whole)


def test_conflict_resolution_hand_case(tmp_path):
    a = np.array([[[0.9, 0.6, 0.2, 0.7]]], np.float32)
    b = np.array([[[0.8, 0.7, 0.1, 0.75]]], np.float32)
    classes = resolve_conflicts([da.from_array(a), da.from_array(b)], [0.5, 0.72]).compute()
    # voxel 1: b=0.7 is below its own threshold 0.72 → a; voxel 3: b=0.75 passes 0.72 but only by
    # (0.75-0.72)/(1-0.72) = 0.11 of the way to 1, a=0.7 by (0.7-0.5)/(1-0.5) = 0.4 → a
    np.testing.assert_array_equal(classes[0, 0], [1, 1, 0, 1])
    same = resolve_conflicts([da.from_array(a), da.from_array(b)], [0.5, 0.5]).compute()
    np.testing.assert_array_equal(same[0, 0], [1, 2, 0, 2])  # equal thresholds: the most probable class
    info = write_class_map([a, b], tmp_path / "c.ome.zarr", [0.5, 0.72], voxel_size=(1, 1, 1), names=["mito", "er"])
    assert [c.name for c in info["classes"]] == ["mito", "er"]
    np.testing.assert_array_equal(open_volume(str(tmp_path / "c.ome.zarr"))[:, :, :], classes)
    # no thresholds given: each map's model threshold, as stored by `emseg predict`
    from emseg.io import write_ome_zarr

    maps = [write_ome_zarr(m, tmp_path / f"{n}.ome.zarr", (1, 1, 1), levels=1, attrs={"model": {"threshold": t}})
            for m, n, t in [(a, "mito", 0.5), (b, "er", 0.72)]]
    write_class_map(maps, tmp_path / "d.ome.zarr")
    np.testing.assert_array_equal(open_volume(str(tmp_path / "d.ome.zarr"))[:, :, :], classes)


def test_uint8_probabilities_and_bad_thresholds():
    prob = da.from_array(np.array([[[0, 127, 128, 255]]], np.uint8))
    np.testing.assert_array_equal(threshold_mask(prob, 0.5).compute()[0, 0], [False, False, True, True])
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InvalidValuesError, match="threshold"):
            threshold_mask(prob, bad)
    with pytest.raises(InvalidValuesError, match="connectivity"):
        PostprocessConfig(connectivity=8)


def test_cli_postprocess(tmp_path, capsys):
    prob = blobs(seed=2).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    from emseg.io import write_ome_zarr

    write_ome_zarr(prob, tmp_path / "p.ome.zarr", (8, 8, 8), levels=1)
    out = tmp_path / "l.ome.zarr"
    assert main(["postprocess", str(tmp_path / "p.ome.zarr"), "-o", str(out), "-t", "0.6", "--fill-holes",
                 "--block", "8", "16", "16"]) == 0
    n = cc3d.connected_components(ndimage.binary_fill_holes(prob >= 0.6), return_N=True)[1]
    assert f"wrote {n} objects" in capsys.readouterr().out
    assert main(["postprocess", str(tmp_path / "p.ome.zarr"), "-o", str(out), "-t", "1.2"]) == 2
    assert "threshold must be in [0, 1]" in capsys.readouterr().err


def test_cli_default_threshold_is_the_models(tmp_path, capsys):
    """Without -t, postprocess uses the threshold stored with the model that made the map."""
    from emseg.io import write_ome_zarr
    from emseg.postprocess.pipeline import model_threshold

    prob = blobs(seed=2).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    plain = write_ome_zarr(prob, tmp_path / "plain.ome.zarr", (8, 8, 8), levels=1)
    stored = write_ome_zarr(prob, tmp_path / "p.ome.zarr", (8, 8, 8), levels=1, attrs={"model": {"threshold": 0.8}})
    assert model_threshold(plain) == 0.5 and model_threshold(stored) == 0.8
    assert main(["postprocess", str(stored), "-o", str(tmp_path / "l.ome.zarr")]) == 0
    n = cc3d.connected_components(prob >= 0.8, return_N=True)[1]
    assert n != cc3d.connected_components(prob >= 0.5, return_N=True)[1]
    assert f"wrote {n} objects" in capsys.readouterr().out


@pytest.mark.slow
def test_blockwise_components_on_lucchi_roi(shared_data):
    volume = open_volume(str(shared_data / "lucchi" / "train_mito.tif"))
    roi = volume[40:72, 128:384, 256:640] > 0
    from emseg.postprocess.components import connected_components

    labels, n = connected_components(da.from_array(roi, chunks=(16, 64, 96)), 26)
    expected, n_expected = cc3d.connected_components(roi, connectivity=26, return_N=True)
    assert n == n_expected > 5
    assert same_partition(labels.compute(), expected)
