"""`emseg benchmark2d`: the real module end to end on tiny generated data; missing data is a clear error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_pretrain import _one_thread  # noqa: F401 (autouse fixture)
from test_resnet import fake_cem500k


def fake_data_dir(root):
    """Small synthetic volumes under the file names of ../shared/data (lucchi/, isbi2012/)."""
    import tifffile

    from emseg.synth import make_volume

    lucchi = make_volume((12, 64, 64), (5.0, 5.0, 5.0), seed=1)
    isbi = make_volume((10, 64, 64), (50.0, 4.0, 4.0), seed=2)
    (root / "lucchi").mkdir(parents=True)
    (root / "isbi2012").mkdir()
    def write(path, data, voxel_size):  # ImageJ hyperstack with the voxel size, as in ../shared/data
        tifffile.imwrite(path, data.astype(np.uint8), imagej=True, resolution=(1e3 / voxel_size[1],) * 2,
                         metadata={"spacing": voxel_size[0] / 1e3, "unit": "micron", "axes": "ZYX"})

    write(root / "lucchi" / "train_image.tif", lucchi.raw, (5.0, 5.0, 5.0))
    write(root / "lucchi" / "train_mito.tif", lucchi.mito, (5.0, 5.0, 5.0))
    write(root / "isbi2012" / "train_image.tif", isbi.raw, (50.0, 4.0, 4.0))
    write(root / "isbi2012" / "train_membrane.tif", isbi.membranes, (50.0, 4.0, 4.0))
    return root


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_benchmark_end_to_end_on_tiny_data(tmp_path):
    from emseg.curate.store import PatchStore
    from emseg.pretrain.benchmark2d import Benchmark2DConfig, default_tasks, run_benchmark

    data = fake_data_dir(tmp_path / "data")
    tasks = [t.model_copy(update={"train": (0, 8), "validation": [8, 9], "validation_roi": None}) for t in default_tasks(data)]
    config = Benchmark2DConfig(pretrain_minutes=0.05, iterations=2, width=8, pretrain_batch=8, pretrain_size=32,
                               queue_size=32, batch_size=2, patch_size=32, few=3, synth_shape=(2, 64, 64),
                               min_patch=32)
    out = tmp_path / "out"
    summary = run_benchmark(None, out, config, tasks=tasks, progress=False)

    for name in ("table.csv", "table.md", "table.png", "summary.json", "moco_resnet18.pt"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "table.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(out / "table.csv")
    inits = {"random", "emseg-MoCoV2 frozen", "emseg-MoCoV2 fine-tuned"}
    assert len(table) == 2 * 2 * 3
    assert set(table["init"]) == inits and set(table["regime"]) == {"full", "few"}
    assert set(table["task"]) == {"lucchi_mito", "isbi_membrane"}
    assert not table.duplicated(["task", "regime", "init"]).any()
    assert table["iou"].between(0, 1).all() and (table["wall_s"] > 0).all()
    assert set(table.loc[table["regime"] == "few", "labelled_slices"]) == {3}
    assert set(table.loc[table["regime"] == "full", "labelled_slices"]) == {8}
    assert (out / "runs").is_dir() and len(list((out / "runs").glob("*.pt"))) == 12

    markdown = (out / "table.md").read_text()
    assert all(name in markdown for name in inits) and "few (3 slices)" in markdown
    saved = json.loads((out / "summary.json").read_text())
    assert saved["pretrain_images_per_s"] > 0 and saved["pretrain_images_seen"] >= 8
    assert len(saved["runs"]) == 12 and saved["timings_s"]["pretrain"] > 0
    assert summary["patches"] == 8 + 8 + 2  # training slices of both tasks + the synthetic volume
    # pretraining never sees a validation slice
    store = PatchStore.open(out / "patches.zarr")
    assert store.complete and store.column("slice").max() < 8 and store.column("kept").all()

    # --encoder: reuse the weights, no pretraining; --init adds a CEM500K-format column; --tasks / --regimes select
    fake_cem500k(tmp_path / "cem500k.pth.tar", "resnet18", 8)
    again = config.model_copy(update={"encoder": str(out / "moco_resnet18.pt"), "tasks": ["isbi_membrane"],
                                      "inits": {"cem500k": str(tmp_path / "cem500k.pth.tar")}, "regimes": ["few"]})
    summary = run_benchmark(None, tmp_path / "again", again, tasks=tasks, progress=False)
    assert [(r["task"], r["regime"]) for r in summary["runs"]] == [("isbi_membrane", "few")] * 4
    assert summary["runs"][-1]["init"] == "cem500k frozen" and 0 <= summary["runs"][-1]["iou"] <= 1
    assert summary["pretrain_images_seen"] is None and not (tmp_path / "again" / "patches.zarr").exists()
    assert "not pretrained in this run" in (tmp_path / "again" / "table.md").read_text()


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    from emseg.cli import main

    (tmp_path / "lucchi").mkdir()
    (tmp_path / "lucchi" / "train_image.tif").write_bytes(b"")
    assert main(["benchmark2d", "--data", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not a benchmark data folder" in err and "isbi2012/train_membrane.tif" in err
    assert "lucchi/train_mito.tif" in err and "lucchi/train_image.tif" not in err
    assert not (tmp_path / "out").exists()


def test_bad_init_spec_is_a_clear_error(tmp_path, capsys):
    from emseg.cli import main

    data = fake_data_dir(tmp_path / "data")
    assert main(["benchmark2d", "--data", str(data), "-o", str(tmp_path / "out"), "--init", "cem500k"]) == 2
    assert "expected NAME=PATH" in capsys.readouterr().err
    assert main(["benchmark2d", "--data", str(data), "-o", str(tmp_path / "out"), "--tasks", "nope"]) == 2
    assert "unknown task" in capsys.readouterr().err
