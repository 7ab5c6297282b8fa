"""`emseg info`, `emseg convert`, `emseg demo`: output, progress, exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from emseg.cli import main
from emseg.io import open_volume


@pytest.fixture
def stack(tmp_path):
    path = tmp_path / "stack.tif"
    data = np.random.default_rng(0).integers(0, 200, (8, 40, 48), dtype=np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.005, 1 / 0.005),
                     metadata={"spacing": 0.01, "unit": "micron", "axes": "ZYX"})
    return path, data


def test_info_prints_shape_dtype_voxel_size(stack, capsys):
    path, data = stack
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(8, 40, 48)" in out and "uint16" in out and "(10.0, 5.0, 5.0)" in out
    assert f"max {data[4].max()}" in out


def test_convert_roundtrip_with_voxel_size_override(stack, tmp_path, capsys):
    path, data = stack
    out = tmp_path / "out.ome.zarr"
    assert main(["convert", str(path), str(out), "--voxel-size", "20", "4", "4", "--chunks", "16"]) == 0
    volume = open_volume(out)
    assert volume.voxel_size == (20.0, 4.0, 4.0) and volume.chunks == (8, 16, 16)
    np.testing.assert_array_equal(volume[:, :, :], data)
    assert "wrote" in capsys.readouterr().out


def test_convert_refuses_existing_output(stack, tmp_path, capsys):
    path, _ = stack
    out = tmp_path / "out.ome.zarr"
    assert main(["convert", str(path), str(out)]) == 0
    capsys.readouterr()
    assert main(["convert", str(path), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emseg: error:") and "--overwrite" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "missing.tif"], "missing.tif: no such file"),
        (["info", "stack.tif", "--voxel-size", "0", "5", "5"], "voxel size must be positive"),
    ],
)
def test_errors_are_one_line_exit_2(stack, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.slow
def test_installed_entry_point_and_help(tmp_path):
    """The console script runs as a user would type it; every command has useful help."""
    for command in ([], ["info"], ["convert"], ["demo"]):
        result = subprocess.run([sys.executable, "-m", "emseg", *command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout
    result = subprocess.run([sys.executable, "-m", "emseg", "info", str(tmp_path / "none.h5")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "none.h5: no such file" in result.stderr
