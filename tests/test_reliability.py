"""Fault injection: hostile files and output-path hazards (the reliability review, issue 24).

Every case here must end in a one-line `EmsegError` that names the file, never run code
from a file, and never delete or replace data the user did not ask to replace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from emseg.cli import main
from emseg.errors import EmsegError
from emseg.models import BUNDLED_DIR

TINY = {"architecture": "unet3d", "fmaps": 2, "downsample_factors": [[2, 2, 2]]}


class Payload:
    """Unpickling this object creates ``marker`` (a harmless stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def cell(tmp_path_factory) -> Path:
    """A small raw/labels pair as TIFFs (8 nm)."""
    folder = tmp_path_factory.mktemp("cell")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (24, 48, 48), dtype=np.uint8)
    labels = np.zeros(raw.shape, np.uint8)
    labels[4:20, 10:30, 10:30] = 1
    meta = {"resolution": (1 / 0.008, 1 / 0.008), "metadata": {"spacing": 0.008, "unit": "micron"}}
    tifffile.imwrite(folder / "raw.tif", raw, imagej=True, **meta)
    tifffile.imwrite(folder / "mito.tif", labels, imagej=True, **meta)
    return folder


def train_config(folder: Path, output_dir: Path, **extra):
    from emseg.train import parse_config

    source = {"raw": str(folder / "raw.tif"), "labels": str(folder / "mito.tif"), "voxel_size": [8, 8, 8]}
    base = {"model": TINY, "output_shape": [8, 8, 8], "num_workers": 0, "iterations": 1, "validate_every": 1,
            "train": [source], "validation": [source], "output_dir": str(output_dir)}
    base.update(extra)
    return parse_config(base)


# --- 1. no code from checkpoints, encoders or filter files ---------------------------------


def evil_file(path: Path, marker: Path, kind: str) -> Path:
    """A torch.save file of the given kind with a pickle payload inside."""
    if kind == "bare":
        payload = {"emseg_checkpoint": 1, "payload": Payload(marker)}
    elif kind == "stealth":  # the bundled model, working, with a payload in its training record
        payload = torch.load(BUNDLED_DIR / "mito.pt", weights_only=True)
        payload["training"] = {**payload.get("training", {}), "note": Payload(marker)}
    elif kind == "encoder":
        payload = {"state_dict": {"conv1.weight": torch.zeros(4, 1, 7, 7)}, "norms": [0.5, 0.2],
                   "config": {"x": Payload(marker)}}
    else:  # a patch filter
        payload = {"kind": "emseg_patch_filter", "state_dict": {}, "config": {"width": Payload(marker)}}
    torch.save(payload, path)
    return path


def load_checkpoint_api(path, cell, tmp_path):
    from emseg.models import load

    load(str(path))


def predict_cli(path, cell, tmp_path):
    code = main(["predict", str(path), str(cell / "raw.tif"), str(tmp_path / "p.ome.zarr"), "--device", "cpu"])
    assert code == 2
    raise EmsegError("CLI exit 2")  # the message is checked on stderr below


def finetune_from(path, cell, tmp_path):
    from emseg.train import finetune

    finetune(str(path), train_config(cell, tmp_path / "ft"), iterations=1, progress=False)


def train_resume(path, cell, tmp_path):
    from emseg.train import Trainer

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(Path(path).read_bytes())
    Trainer(train_config(cell, tmp_path / "run"), resume=True, progress=False)


def train2d_encoder(path, cell, tmp_path):
    from emseg.train.transfer2d import SliceSet, Transfer2DConfig, build_model

    spec = SliceSet(image=str(cell / "raw.tif"), labels=str(cell / "mito.tif"))
    build_model(Transfer2DConfig(train=spec, init=str(path), arch="resnet18", width=4))


def curate_filter(path, cell, tmp_path):
    from emseg.curate.cnn_filter import load_filter

    load_filter(path)


def pretrain_resume(path, cell, tmp_path):
    from test_pretrain import make_patch_store

    from emseg.pretrain.run import PretrainConfig, pretrain, state_path

    store = make_patch_store(tmp_path / "p.zarr", n=16)
    out = tmp_path / "enc.pt"
    state_path(out).write_bytes(Path(path).read_bytes())
    pretrain(store, out, PretrainConfig(arch="resnet18", width=4, epochs=1, batch_size=8, queue_size=64,
                                        image_size=32, steps_per_epoch=1, device="cpu"),
             resume=True, progress=False)


@pytest.mark.parametrize("loader, kind", [
    (load_checkpoint_api, "bare"),
    (load_checkpoint_api, "stealth"),
    (predict_cli, "bare"),       # C80
    (predict_cli, "stealth"),    # C81
    (finetune_from, "stealth"),  # C82
    (train_resume, "stealth"),   # C83
    (train2d_encoder, "encoder"),  # C84
    (curate_filter, "filter"),
    (pretrain_resume, "bare"),
])
def test_pickle_payload_never_runs(loader, kind, cell, tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = evil_file(tmp_path / "evil.pt", marker, kind)
    with pytest.raises(EmsegError) as info:
        loader(path, cell, tmp_path)
    message = str(info.value) + capsys.readouterr().err
    assert not marker.exists(), "the pickle payload ran"
    named = {train_resume: "last.pt", pretrain_resume: "enc.state.pt"}.get(loader, "evil.pt")
    assert named in message and "refused" in message, message
    assert "\n" not in str(info.value).strip()


def test_emseg_checkpoints_load_safely(cell, tmp_path):
    """The bundled model and what the trainer writes hold only tensors and plain data."""
    from emseg.models import read_checkpoint
    from emseg.train import train

    read_checkpoint(BUNDLED_DIR / "mito.pt")
    train(train_config(cell, tmp_path / "run"), progress=False)
    for name in ("last.pt", "best.pt"):
        state = read_checkpoint(tmp_path / "run" / name)
        assert state["training"]["iteration"] == 1 and "optimizer" in state["training"]


# --- 2. never lose data: output-path hazards, decided before any work -----------------------


@pytest.fixture
def project(cell, tmp_path) -> Path:
    """A user's folder: an input TIFF, an OME-Zarr input and an unrelated file."""
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "raw.tif").write_bytes((cell / "raw.tif").read_bytes())
    (folder / "notes.txt").write_text("mine")
    assert main(["convert", str(folder / "raw.tif"), str(tmp_path / "self.ome.zarr")]) == 0
    (tmp_path / "precious.csv").write_text("a,b\n1,2\n")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("mine")
    (tmp_path / "link.ome.zarr").symlink_to(tmp_path / "self.ome.zarr")
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


PREDICT = ["predict", "mito", "--device", "cpu", "--voxel-size", "10", "10", "10"]  # the bundled model's scale
HAZARDS = [  # (review case, arguments relative to the project folder, words of the error)
    ("C58", ["convert", "proj/raw.tif", "proj", "--overwrite"], "holds the input"),
    ("C58b", ["convert", "proj/raw.tif", "proj/raw.tif", "--overwrite"], "is the input"),
    ("C58c", ["convert", "proj/raw.tif", "plain", "--overwrite"], "not a zarr folder"),
    ("C62", ["convert", "self.ome.zarr", "self.ome.zarr/0/inner.ome.zarr"], "inside the input folder"),
    ("C60", [*PREDICT[:2], "proj/raw.tif", "proj", *PREDICT[2:], "--overwrite"], "holds the input"),
    ("C63", [*PREDICT[:2], "self.ome.zarr", "self.ome.zarr", *PREDICT[2:], "--overwrite"], "holds the input"),
    ("C94", [*PREDICT[:2], "proj/raw.tif", "link.ome.zarr", *PREDICT[2:], "--overwrite"], "symbolic link"),
    ("C106", ["measure", "self.ome.zarr", "-o", "precious.csv", "--no-surface"], "--overwrite"),
    ("C106b", ["measure", "proj/raw.tif", "-o", "proj/raw.tif", "--overwrite", "--no-surface"], "is the input"),
    ("pp-self", ["postprocess", "self.ome.zarr", "-o", "self.ome.zarr", "--overwrite"], "is the input"),
    ("clahe-self", ["prepare", "clahe", "proj/raw.tif", "proj", "--overwrite"], "holds the input"),
]


@pytest.mark.parametrize("case, args, words", HAZARDS, ids=[h[0] for h in HAZARDS])
def test_output_never_destroys_an_input(case, args, words, project, capsys, monkeypatch):
    monkeypatch.chdir(project)
    before = snapshot(project)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("emseg: error:") and words in err and err.count("\n") == 1, err
    assert snapshot(project) == before  # nothing deleted, nothing written


def test_measure_replaces_its_csv_only_with_overwrite(project, monkeypatch):
    monkeypatch.chdir(project)
    assert main(["measure", "self.ome.zarr", "-o", "precious.csv", "--no-surface", "--overwrite"]) == 0
    assert (project / "precious.csv").read_text() != "a,b\n1,2\n"


@pytest.mark.parametrize("name, frac, imagej", [("C05", 0.5, True), ("C05b", 0.6, False)])
def test_truncated_tiff_is_an_error_not_fewer_slices(name, frac, imagej, cell, tmp_path, capsys):
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, tifffile.imread(cell / "raw.tif"), imagej=imagej)
    data = full.read_bytes()
    cut = tmp_path / "trunc.tif"
    cut.write_bytes(data[:int(len(data) * frac)])
    assert main(["info", str(cut)]) == 2
    assert main(["convert", str(cut), str(tmp_path / "out.ome.zarr")]) == 2  # C05c
    err = capsys.readouterr().err
    assert "trunc.tif: TIFF is truncated" in err and err.count("\n") == 2, err
    assert not (tmp_path / "out.ome.zarr").exists()


def write_yaml(path: Path, config) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def test_fresh_train_never_replaces_an_earlier_run(cell, tmp_path, capsys):
    """C47: a folder holding checkpoints is continued with --resume or replaced with --overwrite."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.pt", "best.pt", "log.csv"):
        (run / name).write_text("earlier run")
    (run / "notes.txt").write_text("mine")
    cfg = write_yaml(tmp_path / "cfg.yaml", train_config(cell, run))
    before = snapshot(run)
    assert main(["train", str(cfg), "--device", "cpu"]) == 2
    assert main(["finetune", str(cfg), "--from", "mito", "--iterations", "1", "--device", "cpu"]) == 2
    assert main(["finetune", str(cfg), "--from", str(run / "best.pt"), "--iterations", "1", "--device", "cpu",
                 "--overwrite"]) == 2  # would delete its own starting point
    err = capsys.readouterr().err.splitlines()
    assert "holds checkpoints of an earlier run" in err[0] and "--resume" in err[0], err
    assert "is the input" in err[2], err
    assert snapshot(run) == before
    assert main(["train", str(cfg), "--device", "cpu", "--overwrite"]) == 0
    log = (run / "log.csv").read_text()
    assert "earlier run" not in log and log.count("\n") == 2  # header + the one iteration
    assert (run / "notes.txt").read_text() == "mine"


# --- 3. non-finite input values and numeric options, refused before any work ----------------


def test_inf_is_refused_like_nan(cell, tmp_path, capsys):
    """C24: Inf voxels once became probability 0; now they are refused as NaN is."""
    data = tifffile.imread(cell / "raw.tif").astype(np.float32)
    data[10, 20:30, 20:30] = np.inf
    tifffile.imwrite(tmp_path / "inf.tif", data)
    assert main(["convert", str(tmp_path / "inf.tif"), str(tmp_path / "c.ome.zarr"), "--voxel-size", "8", "8", "8"]) == 2
    assert main([*PREDICT[:2], str(tmp_path / "inf.tif"), str(tmp_path / "p.ome.zarr"), *PREDICT[2:]]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("emseg: error:")]
    assert len(err) == 2 and all("inf.tif" in line and "Inf values" in line for line in err), err
    assert not (tmp_path / "c.ome.zarr").exists()


OPTIONS = [  # (review case, arguments, words of the error)
    ("C118", ["convert", "proj/raw.tif", "c.ome.zarr", "--chunks", "0"], "--chunks 0: must be positive"),
    ("C119", ["convert", "proj/raw.tif", "c.ome.zarr", "--chunks", "-8"], "--chunks -8: must be positive"),
    ("C122", [*PREDICT[:2], "proj/raw.tif", "p.ome.zarr", *PREDICT[2:], "--batch-size", "0"], "--batch-size 0"),
    ("C124", [*PREDICT[:2], "proj/raw.tif", "p.ome.zarr", *PREDICT[2:], "--chunks", "0"], "--chunks 0"),
    ("C53", ["postprocess", "self.ome.zarr", "-o", "pp.ome.zarr", "--block", "0", "0", "0"], "--block 0 0 0"),
    ("C110", ["prepare", "sample-mask", "proj/raw.tif", "sm.ome.zarr", "--low", "200", "--high", "10"],
     "--low 200 must be below --high 10"),
    ("clahe-chunks", ["prepare", "clahe", "proj/raw.tif", "cl.ome.zarr", "--chunks", "0"], "--chunks 0"),
]


@pytest.mark.parametrize("case, args, words", OPTIONS, ids=[o[0] for o in OPTIONS])
def test_numeric_options_are_range_checked_first(case, args, words, project, capsys, monkeypatch):
    monkeypatch.chdir(project)
    before = snapshot(project)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("emseg: error:") and words in err and err.count("\n") == 1, err
    assert snapshot(project) == before  # no output, no hidden .partial left behind


def test_finetune_iterations_zero_is_refused(cell, tmp_path, capsys):
    """C136: --iterations 0 once ran the config's count."""
    cfg = write_yaml(tmp_path / "cfg.yaml", train_config(cell, tmp_path / "run"))
    assert main(["finetune", str(cfg), "--from", "mito", "--iterations", "0", "--device", "cpu"]) == 2
    assert "--iterations 0: must be positive" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# --- 4. usage errors: click's usage line and exit code 2, never a traceback -----------------

USAGE = [  # (review case, arguments, words of the error)
    ("C31", ["info", "raw.tif", "--voxel-size", "5", "5"], "requires 3 arguments"),
    ("C31b", ["info", "raw.tif", "--voxel-size", "a", "b", "c"], "Invalid value for '--voxel-size'"),
    ("C32", ["convert", "raw.tif"], "Missing argument 'output'"),
    ("C33", ["info", "raw.tif", "--bogus-option"], "No such option: --bogus-option"),
    ("C34", ["nosuchcommand"], "No such command 'nosuchcommand'"),
    ("C35", ["convert", "raw.tif", "x.ome.zarr", "--chunks", "abc"], "Invalid value for '--chunks'"),
    ("C37", ["info"], "Missing argument 'path'"),
]


@pytest.mark.parametrize("case, args, words", USAGE, ids=[u[0] for u in USAGE])
def test_usage_errors_exit_2_with_usage_line(case, args, words, cell, capsys, monkeypatch):
    monkeypatch.chdir(cell)
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert words in err and "Traceback" not in out + err, err
    assert not (cell / "x.ome.zarr").exists()


def test_bare_emseg_prints_help_and_exits_2():
    """C36: through the installed entry point, as a user runs it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "emseg"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr, done.stderr
    assert "Usage:" in done.stdout + done.stderr and "convert" in done.stdout + done.stderr


# --- 5. an incomplete prediction is never taken as final ------------------------------------


@pytest.fixture(scope="module")
def killed_prediction(cell, tmp_path_factory) -> Path:
    """A prediction as a kill -9 leaves it: ``complete`` false and one block missing from the ledger."""
    import zarr

    from emseg.blocks import Ledger

    out = tmp_path_factory.mktemp("killed") / "kpred.ome.zarr"
    assert main([*PREDICT[:2], str(cell / "raw.tif"), str(out), *PREDICT[2:], "--block", "16", "--chunks", "16"]) == 0
    group = zarr.open_group(str(out), mode="r+")
    group.attrs["emseg"] = {**dict(group.attrs["emseg"]), "complete": False}
    ledger = Ledger(out)
    (ledger.root / sorted(ledger.done())[-1]).unlink()
    return out


@pytest.mark.parametrize("case", ["C48", "C48-classes", "C50"])
def test_incomplete_prediction_is_refused(case, killed_prediction, cell, tmp_path, capsys):
    pred, out = str(killed_prediction), str(tmp_path / "pp.ome.zarr")
    args = {"C48": ["postprocess", pred, "-o", out],
            "C48-classes": ["postprocess", pred, pred, "-o", out],
            "C50": ["evaluate", pred, str(cell / "mito.tif"), "--no-instances", "--voxel-size", "10", "10", "10"]}[case]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("emseg: error:") and err.count("\n") == 1, err
    assert "kpred.ome.zarr: incomplete probabilities" in err and "--allow-incomplete" in err, err
    assert not Path(out).exists()
    with pytest.warns(UserWarning, match=r"used as it is \(--allow-incomplete\)"):
        assert main([*args, "--allow-incomplete"]) == 0
