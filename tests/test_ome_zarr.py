"""OME-Zarr writer: NGFF metadata, pyramids (mean / mode), atomic output, dask input."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import zarr

from emseg.errors import EmsegError, OutputExistsError
from emseg.io import array_volume, open_volume, write_ome_zarr
from emseg.io.ome_zarr import downsample_block, plan_levels


def test_ngff_04_metadata_on_zarr_v2(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (20, 64, 64), dtype=np.uint8)
    out = write_ome_zarr(data, tmp_path / "a.ome.zarr", voxel_size=(8, 4, 4), chunks=16, levels=3)
    attrs = json.loads((out / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["unit"] == "nanometer" for a in ms["axes"])
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales[0] == [8, 4, 4] and scales[1] == [8, 8, 8]  # y/x first, z when isotropic
    assert attrs["emseg"]["complete"] is True
    zarray = json.loads((out / "0" / ".zarray").read_text())
    assert zarray["chunks"] == [16, 16, 16] and zarray["dimension_separator"] == "/"
    np.testing.assert_array_equal(zarr.open_array(out / "0", mode="r")[:], data)


def test_zarr_v3_output_is_ngff_05(tmp_path):
    data = np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16)
    out = write_ome_zarr(data, tmp_path / "v3.ome.zarr", voxel_size=(5, 5, 5), chunks=8, zarr_format=3)
    group = zarr.open_group(out, mode="r")
    assert group.metadata.zarr_format == 3
    assert group.attrs["ome"]["version"] == "0.5"
    np.testing.assert_array_equal(open_volume(out)[:, :, :], data)


def test_label_pyramid_uses_mode_not_mean():
    block = np.array([[[1, 1], [1, 9]], [[9, 1], [3, 1]]], dtype=np.uint32)  # 2×2×2 → one voxel
    assert downsample_block(block, (2, 2, 2), "labels")[0, 0, 0] == 1
    assert downsample_block(block.astype(np.uint8), (2, 2, 2), "image")[0, 0, 0] == 3  # mean 26/8


def test_labels_written_with_mode_pyramid(tmp_path):
    labels = np.zeros((16, 32, 32), np.uint32)
    labels[:, :16] = 7
    labels[4:12, 20:28, 20:28] = 3
    out = write_ome_zarr(labels, tmp_path / "l.ome.zarr", voxel_size=(4, 4, 4), chunks=8, levels=2, kind="labels")
    level1 = open_volume(out, level=1)[:, :, :]
    assert set(np.unique(level1)) == {0, 3, 7}  # no averaged, invented label values
    assert level1.dtype == np.uint32


def test_labels_must_be_integers(tmp_path):
    with pytest.raises(EmsegError, match="labels must be integers"):
        write_ome_zarr(np.zeros((4, 8, 8), np.float32), tmp_path / "x.ome.zarr", (1, 1, 1), kind="labels")


def test_existing_output_refused_then_overwritten(tmp_path):
    data = np.ones((4, 8, 8), np.uint8)
    out = write_ome_zarr(data, tmp_path / "o.ome.zarr", (1, 1, 1))
    with pytest.raises(OutputExistsError, match="o.ome.zarr: output exists"):
        write_ome_zarr(data * 2, out, (1, 1, 1))
    write_ome_zarr(data * 2, out, (1, 1, 1), overwrite=True)
    assert open_volume(out)[0, 0, 0] == 2


class FailingReader:
    """Reads fine until the last z-slab, then fails like a disk error mid-conversion."""

    def __init__(self, data):
        self.data = data

    def __call__(self, region):
        if region[0].stop == self.data.shape[0]:
            raise OSError("simulated read failure")
        return self.data[region]


def test_failed_conversion_leaves_no_output(tmp_path):
    import dataclasses

    data = np.ones((32, 16, 16), np.uint8)
    volume = dataclasses.replace(array_volume(data, (1, 1, 1)), reader=FailingReader(data), chunks=(8, 16, 16))
    target = tmp_path / "half.ome.zarr"
    with pytest.raises(OSError, match="simulated"):
        write_ome_zarr(volume, target, chunks=8)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no temp folder left behind either


def test_dask_array_source_is_computed_blockwise(tmp_path):
    lazy = da.ones((24, 32, 32), chunks=8, dtype=np.uint8).map_blocks(lambda b: b * 5, dtype=np.uint8)
    out = write_ome_zarr(lazy, tmp_path / "d.ome.zarr", voxel_size=(2, 2, 2), chunks=8)
    volume = open_volume(out)
    assert volume.shape == (24, 32, 32) and volume.voxel_size == (2, 2, 2)
    assert int(volume[:, :, :].min()) == 5


def test_plan_levels_stop_when_small():
    plan = plan_levels((100, 1000, 1000), (50, 5, 5), None)
    assert plan[1][1] == (50, 10, 10)  # anisotropic: z kept until x/y catch up
    assert max(plan[-1][0]) <= 64
