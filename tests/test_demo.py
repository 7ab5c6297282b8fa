"""`emseg demo` end to end with tiny settings: report, metrics, figures, measurements, refusals."""

from __future__ import annotations

import csv
import html
import re

import numpy as np
import pytest

from emseg.cli import main

TINY = ["--shape", "48", "128", "128", "--mito-density", "2", "--block", "32", "--iterations", "4",
        "--minutes", "1", "--workers", "0", "--device", "cpu"]


def metrics_rows(report: str) -> list[list[str]]:
    table = re.search(r'<table id="metrics">(.*?)</table>', report, re.S)
    assert table, "report has no metrics table"
    body = table.group(1).split("<tbody>")[1]
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


@pytest.mark.slow
@pytest.mark.timeout(600)  # 25-60 s normally; far more when the shared CPU is starved
def test_demo_end_to_end(tmp_path, capsys):
    from scipy.ndimage import binary_fill_holes

    from emseg.io import open_volume
    from emseg.postprocess.pipeline import is_probability, model_threshold
    from emseg.train.config import load_config

    out = tmp_path / "demo"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # a user's file: --overwrite must keep it
    assert main(["demo", "-o", str(out), "--overwrite", *TINY]) == 0
    printed = capsys.readouterr().out
    assert f"report: {(out / 'report.html').resolve()}" in printed
    assert re.search(r"train 3D U-Net .*\s+\d+\.\d\n", printed) and re.search(r"total\s+\d+\.\d", printed)
    assert (out / "notes.txt").read_text() == "mine"

    report = (out / "report.html").read_text()
    rows = metrics_rows(report)
    assert [r[0] for r in rows] == ["3D U-Net trained by this demo", "bundled default model 'mito'"]
    for row in rows:
        values = [float(v) for v in row[1:7]]  # voxel F1, IoU, precision, recall, instance F1 @0.5, @0.75
        assert all(0.0 <= v <= 1.0 for v in values), row
    assert report.count("data:image/png;base64,") >= 5  # 3 overlays, curves, histograms
    assert 'id="timings"' in report and "predict (bundled model)" in report

    overlays = sorted((out / "figures").glob("overlay_z*.png"))
    assert len(overlays) == 3 and all(p.stat().st_size > 10_000 for p in overlays)
    assert (out / "model" / "curves.png").exists() and (out / "model" / "log.csv").exists()
    for name in ("demo_model", "bundled_model"):
        # `emseg predict` output is read as probabilities (thresholded), not as labels (non-zero)
        probabilities = open_volume(out / name / "probabilities.ome.zarr")
        assert is_probability(probabilities)
        labels = np.asarray(open_volume(out / name / "labels.ome.zarr")[:, :, :])
        assert labels.shape == (48, 128, 128)
        threshold = model_threshold(out / name / "probabilities.ome.zarr")  # the one postprocess uses
        above = np.asarray(probabilities[:, :, :]) >= threshold * 255
        assert np.count_nonzero((labels > 0) & ~above) <= np.count_nonzero(~above & binary_fill_holes(above))
        with open(out / name / "objects.csv") as f:
            table = list(csv.DictReader(f))
        assert "volume_nm3" in (table[0] if table else {"volume_nm3": 0}) or not table
        if table:
            assert (out / name / "histograms.png").exists()
            assert all(float(r["volume_nm3"]) > 0 for r in table)
    with open(out / "bundled_model" / "objects.csv") as f:
        assert len(list(csv.DictReader(f))) > 0  # the bundled model finds objects here (many false ones)

    # the training YAML is the schema `emseg train` reads; validation and scoring avoid the training blocks
    config = load_config(out / "train.yaml")
    assert len(config.train) == 3 and config.iterations == 4
    sample = np.asarray(open_volume(out / "data" / "sample_mask.ome.zarr")[:, :, :])
    scored = np.asarray(open_volume(out / "data" / "eval_mask.ome.zarr")[:, :, :])
    val = tuple(slice(a, b) for a, b in config.validation[0].roi)
    assert sample.sum() == 3 * 32**3 and not sample[val].any()
    assert not (scored & sample).any() and (scored | sample).all()


def test_demo_refuses_a_non_empty_output(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "results.csv").write_text("keep")
    assert main(["demo", "-o", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["results.csv"]


def test_demo_rejects_a_volume_too_small_for_its_blocks(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "d"), "--shape", "32", "64", "64", "--block", "64"]) == 2
    assert "smaller than one annotated block" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
