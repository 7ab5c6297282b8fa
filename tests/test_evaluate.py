"""Evaluation: voxel scores vs hand counts and scikit-learn, masks, instances, Hausdorff, sweep, errors."""

from __future__ import annotations

import json
import warnings

import dask.array as da
import numpy as np
import pytest
from scipy.spatial.distance import directed_hausdorff
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from emseg.cli import main
from emseg.errors import InvalidValuesError, InvalidVoxelSizeError, ShapeMismatchError
from emseg.evaluate.instances import hausdorff_nm, match, overlaps
from emseg.evaluate.pipeline import evaluate
from emseg.evaluate.voxel import metric_mask
from emseg.io import array_volume, write_ome_zarr
from emseg.masks import boundary_exclusion_mask

pytestmark = pytest.mark.timeout(120)
VS = (8.0, 8.0, 8.0)


def test_voxel_scores_hand_computed():
    truth = np.zeros((1, 1, 10), np.uint8)
    truth[0, 0, :4] = 1
    pred = np.zeros((1, 1, 10), np.float32)
    pred[0, 0, 2:7] = 0.9  # TP 2, FP 3, FN 2
    r = evaluate(pred, truth, voxel_size=(1, 1, 1), instances=False)["voxel"]
    assert (r["tp"], r["fp"], r["fn"]) == (2, 3, 2)
    assert r["precision"] == pytest.approx(2 / 5) and r["recall"] == pytest.approx(2 / 4)
    assert r["f1"] == pytest.approx(2 / (2 + 2.5)) and r["iou"] == pytest.approx(2 / 7)


def test_voxel_scores_match_sklearn_with_masks(rng):
    truth = (rng.random((12, 30, 30)) > 0.6).astype(np.uint8)
    prob = np.clip(truth * 0.5 + rng.random(truth.shape) * 0.6, 0, 1).astype(np.float32)
    sample = (rng.random(truth.shape) > 0.3).astype(np.uint8)
    r = evaluate(prob, truth, sample_mask=sample, exclusion_width=1, voxel_size=VS, threshold=0.55,
                 instances=False, block=(5, 16, 16))["voxel"]
    scored = (sample > 0) & (boundary_exclusion_mask(truth, 1) > 0)
    y, p = truth[scored], prob[scored] >= 0.55
    assert r["precision"] == pytest.approx(precision_score(y, p))
    assert r["recall"] == pytest.approx(recall_score(y, p))
    assert r["f1"] == pytest.approx(f1_score(y, p))
    assert r["iou"] == pytest.approx(jaccard_score(y, p))


def test_blockwise_exclusion_mask_equals_whole_volume(synth_small):
    labels = synth_small.membranes.astype(np.uint8)
    lazy = metric_mask(da.from_array(labels, chunks=(7, 20, 13)), 2)
    np.testing.assert_array_equal(lazy.compute(), boundary_exclusion_mask(labels, 2))


def test_instance_matching_hand_case():
    truth = np.zeros((1, 4, 12), np.uint32)
    pred = np.zeros_like(truth)
    truth[0, :, 0:4] = 1  # 16 voxels
    truth[0, :, 6:10] = 2
    pred[0, :, 0:3] = 5  # IoU 12/16 = 0.75 with 1
    pred[0, :, 7:12] = 6  # IoU 12/(16+20-12) = 0.5 with 2
    pred[0, 0, 4] = 7  # a false positive speck
    ov = overlaps(da.from_array(pred, chunks=(1, 2, 5)), da.from_array(truth, chunks=(1, 2, 5)))
    assert sorted((p, t) for p, t, _ in match(ov, 0.5)) == [(5, 1), (6, 2)]
    assert [(p, t) for p, t, _ in match(ov, 0.75)] == [(5, 1)]
    r = evaluate(pred, truth, voxel_size=(30, 4, 4), block=(1, 2, 5))
    s5, s75 = r["instance"]["0.5"], r["instance"]["0.75"]
    assert (s5["tp"], s5["fp"], s5["fn"]) == (2, 1, 0) and s5["f1"] == pytest.approx(2 / 2.5)
    assert (s75["tp"], s75["fp"], s75["fn"]) == (1, 2, 1) and s75["f1"] == pytest.approx(1 / 2.5)
    # object 5 lacks truth column x=3 (4 nm from x=2); object 6 has extra columns x=10,11 (8 nm) and lacks x=6
    assert r["hausdorff_nm"]["mean"] == pytest.approx((4.0 + 8.0) / 2)


def test_hausdorff_matches_scipy_anisotropic(rng):
    a = rng.random((6, 10, 9)) > 0.7
    b = rng.random((6, 10, 9)) > 0.7
    vs = (30.0, 4.0, 5.0)
    pa, pb = np.argwhere(a) * vs, np.argwhere(b) * vs
    expected = max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])
    assert hausdorff_nm(a, b, vs) == pytest.approx(expected)


def test_empty_prediction_and_truth_give_defined_scores():
    empty = np.zeros((4, 8, 8), np.uint8)
    full = empty.copy()
    full[1:3, 2:6, 2:6] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both = evaluate(empty, empty, voxel_size=VS)
        no_pred = evaluate(empty, full, voxel_size=VS)
        no_truth = evaluate(full, empty, voxel_size=VS)
    assert both["voxel"]["f1"] == 1.0 and both["instance"]["0.5"]["f1"] == 1.0
    assert both["hausdorff_nm"]["mean"] is None
    assert no_pred["voxel"]["f1"] == 0.0 and no_pred["instance"]["0.5"]["recall"] == 0.0
    assert no_truth["voxel"]["precision"] == 0.0 and no_truth["instance"]["0.5"]["precision"] == 0.0


def test_bad_inputs_name_both_files():
    pred = array_volume(np.zeros((4, 8, 8), np.uint8), (8, 8, 8))
    with pytest.raises(ShapeMismatchError, match=r"\(4, 8, 9\).*\(4, 8, 8\)"):
        evaluate(pred, array_volume(np.zeros((4, 8, 9), np.uint8), (8, 8, 8)))
    with pytest.raises(InvalidVoxelSizeError, match=r"\(8.0, 8.0, 4.0\).*\(8.0, 8.0, 8.0\)"):
        evaluate(pred, array_volume(np.zeros((4, 8, 8), np.uint8), (8, 8, 4)))
    with pytest.raises(InvalidValuesError, match="integers"):
        evaluate(pred, array_volume(np.zeros((4, 8, 8), np.float32), (8, 8, 8)))
    with pytest.raises(InvalidValuesError, match=r"\[0, 1\]"):
        evaluate(pred, pred, threshold=2.0)


def test_sweep_equals_single_thresholds_and_cli_writes_json_and_png(tmp_path, synth_small, capsys):
    rng = np.random.default_rng(1)
    truth = np.zeros((16, 32, 32), np.uint8)
    truth[4:12, 5:20, 8:25] = 1
    prob = np.clip(truth * 0.6 + rng.random(truth.shape) * 0.5, 0, 1).astype(np.float32)
    result = evaluate(prob, truth, voxel_size=VS, sweep=[0.3, 0.6, 0.9], instances=False, block=(8, 16, 16))
    for row in result["sweep"]:
        single = evaluate(prob, truth, voxel_size=VS, threshold=row["threshold"], instances=False)["voxel"]
        assert row["f1"] == pytest.approx(single["f1"])
    write_ome_zarr(prob, tmp_path / "p.ome.zarr", VS, levels=1)
    write_ome_zarr(truth, tmp_path / "t.ome.zarr", VS, levels=1, kind="labels")
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(tmp_path / "p.ome.zarr"), str(tmp_path / "t.ome.zarr"), "--sweep", "0.2:0.8:0.2",
                 "--json", str(out), "--exclusion-width", "1"]) == 0
    saved = json.loads(out.read_text())
    assert [r["threshold"] for r in saved["sweep"]] == [0.2, 0.4, 0.6, 0.8]
    assert (tmp_path / "eval.sweep.png").stat().st_size > 1000
    assert "instances IoU≥0.5" in capsys.readouterr().out


def test_cli_reports_mismatch_with_both_shapes(tmp_path, capsys):
    write_ome_zarr(np.zeros((4, 8, 8), np.uint8), tmp_path / "a.ome.zarr", VS, levels=1, kind="labels")
    write_ome_zarr(np.zeros((4, 8, 6), np.uint8), tmp_path / "b.ome.zarr", VS, levels=1, kind="labels")
    assert main(["evaluate", str(tmp_path / "a.ome.zarr"), str(tmp_path / "b.ome.zarr")]) == 2
    err = capsys.readouterr().err
    assert "(4, 8, 6)" in err and "(4, 8, 8)" in err and "b.ome.zarr" in err and "a.ome.zarr" in err


def ap_case():
    """Three true objects; predictions 1 (= truth 1), 2 (a false positive, the largest) and 3 (= truth 2)."""
    truth = np.zeros((1, 4, 30), np.uint32)
    truth[0, :, 0:4], truth[0, :, 6:10], truth[0, :, 12:16] = 1, 2, 3
    pred = np.zeros_like(truth)
    pred[0, :, 0:4], pred[0, :, 20:25], pred[0, :, 6:10] = 1, 2, 3
    prob = np.zeros(truth.shape, np.float32)
    prob[pred == 1], prob[pred == 2], prob[pred == 3] = 0.9, 0.8, 0.7
    return pred, truth, prob


def test_average_precision_hand_case_mitoem_ranking():
    pred, truth, prob = ap_case()
    # by mean probability: hit, miss, hit → recall 1/3, 1/3, 2/3, precision 1, 1/2, 2/3 (envelope 1, 2/3, 2/3):
    # recall levels 0–0.33 read 1, 0.34–0.66 read 2/3, 0.67–1 read 0
    r = evaluate(pred, truth, voxel_size=VS, probability=prob, block=(1, 4, 8))
    assert r["ap_ranking"] == "mean probability"
    assert r["instance"]["0.75"]["ap"] == pytest.approx((34 + 33 * 2 / 3) / 101)
    # by size (no map): the false positive (20 voxels) ranks first → precision 0, 1/2, 2/3, envelope 2/3 up to recall 2/3
    r = evaluate(pred, truth, voxel_size=VS, block=(1, 4, 8))
    assert r["ap_ranking"] == "size"
    assert r["instance"]["0.5"]["ap"] == pytest.approx(67 * 2 / 3 / 101)
    assert r["instance"]["0.5"]["f1"] == pytest.approx(2 / (2 + 1))  # F1 does not depend on the ranking
    # a probability map as the prediction ranks its own components by their mean probability
    assert evaluate(prob, truth, voxel_size=VS, threshold=0.5)["ap_ranking"] == "mean probability"
    empty = np.zeros_like(truth)
    assert evaluate(empty, empty, voxel_size=VS)["instance"]["0.75"]["ap"] == 1.0
    assert evaluate(empty, truth, voxel_size=VS)["instance"]["0.75"]["ap"] == 0.0
    assert evaluate(pred, empty, voxel_size=VS)["instance"]["0.75"]["ap"] == 0.0


def test_merges_and_splits_hand_case():
    truth = np.zeros((1, 4, 40), np.uint32)
    pred = np.zeros_like(truth)
    truth[0, :, 0:5], truth[0, :, 5:10] = 1, 2  # touching pair …
    pred[0, :, 0:10] = 1  # … given one label: a merge
    truth[0, :, 14:24] = 3
    pred[0, :, 14:19], pred[0, :, 19:24] = 2, 3  # one object cut in two: a split
    truth[0, :, 28:33], truth[0, :, 33:38] = 4, 5
    pred[0, :, 28:35] = 4  # covers all of 4 but only 2/5 of 5
    r = evaluate(pred, truth, voxel_size=VS)["merges_splits"]
    assert (r["merges"], r["merged_true"], r["splits"], r["split_pieces"]) == (1, 2, 1, 2)
    r = evaluate(pred, truth, voxel_size=VS, merge_fraction=0.4)["merges_splits"]
    assert (r["merges"], r["merged_true"]) == (2, 4)
    with pytest.raises(InvalidValuesError, match="fraction"):
        evaluate(pred, truth, voxel_size=VS, merge_fraction=0)


def test_cli_reports_ap_merges_and_refuses_a_label_probability_map(tmp_path, capsys):
    pred, truth, prob = ap_case()
    for name, data, kind in (("p", pred, "labels"), ("t", truth, "labels"), ("prob", prob, "image")):
        write_ome_zarr(data, tmp_path / f"{name}.ome.zarr", VS, levels=1, kind=kind)
    args = ["evaluate", str(tmp_path / "p.ome.zarr"), str(tmp_path / "t.ome.zarr")]
    assert main(args + ["--probability", str(tmp_path / "prob.ome.zarr"), "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "AP 0.5545" in out and "merges 0" in out and "mean probability" in out
    assert json.loads((tmp_path / "e.json").read_text())["instance"]["0.75"]["ap"] == pytest.approx(56 / 101)
    assert main(args + ["--probability", str(tmp_path / "t.ome.zarr")]) == 2
    err = capsys.readouterr().err
    assert "t.ome.zarr" in err and "probabilities" in err and len(err.strip().splitlines()) == 1
    assert main(args + ["--merge-fraction", "1.5"]) == 2
    assert "fraction" in capsys.readouterr().err
