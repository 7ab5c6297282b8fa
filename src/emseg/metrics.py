"""Voxel scores shared by training validation and evaluation (pure numpy, no I/O).

Counts are accumulated block by block (`confusion_counts` on each block, summed), then
turned into scores once (`scores_from_counts`), so whole-cell evaluation never needs a
volume in memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Counts:
    """True/false positives and false negatives inside the scored region."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)


def confusion_counts(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> Counts:
    """Binary confusion counts of ``pred`` vs ``truth`` where ``mask`` (if given) is true."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {truth.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        pred, truth = pred[mask], truth[mask]
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return Counts(tp, fp, fn, int(pred.size) - tp - fp - fn)


def scores_from_counts(counts: Counts) -> dict[str, float]:
    """Precision, recall, F1 = TP / (TP + (FP + FN) / 2) and IoU = TP / (TP + FP + FN).

    Empty denominators give 1.0 when there is nothing to find and nothing was found
    (the perfect answer on an empty region), else 0.0.
    """
    tp, fp, fn = counts.tp, counts.fp, counts.fn

    def ratio(num: int, den: float) -> float:
        return float(num / den) if den > 0 else (1.0 if fp == 0 and fn == 0 else 0.0)

    return {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(tp, tp + (fp + fn) / 2),
        "iou": ratio(tp, tp + fp + fn),
        **{k: float(v) for k, v in asdict(counts).items()},
    }


def voxel_scores(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Scores of one in-memory pair; see `scores_from_counts`."""
    return scores_from_counts(confusion_counts(pred, truth, mask))
