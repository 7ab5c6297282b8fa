"""Fault injection: long names, stale temp folders, a full disk, assumed voxel sizes,
property-based parsers and planners, and kill -9 followed by a rerun (issue #24)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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



@pytest.mark.slow
def test_c76_train_on_a_full_disk_is_one_line_and_leaves_no_temp(kill_inputs, small_disk, capsys):
    import os

    stat = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 16384))
    run = small_disk / "run"
    code, err = run_cli(capsys, "train", kill_inputs / "train.yaml", "--device", "cpu", "--output-dir", run)
    assert code == 2 and "Traceback" not in err, err
    assert err.count("emseg: error:") == 1, err  # the progress bar shares stderr
    message = err.split("emseg: error:")[1].split("\n")[0]
    assert f"{run}/last.pt: cannot write the output: no space left on device" in message or \
        f"{run}/best.pt: cannot write the output: no space left on device" in message, err
    assert hidden(run) == [] and not any(p.suffix == ".pt" for p in run.iterdir())

# ---- item 5: property-based tests of the parsers and the block planner ---------------------
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SHAPES = st.tuples(*[st.integers(1, 40)] * 3)


@st.composite
def shape_and_roi(draw):
    """A volume shape and a valid ROI in it, as (lo, hi) pairs."""
    shape = draw(SHAPES)
    pairs = []
    for n in shape:
        lo = draw(st.integers(0, n - 1))
        pairs.append((lo, draw(st.integers(lo + 1, n))))
    return shape, pairs


@FAST
@given(text=st.text(max_size=40), shape=SHAPES)
def test_roi_parser_raises_only_emseg_errors(text, shape):
    from emseg.blocks import parse_roi
    from emseg.errors import EmsegError

    try:
        region = parse_roi(text, shape, "vol.tif")
    except EmsegError:
        return
    assert all(0 <= s.start < s.stop <= n for s, n in zip(region, shape))


@FAST
@given(case=shape_and_roi(), spaces=st.booleans(), open_ends=st.booleans())
def test_roi_parser_round_trips_valid_rois(case, spaces, open_ends):
    from emseg.blocks import parse_roi

    shape, pairs = case
    sep = ", " if spaces else ","
    parts = []
    for (lo, hi), n in zip(pairs, shape):
        parts.append(f"{'' if open_ends and lo == 0 else lo}:{'' if open_ends and hi == n else hi}")
    region = parse_roi(sep.join(parts), shape, "vol.tif")
    assert [(s.start, s.stop) for s in region] == pairs
    assert parse_roi(pairs, shape) == region


@pytest.fixture(scope="module")
def small_tif(tmp_path_factory):
    return voxel_tiff(tmp_path_factory.mktemp("vs") / "v.tif", shape=(2, 8, 8))


@settings(FAST, max_examples=25)
@given(values=st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=12),
                       min_size=0, max_size=4))
def test_voxel_size_option_gives_exit_0_or_2_never_a_traceback(values, small_tif, capsys):
    import math

    code, err = run_cli(capsys, "info", small_tif, "--voxel-size", *values)
    assert code in (0, 2) and "Traceback" not in err, (values, err)
    if code == 0:
        numbers = [float(v) for v in values]
        assert len(numbers) == 3 and all(math.isfinite(v) and v > 0 for v in numbers)


@settings(FAST, max_examples=15)
@given(values=st.tuples(*[st.floats(min_value=1e-3, max_value=1e6, allow_nan=False)] * 3))
def test_voxel_size_option_round_trips_valid_sizes(values, small_tif, capsys):
    capsys.readouterr()
    code = main(["info", str(small_tif), "--voxel-size", *map(repr, values)])
    out = capsys.readouterr().out
    assert code == 0 and f"voxel size (nm): {values}" in out


@FAST
@given(values=st.tuples(*[st.floats(allow_nan=True, allow_infinity=True)] * 3))
def test_check_voxel_size_accepts_positive_finite_else_emseg_error(values):
    import math

    from emseg.errors import InvalidVoxelSizeError
    from emseg.io.volume import check_voxel_size

    if all(math.isfinite(v) and v > 0 for v in values):
        assert check_voxel_size(values) == values
    else:
        with pytest.raises(InvalidVoxelSizeError):
            check_voxel_size(values)


@st.composite
def plans(draw):
    """Arguments of plan_blocks: shape, chunks, block (a multiple of them), context, ROI."""
    shape, pairs = draw(shape_and_roi())
    chunks = draw(st.tuples(*[st.integers(1, 8)] * 3))
    block = tuple(c * draw(st.integers(1, 3)) for c in chunks)
    lo = draw(st.tuples(*[st.integers(0, 6)] * 3))
    hi = draw(st.tuples(*[st.integers(0, 6)] * 3))
    return shape, chunks, block, lo, hi, tuple(slice(a, b) for a, b in pairs)


class RecordingVolume:
    """A numpy volume that fails any read outside itself."""

    def __init__(self, data):
        self.data, self.shape = data, data.shape

    def __getitem__(self, key):
        for s, n in zip(key, self.shape):
            assert 0 <= s.start < s.stop <= n, f"read {key} outside shape {self.shape}"
        return self.data[key]


PAD = 64  # more than any read reaches outside the volume


@settings(max_examples=80, deadline=None)
@given(args=plans())
def test_block_plan_covers_the_roi_once_and_reads_stay_in_bounds(args):
    from emseg.blocks import plan_blocks, reflect_read

    shape, chunks, block, lo, hi, roi = args
    read = tuple(b + a + c for b, a, c in zip(block, lo, hi))
    plan = plan_blocks(shape, block, read, lo, chunks, roi)
    count = np.zeros(shape, np.int32)
    for b in plan.blocks:
        assert all(0 <= s.start < s.stop <= n and s.start % c == 0 for s, n, c in zip(b.write, shape, chunks))
        count[b.write] += 1
        assert all(r <= s.start and r + n >= s.stop for r, n, s in zip(b.read_start, read, b.write))
    inside = count[roi]
    assert inside.min() == 1 and count.max() == 1  # the ROI once; chunk-aligned margins at most once
    volume = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    padded = volume
    for axis, n in enumerate(shape):  # numpy's mirror padding, any width (an axis of 1 repeats)
        pads = [(0, 0)] * 3
        pads[axis] = (PAD, PAD)
        padded = np.pad(padded, pads, mode="reflect" if n > 1 else "edge")
    for b in plan.blocks[:4]:
        got = reflect_read(RecordingVolume(volume), b.read_start, read)
        want = padded[tuple(slice(r + PAD, r + PAD + n) for r, n in zip(b.read_start, read))]
        np.testing.assert_array_equal(got, want)


# ---- item 6: kill -9 at a random time, then the same command again -------------------------
def emseg_process(*args) -> subprocess.Popen:
    """``python -m emseg args`` in a child process (niceness inherited)."""
    return subprocess.Popen([sys.executable, "-m", "emseg", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def kill_at_random(proc: subprocess.Popen, started, max_delay: float, rng) -> str:
    """Wait until ``started()`` (the command is writing), sleep a random time, then SIGKILL.
    Returns a note for failure messages (the delay, and whether the run had already ended)."""
    deadline = time.monotonic() + 300
    while not started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    delay = float(rng.uniform(0, max_delay))
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), err
    return f"killed {delay:.2f} s after it started writing" + (" (it had finished)" if proc.returncode == 0 else "")


def tree_bytes(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (but the done-block ledger) by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".emseg_ledger" not in p.parts}


def writing(folder, name: str):
    """A ``started`` test: the output or its temp sibling exists."""
    return lambda: any(p.name == name or p.name.startswith(f".{name}.") for p in folder.iterdir())


@pytest.fixture(scope="module")
def kill_inputs(tmp_path_factory):
    """A small volume at 8 nm, a probability map of it, a tiny 3D U-Net checkpoint and a training config."""
    import yaml

    from emseg.io import write_ome_zarr
    from emseg.models import build, save_checkpoint
    from emseg.synth import make_volume

    folder = tmp_path_factory.mktemp("kill")
    synth = make_volume((32, 96, 96), (8.0, 8.0, 8.0), seed=2)
    meta = {"resolution": (0.125, 0.125), "metadata": {"spacing": 8, "unit": "nm"}, "imagej": True}
    tifffile.imwrite(folder / "raw.tif", synth.raw, **meta)
    tifffile.imwrite(folder / "mito.tif", synth.mito.astype(np.uint8), **meta)
    write_ome_zarr((synth.mito * 200 + 20).astype(np.uint8), folder / "prob.ome.zarr", (8, 8, 8), chunks=16)
    net_config = {"fmaps": 2, "downsample_factors": [[2, 2, 2]]}
    save_checkpoint(folder / "tiny.pt", build("unet3d", **net_config), architecture="unet3d",
                    model_config=net_config, voxel_size=(8, 8, 8), normalization={"mean": 0.5, "std": 0.25})
    tiny = {"architecture": "unet3d", **net_config}
    source = {"raw": str(folder / "raw.tif"), "labels": str(folder / "mito.tif"), "voxel_size": [8, 8, 8]}
    config = {"model": tiny, "output_shape": [16, 16, 16], "num_workers": 0, "iterations": 8,
              "checkpoint_every": 2, "validate_every": 4,
              "train": [{**source, "roi": [[0, 32], [0, 96], [0, 96]]}],
              "validation": [{**source, "roi": [[8, 24], [0, 96], [0, 96]]}]}
    (folder / "train.yaml").write_text(yaml.safe_dump(config))
    return folder


ZARR_COMMANDS = {
    "convert": lambda d, out: ["convert", d / "raw.tif", out, "--chunks", "16"],
    "clahe": lambda d, out: ["prepare", "clahe", d / "raw.tif", out, "--kernel-size", "16", "--chunks", "16"],
    "postprocess": lambda d, out: ["postprocess", d / "prob.ome.zarr", "-o", out, "--block", "16", "48", "48"],
    "predict": lambda d, out: ["predict", d / "tiny.pt", d / "raw.tif", out, "--device", "cpu", "--chunks", "16",
                               "--block", "16", "--roi", "0:32,0:64,0:64"],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(ZARR_COMMANDS))
def test_kill_9_then_rerun_gives_the_same_bytes(command, kill_inputs, tmp_path, capsys):
    rng = np.random.default_rng()
    args = ZARR_COMMANDS[command]
    (tmp_path / "ref").mkdir()
    (tmp_path / "run").mkdir()
    reference, output = tmp_path / "ref" / "out.ome.zarr", tmp_path / "run" / "out.ome.zarr"
    code, err = run_cli(capsys, *args(kill_inputs, reference))
    assert code == 0, err
    note = kill_at_random(emseg_process(*args(kill_inputs, output)), writing(output.parent, output.name),
                          1.0 if command == "predict" else 0.3, rng)
    complete = output.exists() and command != "predict"  # killed after the rename that completes it
    code, err = run_cli(capsys, *args(kill_inputs, output))
    assert code == 0 or (complete and "output exists" in err), f"{note}: {err}"
    assert tree_bytes(output) == tree_bytes(reference), note
    assert hidden(output.parent) == [], note


@pytest.mark.slow
def test_kill_9_during_training_then_resume_finishes(kill_inputs, tmp_path, capsys):
    import torch

    rng = np.random.default_rng()
    run = tmp_path / "run"
    args = ["train", kill_inputs / "train.yaml", "--device", "cpu", "--output-dir", run]
    note = kill_at_random(emseg_process(*args), lambda: (run / "last.pt").exists(), 1.0, rng)
    code, err = run_cli(capsys, *args, "--resume")
    assert code == 0, f"{note}: {err}"
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["training"]["iteration"] == 8, note
    assert hidden(run) == [], note
