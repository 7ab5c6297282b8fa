"""`emseg prepare ...`: OME-Zarr outputs with the voxel size kept, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.cli import main
from emseg.io import open_volume, write_ome_zarr
from emseg.masks import boundary_exclusion_mask


@pytest.fixture(scope="module")
def cell(tmp_path_factory, synth_small):
    folder = tmp_path_factory.mktemp("prepare_cli")
    labels = np.zeros(synth_small.raw.shape, np.uint8)
    labels[8:20, 10:40, 20:50] = 1
    raw = write_ome_zarr(synth_small.raw, folder / "raw.ome.zarr", (8.0, 6.0, 6.0))
    lab = write_ome_zarr(labels, folder / "labels.ome.zarr", (8.0, 6.0, 6.0), kind="labels")
    return folder, str(raw), str(lab), labels


@pytest.mark.timeout(120)
def test_commands_write_ome_zarr_with_voxel_size(cell, synth_small):
    folder, raw, labels, label_array = cell
    outputs = {
        "clahe": ["clahe", raw, str(folder / "clahe.ome.zarr"), "--kernel-size", "16"],
        "sample": ["sample-mask", raw, str(folder / "mask.ome.zarr"), "--low", "40", "--high", "220",
                   "--min-object-size", "100", "--max-hole-size", "100"],
        "exclusion": ["exclusion-mask", labels, str(folder / "excl.ome.zarr"), "--organelle", "mito",
                      "--image", raw],
        "match": ["match-histogram", raw, str(folder / "clahe.ome.zarr"), str(folder / "matched.ome.zarr")],
    }
    for args in outputs.values():
        assert main(["prepare", *args]) == 0
    for name in ("clahe", "mask", "excl", "matched"):
        volume = open_volume(str(folder / f"{name}.ome.zarr"))
        assert volume.voxel_size == (8.0, 6.0, 6.0) and volume.shape == synth_small.raw.shape
    excl = open_volume(str(folder / "excl.ome.zarr"))[:, :, :]
    assert (excl == boundary_exclusion_mask(label_array, 4)).all()
    mask = open_volume(str(folder / "mask.ome.zarr"))[:, :, :]
    assert set(np.unique(mask)) <= {0, 1}


def test_command_errors(cell, capsys, tmp_path):
    folder, raw, labels, _ = cell
    bad_labels = write_ome_zarr(np.zeros((4, 4, 4), np.uint8), tmp_path / "small.ome.zarr", (8.0, 6.0, 6.0),
                                kind="labels")
    float_labels = write_ome_zarr(np.zeros((4, 4, 4), np.float32), tmp_path / "float.ome.zarr", (8.0, 6.0, 6.0))
    cases = [
        (["exclusion-mask", labels, str(tmp_path / "a.ome.zarr"), "--width", "-1"], "non-negative"),
        (["exclusion-mask", str(bad_labels), str(tmp_path / "b.ome.zarr"), "--width", "2", "--image", raw], "shape"),
        (["exclusion-mask", str(float_labels), str(tmp_path / "c.ome.zarr"), "--width", "2"], "integers"),
        (["exclusion-mask", labels, str(tmp_path / "d.ome.zarr")], "--width"),
        (["clahe", raw, str(folder / "raw.ome.zarr")], "the output is the input"),
    ]
    for args, message in cases:
        assert main(["prepare", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("emseg: error:") and message in err, err
    assert not (tmp_path / "a.ome.zarr").exists()
