"""Fault injection: long names, stale temp folders, a full disk, assumed voxel sizes,
property-based parsers and planners, and kill -9 followed by a rerun (issue #24)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile

from emseg.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """Run ``emseg args`` in-process; return (exit code, stderr)."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def plain_tiff(path, shape=(16, 48, 48), seed=0):
    """A uint8 multipage TIFF with no voxel size in it."""
    data = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    tifffile.imwrite(path, data)
    return path


# ---- item 4: an assumed voxel size is never resampled ---------------------------------------
def test_assumed_voxel_size_is_flagged_and_cleared_by_an_explicit_one(tmp_path):
    from emseg.io import open_volume

    tif = plain_tiff(tmp_path / "x.tif")
    with pytest.warns(UserWarning, match="assuming 1 x 1 x 1 nm"):
        volume = open_volume(tif)
    assert volume.voxel_size_assumed
    assert not open_volume(tif, (10, 10, 10)).voxel_size_assumed
    assert not volume.with_voxel_size((10, 10, 10)).voxel_size_assumed


def test_predict_refuses_to_resample_an_assumed_voxel_size(tmp_path, capsys):
    tif = plain_tiff(tmp_path / "x.tif")
    out = tmp_path / "out.ome.zarr"
    code, err = run_cli(capsys, "predict", "mito", tif, out, "--allow-resample", "--device", "cpu")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "x.tif: voxel size 1 × 1 × 1 nm was assumed" in lines[0] and "--voxel-size" in lines[0]
    assert not out.exists()
