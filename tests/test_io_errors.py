"""Bad input gives one clear EmsegError naming the file and the problem (never a deep traceback)."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from emseg.errors import (
    AmbiguousSourceError,
    CorruptFileError,
    EmsegError,
    InvalidValuesError,
    InvalidVoxelSizeError,
    ShapeMismatchError,
    UnsupportedFormatError,
    VolumeNotFoundError,
)
from emseg.io import MissingVoxelSizeWarning, open_volume


def test_missing_path(tmp_path):
    with pytest.raises(VolumeNotFoundError, match="nope.tif: no such file"):
        open_volume(tmp_path / "nope.tif")


def test_unknown_extension(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match=r"notes.txt: unknown volume format '.txt'"):
        open_volume(path)


def test_corrupt_tiff(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00garbage that is not a TIFF")
    with pytest.raises(CorruptFileError, match="broken.tif: not a readable TIFF"):
        open_volume(path)


def test_truncated_multipage_tiff(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (10, 64, 64), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="cut.tif"):
        volume = open_volume(path, voxel_size=(1, 1, 1))
        volume[:, :, :]  # pragma: no cover - must fail at open already


def test_hdf5_without_dataset_lists_candidates(tmp_path):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=np.zeros((2, 8, 8), np.uint8))
        f.create_dataset("labels/mito", data=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(AmbiguousSourceError) as err:
        open_volume(path)
    assert "two.h5" in str(err.value) and "/raw" in str(err.value) and "/labels/mito" in str(err.value)
    with pytest.raises(EmsegError, match="nothing"):
        open_volume(f"{path}:/nothing")


def test_hdf5_single_dataset_is_picked(tmp_path):
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(32, dtype=np.uint8).reshape(2, 4, 4))
    assert open_volume(path, voxel_size=(1, 1, 1))[1, 0, 0] == 16


def test_zarr_group_lists_arrays(tmp_path):
    path = tmp_path / "group.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=2)
    root.create_array("raw", shape=(2, 4, 4), dtype="uint8")
    root.create_array("mito", shape=(2, 4, 4), dtype="uint8")
    with pytest.raises(AmbiguousSourceError) as err:
        open_volume(path)
    assert "group.zarr" in str(err.value) and "raw" in str(err.value) and "mito" in str(err.value)


def test_slice_folder_shape_mismatch_names_file(tmp_path):
    for z in range(3):
        tifffile.imwrite(tmp_path / f"s{z}.tif", np.zeros((8, 8) if z != 2 else (8, 9), np.uint8))
    with pytest.raises(ShapeMismatchError, match=r"s2.tif: slice has shape \(8, 9\)"):
        open_volume(tmp_path)


def test_empty_folder(tmp_path):
    with pytest.raises(UnsupportedFormatError, match="holds no image slices"):
        open_volume(tmp_path)


def test_rgb_needs_channel(tmp_path):
    path = tmp_path / "rgb.tif"
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 1] = 200
    tifffile.imwrite(path, rgb, photometric="rgb")
    with pytest.raises(InvalidValuesError, match="--channel"):
        open_volume(path, voxel_size=(1, 1, 1))
    green = open_volume(path, voxel_size=(1, 1, 1), channel=1)
    assert green.shape == (1, 16, 16) and int(green[0, 0, 0]) == 200
    with pytest.raises(InvalidValuesError, match="channel 5 out of range"):
        open_volume(path, voxel_size=(1, 1, 1), channel=5)


def test_nan_in_float_volume(tmp_path):
    path = tmp_path / "nan.tif"
    data = np.ones((2, 8, 8), np.float32)
    data[1, 3, 3] = np.nan
    tifffile.imwrite(path, data)
    volume = open_volume(path, voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(volume[0], 1)  # clean regions still read
    with pytest.raises(InvalidValuesError, match="nan.tif: float volume contains NaN"):
        volume[1]


@pytest.mark.parametrize("bad", [(0, 1, 1), (-4, 4, 4), (4, 4), (float("nan"), 1, 1)])
def test_bad_voxel_size(tmp_path, bad):
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(InvalidVoxelSizeError, match="v.tif"):
        open_volume(path, voxel_size=bad)


def test_missing_voxel_size_warns_and_assumes_1nm(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = open_volume(path)
    assert volume.voxel_size == (1.0, 1.0, 1.0) and volume.shape == (2, 8, 8)
    assert any(issubclass(w.category, MissingVoxelSizeWarning) and "plain.tif" in str(w.message) for w in caught)


def test_region_out_of_range(tmp_path):
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8))
    volume = open_volume(path, voxel_size=(1, 1, 1))
    with pytest.raises(IndexError):
        volume[5]
    with pytest.raises(IndexError):
        volume[0:2:2, :, :]
