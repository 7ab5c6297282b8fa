"""Average precision of instances at one IoU threshold, as MitoEM reports it (AP-75).

Predicted instances are ranked by a confidence score, highest first: their mean foreground
probability when a probability map is given, else their size in voxels (MitoEM's default).
Going down the ranking, a prediction is a true positive when its best-overlapping true object
has IoU ≥ the threshold and no higher-ranked prediction took it (COCO's greedy rule; above IoU
0.5 a true object can overlap only one prediction that much, so this is MitoEM's count too),
else a false positive. Precision is made non-increasing in recall and read at the 101 recall
levels 0, 0.01, …, 1 (0 beyond the last recall reached); AP is their mean. With no true
objects AP is 1.0 when nothing is predicted either, else 0.0 (MitoEM leaves it undefined).
"""

from __future__ import annotations

import numpy as np

from emseg.evaluate.instances import Overlaps, pair_iou

RECALL_LEVELS = np.linspace(0.0, 1.0, 101)


def ranked_hits(ov: Overlaps, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """True/false positive of each prediction, in order of decreasing ``scores`` (one score per
    ``ov.pred_ids``; ties: the smaller id first)."""
    order = np.lexsort((ov.pred_ids, -np.asarray(scores, np.float64)))
    iou = pair_iou(ov)
    best_true = {}
    for (p, t), value in zip(ov.pairs.tolist(), iou.tolist()):
        if value >= iou_threshold and value > best_true.get(p, (None, -1.0))[1]:
            best_true[p] = (t, value)
    taken, hits = set(), np.zeros(len(order), bool)
    for rank, p in enumerate(ov.pred_ids[order].tolist()):
        t = best_true.get(p, (None, 0.0))[0]
        if t is not None and t not in taken:
            taken.add(t)
            hits[rank] = True
    return hits


def average_precision(ov: Overlaps, scores: np.ndarray, iou_threshold: float) -> float:
    """AP at ``iou_threshold`` (module docstring) of predictions scored by ``scores``."""
    n_true = len(ov.true_ids)
    if n_true == 0:
        return 1.0 if len(ov.pred_ids) == 0 else 0.0
    hits = ranked_hits(ov, scores, iou_threshold)
    if not len(hits):
        return 0.0
    tp = np.cumsum(hits)
    recall = tp / n_true
    precision = tp / np.arange(1, len(hits) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope: best precision at ≥ this recall
    at = np.searchsorted(recall, RECALL_LEVELS, side="left")
    sampled = np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0)
    return float(sampled.mean())
