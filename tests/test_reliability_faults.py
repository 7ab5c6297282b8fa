"""Reliability review, the "traceback" cases: corrupt chunks, outputs the file system refuses
(read-only, no permission, link loops) and option values pydantic refuses.

Every case runs ``emseg.cli.main`` and must end in one line ``emseg: error: <path>: <problem>``,
exit code 2, no traceback and nothing left under the output's name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from emseg.cli import main

META = {"resolution": (1 / 0.008, 1 / 0.008), "metadata": {"spacing": 0.008, "unit": "micron"}}


@pytest.fixture(scope="module")
def data():
    """Inputs of every command here, in a folder any user may read (see `other_user`)."""
    folder = Path(tempfile.mkdtemp(prefix="emseg-faults-"))
    folder.chmod(0o755)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (16, 40, 40), dtype=np.uint8)
    labels = np.zeros(raw.shape, np.uint8)
    labels[4:12, 10:30, 10:30] = 1
    strokes = np.zeros(raw.shape, np.uint8)
    strokes[8, 20, 15:25] = 1
    strokes[8, 2, 2:38] = 2
    tifffile.imwrite(folder / "raw.tif", raw, imagej=True, **META)
    tifffile.imwrite(folder / "mito.tif", labels, imagej=True, **META)
    tifffile.imwrite(folder / "strokes.tif", strokes, imagej=True, **META)
    tifffile.imwrite(folder / "prob.tif", (labels * 0.9).astype(np.float32), imagej=True, **META)
    source = {"raw": str(folder / "raw.tif"), "labels": str(folder / "mito.tif"), "voxel_size": [8, 8, 8]}
    config = {"model": {"architecture": "unet3d", "fmaps": 2, "downsample_factors": [[2, 2, 2]]},
              "output_shape": [8, 8, 8], "num_workers": 0, "iterations": 1, "validate_every": 1,
              "train": [source], "validation": [source], "output_dir": str(folder / "run")}
    (folder / "ok.yaml").write_text(yaml.safe_dump(config))
    (folder / "negshape.yaml").write_text(yaml.safe_dump({**config, "output_shape": [-16, 0, 16]}))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def listing(root: Path) -> dict[str, int]:
    """Every file and folder under ``root`` (hidden .partial ones too) with its size."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1) for p in sorted(root.rglob("*"))}


def run_cli(args: list[str], capsys) -> str:
    """``main(args)`` must exit 2 with one error line and no traceback; returns that line."""
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "Traceback" not in out + err, err
    lines = [line[line.index("emseg: error:"):] for line in err.splitlines() if "emseg: error:" in line]
    assert len(lines) == 1, err  # (after a progress bar's carriage return, when there is one)
    return lines[0]


# --- 1. corrupt chunks: CorruptFileError naming the file and the chunk -----------------------


def corrupt_zarr(folder: Path) -> str:
    """C13: a zarr v2 array whose chunk 1.1.0 is cut to 50 bytes."""
    import zarr

    array = zarr.create_array(str(folder / "corrupt_chunk.zarr"), shape=(32, 32, 32), chunks=(16, 16, 16),
                              dtype="uint8", zarr_format=2)
    array[:] = np.random.default_rng(0).integers(0, 255, (32, 32, 32), dtype=np.uint8)
    chunk = folder / "corrupt_chunk.zarr" / "1.1.0"
    chunk.write_bytes(chunk.read_bytes()[:50])
    return str(folder / "corrupt_chunk.zarr")


def corrupt_hdf5(folder: Path) -> str:
    """C15: an HDF5 dataset whose 4th gzip chunk is zeroed."""
    import h5py

    path = folder / "badchunk.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("raw", data=np.random.default_rng(0).integers(0, 255, (32, 32, 32), dtype=np.uint8),
                              chunks=(16, 16, 16), compression="gzip")
        info = ds.id.get_chunk_info(3)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\0" * info.size)
    return f"{path}:/raw"


CORRUPT = [  # (review case, input maker, words of the error)
    ("C13", corrupt_zarr, ["corrupt_chunk.zarr: cannot read zarr array", "corrupt_chunk.zarr/1.1.0"]),
    ("C15", corrupt_hdf5, ["badchunk.h5: cannot read HDF5 dataset /raw", "corrupt"]),
]


@pytest.mark.parametrize("case, make, words", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_chunk_is_a_one_line_error(case, make, words, tmp_path, capsys):
    source = make(tmp_path)
    before = listing(tmp_path)
    line = run_cli(["convert", source, str(tmp_path / "out.ome.zarr"), "--voxel-size", "8", "8", "8"], capsys)
    assert all(w in line for w in words), line
    assert listing(tmp_path) == before  # no output, no hidden .partial


def test_corrupt_zarr_chunk_with_zarr_python_backend(tmp_path):
    """The same chunk read by zarr-python (not tensorstore) is a CorruptFileError too."""
    from emseg.errors import CorruptFileError
    from emseg.io import open_volume

    volume = open_volume(corrupt_zarr(tmp_path), (8, 8, 8), backend="zarr")
    with pytest.raises(CorruptFileError, match=r"corrupt_chunk.zarr: cannot read zarr array at z, y, x 16:32"):
        volume[16:32, 16:32, 0:16]


def test_broken_n5_attributes_is_one_short_line(tmp_path, capsys):
    """C132: already a CorruptFileError; now without tensorstore's spec dump."""
    import tensorstore as ts

    spec = {"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "bad.n5")},
            "metadata": {"dimensions": [8, 8, 8], "blockSize": [8, 8, 8], "dataType": "uint8",
                         "compression": {"type": "gzip"}}, "create": True}
    ts.open(spec).result()[...] = 1
    (tmp_path / "bad.n5" / "attributes.json").write_text('{"dimensions": [8, 8')
    line = run_cli(["info", str(tmp_path / "bad.n5")], capsys)
    assert "bad.n5: cannot open N5 dataset" in line and "attributes.json" in line and "Invalid JSON" in line, line
    assert "tensorstore_spec" not in line and len(line) < 300, line


# --- 2. outputs the file system refuses, found before any work -----------------------------


def commands(data: Path, out: Path) -> dict[str, list[str]]:
    """The review's commands with their output under the folder ``out``."""
    return {
        "C64": ["convert", str(data / "raw.tif"), str(out / "out.ome.zarr")],
        "C66": ["postprocess", str(data / "prob.tif"), "-o", str(out / "pp.ome.zarr")],
        "C67": ["measure", str(data / "mito.tif"), "-o", str(out / "m.csv"), "--no-surface"],
        "C68": ["mesh", str(data / "mito.tif"), str(out / "meshes"), "--ids", "1"],
        "C69": ["train", str(data / "ok.yaml"), "--device", "cpu", "--output-dir", str(out / "run")],
        "C70": ["prepare", "clahe", str(data / "raw.tif"), str(out / "c.ome.zarr"), "--kernel-size", "8"],
        "C71": ["annotate", str(data / "raw.tif"), str(data / "strokes.tif"), "-o", str(out / "a.ome.zarr")],
        "C73": ["convert", str(data / "raw.tif"), str(out / "sub" / "deeper" / "x.ome.zarr")],
    }


@pytest.fixture
def readonly_fs(tmp_path):
    """A folder on a read-only file system: a read-only tmpfs mount (root with mount rights),
    else, for a normal user, a chmod 555 folder (EACCES instead of EROFS, the same code path)."""
    folder = tmp_path / "rofs"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("case", ["C64", "C66", "C67", "C68", "C69", "C70", "C71"])
def test_read_only_file_system_is_refused_first(case, data, readonly_fs, capsys):
    args = commands(data, readonly_fs)[case]
    output = next(a for a in args if a.startswith(str(readonly_fs)))
    before = listing(data)
    line = run_cli(args, capsys)
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert line.startswith(f"emseg: error: {output}: cannot write the output") and reason in line, line
    assert not any(readonly_fs.iterdir()) and listing(data) == before


@contextlib.contextmanager
def other_user(uid: int = 65534):
    """Run the block with effective uid ``uid`` (nobody) when we are root, for whom the kernel
    ignores a folder's mode: the permission check is then the kernel's own, not a simulation
    (a monkeypatched ``os.access`` would only test that we call it). Not root: nothing to do."""
    if os.geteuid() != 0:
        yield
        return
    # import now what the commands import late: the interpreter's stdlib may be unreadable as nobody
    import emseg.annotate
    import emseg.prepare.clahe  # noqa: F401

    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.mark.parametrize("case", ["C70", "C71", "C73", "C64"])
def test_folder_without_write_permission_is_refused_first(case, data, capsys):
    """C70, C71 (before its graph cut), C73 (a new subfolder of it): into a chmod 555 folder."""
    with tempfile.TemporaryDirectory(prefix="emseg-ro555-") as tmp:
        Path(tmp).chmod(0o755)
        folder = Path(tmp) / "ro555"
        folder.mkdir(mode=0o555)
        args = commands(data, folder)[case]
        output = next(a for a in args if a.startswith(str(folder)))
        try:
            with other_user():
                line = run_cli(args, capsys)
            assert line.startswith(f"emseg: error: {output}: cannot write the output"), line
            assert "(Permission denied)" in line, line
            if case == "C73":  # names the folder that refuses, not only the one it would create
                assert f"in {folder}" in line, line
            assert not any(folder.iterdir())
        finally:
            folder.chmod(0o755)


@pytest.mark.parametrize("case, output, words", [
    ("C89", "loopA.ome.zarr_x/../loopA.tif", "Too many levels of symbolic links"),  # ends in a link loop
    ("C89-file", "raw.tif/out.ome.zarr", "Not a directory"),  # a file used as a folder
    ("C89-long", "x" * 300 + ".ome.zarr", "File name too long"),
])
def test_output_path_the_os_cannot_resolve(case, output, words, data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(data / "raw.tif", tmp_path / "raw.tif")
    (tmp_path / "loopA.tif").symlink_to("loopB.tif")
    (tmp_path / "loopB.tif").symlink_to("loopA.tif")
    before = listing(tmp_path)
    line = run_cli(["convert", "raw.tif", output], capsys)
    assert line.startswith(f"emseg: error: {output}: cannot write the output") and words in line, line
    assert listing(tmp_path) == before  # no stray loopA.ome.zarr_x folder


def test_os_error_backstop_names_the_file_in_one_line():
    """An OSError of the file system (not a bug) that gets past the checks becomes one line."""
    from emseg.cli import os_error_line

    assert os_error_line(OSError(errno.EROFS, "Read-only file system", "out/x.csv")) == \
        "out/x.csv: Read-only file system"
    assert os_error_line(OSError(errno.EROFS, "Read-only file system")) is None  # no file: keep the traceback
    assert os_error_line(FileNotFoundError(errno.ENOENT, "No such file", "x")) is None  # may be a bug
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", "d/.c.ome.zarr.partial-0a7c-25-32f")) == \
        "d/c.ome.zarr: cannot write the output (Permission denied)"  # the output, not its hidden temporary


def test_os_error_backstop_in_main(data, tmp_path, monkeypatch, capsys):
    """A write that fails after the checks (here: CSV writing made to fail) exits 2 in one line."""
    import pandas as pd

    def refuse(self, path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", refuse)
    line = run_cli(["measure", str(data / "mito.tif"), "-o", str(tmp_path / "m.csv"), "--no-surface"], capsys)
    assert line == f"emseg: error: {tmp_path / 'm.csv'}: Read-only file system", line


# --- 3. options and config values refused before any work ----------------------------------

OPTIONS = [  # (review case, arguments, words of the error)
    ("Y_negshape", ["train", "{data}/negshape.yaml", "--device", "cpu", "--output-dir", "{tmp}/run_negshape"],
     "negshape.yaml: output_shape: output_shape must be three positive sizes"),
    ("C96", ["evaluate", "{data}/prob.tif", "{data}/mito.tif", "--sweep", "0.9:0.1:0.1"],
     "--sweep '0.9:0.1:0.1': expected START:STOP:STEP"),
    ("C96-empty", ["evaluate", "{data}/prob.tif", "{data}/mito.tif", "--sweep", ","], "--sweep ','"),
    ("C96-range", ["evaluate", "{data}/prob.tif", "{data}/mito.tif", "--sweep", "0.5:1.5:0.5"], "in [0, 1]"),
    ("C111", ["prepare", "clahe", "{data}/raw.tif", "{tmp}/cl111.ome.zarr", "--kernel-size", "0"],
     "--kernel-size 0: kernel_size must be a positive int"),
    ("C112", ["prepare", "clahe", "{data}/raw.tif", "{tmp}/cl112.ome.zarr", "--clip-limit", "-1"],
     "--clip-limit -1.0: Input should be greater than or equal to 0"),
    ("C117", ["pretrain", "{tmp}/plain.zarr", "-o", "{tmp}/enc117.pt", "--arch", "resnet9000", "--epochs", "1"],
     "--arch resnet9000: Input should be 'resnet18', 'resnet34' or 'resnet50'"),
]


@pytest.mark.parametrize("case, args, words", OPTIONS, ids=[o[0] for o in OPTIONS])
def test_bad_option_values_are_one_line_errors(case, args, words, data, tmp_path, capsys):
    args = [a.format(data=data, tmp=tmp_path) for a in args]
    before = listing(data)
    line = run_cli(args, capsys)
    assert words in line, line
    assert not any(tmp_path.iterdir()) and listing(data) == before


def test_a_validation_error_reaching_main_is_one_line(monkeypatch, capsys):
    """Any pydantic ValidationError that a command does not translate itself: one line, exit 2."""
    from pydantic import BaseModel, Field

    import emseg.io.options

    class Settings(BaseModel):
        size: int = Field(1, gt=0)

    monkeypatch.setattr(emseg.io.options, "require_positive", lambda *a: Settings(size=0))
    line = run_cli(["convert", "raw.tif", "x.ome.zarr"], capsys)
    assert line == "emseg: error: Settings: size: Input should be greater than 0", line
