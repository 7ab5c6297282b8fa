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


def voxel_tiff(path, shape=(8, 32, 32), seed=0):
    """A uint8 ImageJ TIFF at 5 nm."""
    data = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    tifffile.imwrite(path, data, imagej=True, resolution=(0.2, 0.2), metadata={"spacing": 5, "unit": "nm"})
    return path


def hidden(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---- item 1: temp names within NAME_MAX; paths over PATH_MAX -------------------------------
@pytest.mark.parametrize("length", [1, 200, 255])
def test_temp_names_fit_name_max_and_are_recognised(tmp_path, length):
    from emseg.io.tempfiles import NAME_MAX, leftovers, temp_sibling

    target = tmp_path / ("é" * (length // 2) + "a" * (length % 2))  # multi-byte names count in bytes
    for tag in ("partial", "old", "tmp"):
        temp = temp_sibling(target, tag)
        assert len(temp.name.encode()) <= NAME_MAX
        temp.mkdir()
    assert sorted(tag for _, tag, _, _ in leftovers(target)) == ["old", "partial", "tmp"]


def test_c91_output_name_of_249_chars_converts(tmp_path, capsys):
    tif = voxel_tiff(tmp_path / "raw.tif")
    out = tmp_path / ("a" * 240 + ".ome.zarr")
    code, err = run_cli(capsys, "convert", tif, out)
    assert code == 0, err
    assert (out / ".zattrs").exists() and hidden(tmp_path) == []


def test_c92_output_path_over_path_max_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tif = voxel_tiff(tmp_path / "raw.tif")
    out = "/".join(["d" * 200] * 25) + "/x.ome.zarr"
    code, err = run_cli(capsys, "convert", tif, out)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "too long" in err.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.tif"]


# ---- item 2: leftovers of killed runs ------------------------------------------------------
def dead_pid() -> int:
    """The pid of a process that has exited."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def fake_leftover(target, tag: str, pid: int, host: str | None = None):
    from emseg.io.tempfiles import host_tag, short_name

    path = target.with_name(f".{short_name(target.name)}.{tag}-{host or host_tag()}-{pid}-0123abcd")
    path.mkdir()
    (path / ".zgroup").write_text("{}")
    return path


def test_leftovers_of_killed_runs_are_removed_and_live_ones_kept(tmp_path):
    import subprocess

    from emseg.io import write_ome_zarr
    from emseg.io.tempfiles import LeftoverRemovedWarning, host_tag

    target = tmp_path / "out.ome.zarr"
    live = subprocess.Popen(["sleep", "60"])
    try:
        dead = fake_leftover(target, "partial", dead_pid())
        keep = [
            fake_leftover(target, "partial", live.pid),  # a run in progress on this host
            fake_leftover(target, "partial", dead_pid(), host="f" * 6 if host_tag() != "f" * 6 else "e" * 6),
            fake_leftover(tmp_path / "other.ome.zarr", "partial", dead_pid()),  # another output's
            tmp_path / ".out.ome.zarr.partial-1234abcd",  # not ours to judge (no pid in the name)
            tmp_path / ".out.ome.zarr.partial-ffffff-x-0123abcd",
        ]
        for path in keep[3:]:
            path.mkdir()
        with pytest.warns(LeftoverRemovedWarning, match=rf"removed {dead.name}, left by a killed emseg run"):
            write_ome_zarr(np.zeros((4, 8, 8), np.uint8), target, (1, 1, 1))
        assert not dead.exists() and all(path.exists() for path in keep)
        assert hidden(tmp_path) == sorted(p.name for p in keep if p.parent == tmp_path)
    finally:
        live.kill()
        live.wait()


def test_old_output_of_a_cut_replace_is_kept_while_the_output_is_missing(tmp_path):
    from emseg.io.tempfiles import remove_leftovers

    target = tmp_path / "out.ome.zarr"
    old = fake_leftover(target, "old", dead_pid())
    assert remove_leftovers(target) == [] and old.exists()
    target.mkdir()
    with pytest.warns(UserWarning):
        assert remove_leftovers(target) == [old]


def test_checkpoint_temp_of_a_killed_save_is_removed(tmp_path):
    from torch import nn

    from emseg.io.tempfiles import host_tag
    from emseg.models import save_checkpoint

    target = tmp_path / "last.pt"
    stale = tmp_path / f".last.pt.tmp-{host_tag()}-{dead_pid()}-0123abcd"
    stale.write_bytes(b"half a checkpoint")
    with pytest.warns(UserWarning, match="left by a killed emseg run"):
        save_checkpoint(target, nn.Linear(2, 2), architecture="x", model_config={}, voxel_size=(1, 1, 1),
                        normalization={"mean": 0.0, "std": 1.0})
    assert hidden(tmp_path) == [] and target.exists()


# ---- item 3: a full disk -------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs at tmp_path/small (needs root and mount(2)); unmounted afterwards."""
    import shutil
    import subprocess

    folder = tmp_path / "small"
    folder.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small tmpfs to fill")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not allowed here ({done.stderr.strip()})")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_c74_convert_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, small_disk, capsys):
    tif = voxel_tiff(tmp_path / "med.tif", shape=(32, 256, 256))  # 2 MiB of noise: does not fit
    out = small_disk / "med.ome.zarr"
    code, err = run_cli(capsys, "convert", tif, out)
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # progress bars aside
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"{out}: cannot write the output: no space left on device" in lines[0]
    assert list(small_disk.iterdir()) == []


def test_c76_checkpoint_save_on_a_full_disk_keeps_the_old_one(small_disk):
    import torch
    from torch import nn

    from emseg.errors import DiskFullError
    from emseg.models import build, load_checkpoint, save_checkpoint

    target = small_disk / "run" / "last.pt"
    kwargs = {"architecture": "unet3d", "model_config": {"fmaps": 2, "downsample_factors": [[2, 2, 2]]},
              "voxel_size": (8, 8, 8), "normalization": {"mean": 0.5, "std": 0.25}}
    small = build("unet3d", **kwargs["model_config"])
    save_checkpoint(target, small, **kwargs)
    before = target.read_bytes()
    big = nn.Linear(1024, 512)  # 2 MiB of weights
    with pytest.raises(DiskFullError, match=r"last.pt: cannot write the output: no space left on device"):
        save_checkpoint(target, big, **kwargs)
    assert target.read_bytes() == before and sorted(p.name for p in target.parent.iterdir()) == ["last.pt"]
    assert isinstance(load_checkpoint(target).model, torch.nn.Module)
