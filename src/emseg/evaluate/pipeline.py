"""`evaluate`: a prediction (probabilities or labels) against ground truth, blockwise."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence

import numpy as np

from emseg.errors import InvalidValuesError

IOU_THRESHOLDS = (0.5, 0.75)


def evaluate(
    pred,
    truth,
    sample_mask=None,
    metric_mask=None,
    exclusion_width: int = 0,
    threshold: float = 0.5,
    voxel_size: Sequence[float] | None = None,
    instances: bool = True,
    sweep: Sequence[float] | None = None,
    connectivity: int = 26,
    block: Sequence[int] = (64, 256, 256),
    progress: bool = False,
    allow_incomplete: bool = False,
    probability=None,
    merge_fraction: float = 0.5,
) -> dict:
    """Voxel scores inside sample ∧ metric mask, instance matching at IoU 0.5 and 0.75 with F1
    and AP (`emseg.evaluate.ap`), merge and split counts (`emseg.evaluate.topology`, at
    ``merge_fraction``), mean Hausdorff (nm) of the matches at 0.5, and optionally a threshold sweep.

    pred: probabilities (float, or uint8 written by emseg as an image) or labels (binary →
    connected components; instance ids used as they are). truth: integer labels. AP ranks
    predicted instances by their mean probability in ``pred`` when it is a probability map,
    else in ``probability`` (a map on the same grid) if given, else by size. An incomplete
    prediction is refused unless ``allow_incomplete``.
    """
    from emseg.evaluate.ap import average_precision
    from emseg.evaluate.instances import instance_scores, match, mean_hausdorff, overlaps
    from emseg.evaluate.topology import check_fraction, merges_and_splits
    from emseg.evaluate.voxel import metric_mask as exclusion_mask
    from emseg.evaluate.voxel import sweep_counts, sweep_table, voxel_counts
    from emseg.metrics import scores_from_counts
    from emseg.postprocess.ops import check_threshold, foreground, probability_scale, threshold_mask
    from emseg.postprocess.pipeline import (
        as_instances,
        check_same_grid,
        is_probability,
        open_input,
        processing_chunks,
        require_complete,
    )
    from emseg.postprocess.regions import boxes, label_table

    threshold = check_threshold(threshold)
    check_fraction(merge_fraction)
    if metric_mask is not None and exclusion_width:
        raise InvalidValuesError("give either a metric mask or an exclusion width, not both")
    pred_v = open_input(pred, voxel_size)
    require_complete(pred_v, allow_incomplete)
    true_v = open_input(truth, voxel_size or pred_v.voxel_size if isinstance(truth, np.ndarray) else voxel_size)
    check_same_grid(pred_v, true_v, "ground truth", "prediction")
    if np.dtype(true_v.dtype).kind not in "uib":
        raise InvalidValuesError(f"ground truth {true_v.path}: labels must be integers, got dtype {true_v.dtype}")
    masks = {}
    for role, source in (("sample mask", sample_mask), ("metric mask", metric_mask)):
        if source is not None:
            masks[role] = open_input(source, pred_v.voxel_size if isinstance(source, np.ndarray) else voxel_size)
            check_same_grid(pred_v, masks[role], role, "prediction")
    score_v = None
    if probability is not None:
        score_v = open_input(probability, pred_v.voxel_size if isinstance(probability, np.ndarray) else voxel_size)
        check_same_grid(pred_v, score_v, "probability map", "prediction")
        if not is_probability(score_v):
            raise InvalidValuesError(f"probability map {score_v.path}: expected probabilities (float, or uint8 "
                                     f"written by emseg), got {score_v.dtype} labels")
    chunks, _ = processing_chunks(pred_v.shape, block)
    pred_data, true_data = pred_v.to_dask(chunks), true_v.to_dask(chunks)
    probability = is_probability(pred_v)
    score_data = pred_data if probability else score_v.to_dask(chunks) if score_v is not None else None
    pred_mask = threshold_mask(pred_data, threshold) if probability else foreground(pred_data)
    true_mask = foreground(true_data)
    sample = masks["sample mask"].to_dask(chunks) > 0 if "sample mask" in masks else None
    scored = masks["metric mask"].to_dask(chunks) > 0 if "metric mask" in masks else None
    if exclusion_width:
        scored = exclusion_mask(true_data, int(exclusion_width)).rechunk(chunks) > 0
    region = sample if scored is None else scored if sample is None else sample & scored
    result: dict = {
        "prediction": str(pred_v.path), "ground_truth": str(true_v.path), "shape": list(pred_v.shape),
        "voxel_size": list(pred_v.voxel_size), "threshold": threshold if probability else None,
        "exclusion_width": int(exclusion_width),
        "voxel": scores_from_counts(voxel_counts(pred_mask, true_mask, region, progress)),
    }
    if sweep is not None:
        if not probability:
            raise InvalidValuesError(f"{pred_v.path}: a threshold sweep needs a probability map, got labels")
        thresholds = [check_threshold(t) for t in sweep]
        counts = sweep_counts(pred_data, true_mask, thresholds, probability_scale(pred_data.dtype), region, progress)
        result["sweep"] = sweep_table(thresholds, counts)
    if instances:
        with tempfile.TemporaryDirectory(prefix="emseg-evaluate-") as tmp:
            pred_i = as_instances(pred_v, chunks, tmp, pred_mask if probability else None, connectivity,
                                  progress, "pred")
            true_i = as_instances(true_v, chunks, tmp, None, connectivity, progress, "truth")
            p_lab, t_lab = pred_i.to_dask(chunks), true_i.to_dask(chunks)
            if sample is not None:  # objects are judged on their annotated part only
                p_lab, t_lab = p_lab * sample.astype(p_lab.dtype), t_lab * sample.astype(t_lab.dtype)
            ov = overlaps(p_lab, t_lab, None, progress)
            p_table = label_table(p_lab, score_data, progress=progress)
            scores = instance_confidence(p_table, ov.pred_ids, score_data)
            result["instance"] = {}
            for iou in IOU_THRESHOLDS:
                matches = match(ov, iou)
                result["instance"][str(iou)] = {**instance_scores(len(ov.pred_ids), len(ov.true_ids), len(matches)),
                                                "ap": average_precision(ov, scores, iou)}
                if iou == IOU_THRESHOLDS[0]:
                    matched = matches
            result["ap_ranking"] = "size" if score_data is None else "mean probability"
            result["merges_splits"] = merges_and_splits(ov, merge_fraction)
            tables = (boxes(p_table), boxes(label_table(t_lab, progress=progress)))

            def reader(volume):
                def read(region):
                    crop = np.asarray(volume[region])
                    if "sample mask" in masks:
                        crop = crop * (np.asarray(masks["sample mask"][region]) > 0)
                    return crop
                return read

            mean, distances = mean_hausdorff(matched, reader(pred_i), reader(true_i), tables, pred_v.voxel_size)
            result["hausdorff_nm"] = {"mean": None if math.isnan(mean) else mean, "matched": len(distances),
                                      "median": float(np.median(distances)) if distances else None}
    return result


def instance_confidence(table, pred_ids: np.ndarray, probability=None) -> np.ndarray:
    """Each predicted instance's score for AP, aligned with ``pred_ids``: its mean probability
    (in [0, 1]) from a label table with intensity sums, or its size when there is no map."""
    from emseg.postprocess.ops import probability_scale

    if not len(pred_ids):
        return np.zeros(0)
    table = table.reindex(pred_ids.astype(np.int64))
    if probability is None:
        return table["count"].to_numpy(np.float64)
    return (table["sum_intensity"] / table["count"]).to_numpy(np.float64) / probability_scale(probability.dtype)


def format_result(result: dict) -> str:
    """A plain-text table of an evaluation result."""
    v = result["voxel"]
    lines = ["voxel      precision  recall     F1         IoU",
             f"           {v['precision']:<10.4f} {v['recall']:<10.4f} {v['f1']:<10.4f} {v['iou']:<10.4f}"
             f"(TP {int(v['tp'])}, FP {int(v['fp'])}, FN {int(v['fn'])})"]
    for iou, s in result.get("instance", {}).items():
        lines.append(f"instances IoU≥{iou:<5} P {s['precision']:.4f}  R {s['recall']:.4f}  F1 {s['f1']:.4f}  "
                     f"AP {s['ap']:.4f}  (TP {s['tp']}, FP {s['fp']}, FN {s['fn']}; {s['n_pred']} predicted, "
                     f"{s['n_true']} true)")
    if "merges_splits" in result:
        m = result["merges_splits"]
        lines.append(f"AP ranks instances by {result['ap_ranking']}; merges {m['merges']} (of {m['merged_true']} true "
                     f"objects), splits {m['splits']} (into {m['split_pieces']} pieces) at fraction {m['fraction']:g}")
    if "hausdorff_nm" in result:
        h = result["hausdorff_nm"]
        mean = "n/a" if h["mean"] is None else f"{h['mean']:.1f} nm"
        lines.append(f"Hausdorff (matched at IoU≥0.5): mean {mean} over {h['matched']} objects")
    if "sweep" in result:
        lines.append("threshold  F1      IoU     precision  recall")
        lines += [f"{r['threshold']:<10.3f} {r['f1']:<7.4f} {r['iou']:<7.4f} {r['precision']:<10.4f} {r['recall']:.4f}"
                  for r in result["sweep"]]
    return "\n".join(lines)
