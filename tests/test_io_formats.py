"""Every supported format opens lazily with the right shape, dtype, voxel size and region reads."""

from __future__ import annotations

import pickle

import h5py
import mrcfile
import numpy as np
import pytest
import tifffile
import zarr

from emseg.io import open_volume, to_uint8, write_ome_zarr
from emseg.io.normalize import estimate_value_range

DTYPES = ["uint8", "uint16", "int8", "int16", "float32"]


def sample(dtype: str, shape=(7, 20, 24)) -> np.ndarray:
    rng = np.random.default_rng(1)
    if dtype == "float32":
        return rng.normal(size=shape).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def check(volume, data: np.ndarray, voxel_size=None) -> None:
    assert volume.shape == data.shape
    assert volume.dtype == data.dtype
    np.testing.assert_array_equal(volume[2:5, 3:11, 4:20], data[2:5, 3:11, 4:20])
    np.testing.assert_array_equal(volume[1], data[1])
    np.testing.assert_array_equal(np.asarray(volume), data)
    if voxel_size is not None:
        assert volume.voxel_size == pytest.approx(voxel_size)
    # lazy volumes travel to Dask workers: they must pickle and read after unpickling
    clone = pickle.loads(pickle.dumps(volume))
    np.testing.assert_array_equal(clone[0:2, 0:5, 0:5], data[0:2, 0:5, 0:5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_multipage_tiff_imagej_voxel_size(tmp_path, dtype):
    data = sample(dtype)
    path = tmp_path / "stack.tif"
    if dtype in ("int8", "int16", "float32"):
        tifffile.imwrite(path, data)
        check(open_volume(path, voxel_size=(30, 4, 4)), data, (30, 4, 4))
    else:
        tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.004, 1 / 0.004),
                         metadata={"spacing": 0.03, "unit": "micron", "axes": "ZYX"})
        check(open_volume(path), data, (30, 4, 4))


def test_slice_folder_natural_sort(tmp_path):
    data = sample("uint8", (12, 16, 18))
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(12):  # slice_2.tif must come before slice_10.tif
        tifffile.imwrite(folder / f"slice_{z}.tif", data[z])
    check(open_volume(folder, voxel_size=(5, 5, 5)), data, (5, 5, 5))


def test_png_slices(tmp_path):
    from PIL import Image

    data = sample("uint8", (3, 16, 18))
    folder = tmp_path / "png"
    folder.mkdir()
    for z in range(3):
        Image.fromarray(data[z]).save(folder / f"{z:03d}.png")
    volume = open_volume(folder, voxel_size=(5, 5, 5))
    np.testing.assert_array_equal(volume[:, :, :], data)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hdf5_with_inner_path(tmp_path, dtype):
    data = sample(dtype)
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("volumes/raw", data=data, chunks=(4, 8, 8))
        ds.attrs["element_size_um"] = [0.008, 0.004, 0.004]
        f.create_dataset("volumes/labels", data=np.zeros(data.shape, np.uint8))
    check(open_volume(f"{path}:/volumes/raw"), data, (8, 4, 4))


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_zarr_arrays(tmp_path, zarr_format, backend):
    data = sample("uint16")
    path = tmp_path / f"vol{zarr_format}.zarr"
    arr = zarr.create_array(path, shape=data.shape, chunks=(4, 8, 8), dtype=data.dtype, zarr_format=zarr_format)
    arr[:] = data
    volume = open_volume(path, voxel_size=(6, 6, 6), backend=backend)
    check(volume, data, (6, 6, 6))
    assert volume.chunks == (4, 8, 8)


def test_ome_zarr_levels_and_voxel_size(tmp_path):
    data = sample("uint8", (16, 40, 48))
    out = write_ome_zarr(data, tmp_path / "img.ome.zarr", voxel_size=(10, 5, 5), chunks=8, levels=3)
    check(open_volume(out), data, (10, 5, 5))
    level1 = open_volume(out, level=1)
    assert level1.shape == (16, 20, 24)  # z (10 nm) is coarser than 1.5 × 5 nm: kept at first
    assert level1.voxel_size == pytest.approx((10, 10, 10))
    expected = data.reshape(16, 20, 2, 24, 2).astype(float).mean(axis=(2, 4))
    assert np.abs(level1[:, :, :].astype(float) - expected).max() <= 1.0


def test_n5_through_tensorstore(tmp_path):
    import tensorstore as ts

    data = sample("uint8")
    path = tmp_path / "vol.n5"
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(path / "raw")},
                     "metadata": {"dimensions": list(data.shape[::-1]), "blockSize": [8, 8, 4],
                                  "dataType": "uint8", "compression": {"type": "gzip"}},
                     "create": True}).result()
    store.write(data.transpose(2, 1, 0)).result()  # N5 stores x fastest: tensorstore sees (x, y, z)
    attrs = path / "raw" / "attributes.json"
    import json

    meta = json.loads(attrs.read_text())
    meta["resolution"] = [4.0, 4.0, 40.0]  # x, y, z
    attrs.write_text(json.dumps(meta))
    check(open_volume(f"{path}/raw"), data, (40, 4, 4))


def test_mrc_voxel_size_from_header(tmp_path):
    data = sample("int16")
    path = tmp_path / "tomo.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (20.0, 20.0, 20.0)  # Ångström
    check(open_volume(path), data, (2, 2, 2))


def test_to_uint8_rules():
    np.testing.assert_array_equal(to_uint8(np.array([0, 255, 65535], np.uint16)), [0, 0, 255])
    np.testing.assert_array_equal(to_uint8(np.array([-128, 0, 127], np.int8)), [0, 128, 255])
    np.testing.assert_array_equal(to_uint8(np.array([-32768, 32767], np.int16)), [0, 255])
    np.testing.assert_array_equal(to_uint8(np.array([-1.0, 0.0, 1.0], np.float32)), [0, 128, 255])
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 2.0], np.float32), value_range=(0, 4)), [0, 128])
    outlier = np.r_[np.linspace(0, 1, 99), 1000.0].astype(np.float32)
    assert to_uint8(outlier, percentiles=(0, 98))[50] > 100  # the outlier does not squash the rest


def test_estimate_value_range_on_lazy_volume(tmp_path):
    data = sample("float32", (20, 16, 16))
    lo, hi = estimate_value_range(open_volume(write_ome_zarr(data, tmp_path / "f.ome.zarr", (1, 1, 1))))
    assert lo == pytest.approx(data.min(), abs=0.5) and hi == pytest.approx(data.max(), abs=0.5)


@pytest.mark.slow
def test_real_lucchi_and_isbi(shared_data):
    lucchi = open_volume(shared_data / "lucchi" / "train_image.tif")
    assert lucchi.shape == (165, 768, 1024) and lucchi.dtype == np.uint8
    assert lucchi.voxel_size == pytest.approx((5, 5, 5))
    block = lucchi[100:102, 10:74, 500:564]
    assert block.shape == (2, 64, 64) and block.std() > 5  # real image content
    isbi = open_volume(shared_data / "isbi2012" / "train_image.tif")
    assert isbi.shape == (30, 512, 512) and isbi.voxel_size == pytest.approx((50, 4, 4))
