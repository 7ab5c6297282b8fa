"""Instance-level evaluation: overlaps accumulated per block, one-to-one matching at an IoU
threshold, and Hausdorff distances (nm) between matched objects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Overlaps:
    """Voxel counts per predicted id, per true id, and per (predicted, true) pair."""

    pred_ids: np.ndarray
    pred_sizes: np.ndarray
    true_ids: np.ndarray
    true_sizes: np.ndarray
    pairs: np.ndarray  # (k, 2) predicted id, true id
    intersections: np.ndarray  # (k,)


def _block_overlaps(pred: np.ndarray, truth: np.ndarray, mask=None):
    pred = pred.astype(np.uint64, copy=False).ravel()
    truth = truth.astype(np.uint64, copy=False).ravel()
    if mask is not None:
        keep = mask.ravel() > 0
        pred, truth = pred[keep], truth[keep]
    p_ids, p_counts = np.unique(pred[pred > 0], return_counts=True)
    t_ids, t_counts = np.unique(truth[truth > 0], return_counts=True)
    both = (pred > 0) & (truth > 0)
    pairs, inter = np.unique(np.stack([pred[both], truth[both]], axis=1), axis=0, return_counts=True)
    return p_ids, p_counts, t_ids, t_counts, pairs.reshape(-1, 2), inter


def _merge_counts(ids: list[np.ndarray], counts: list[np.ndarray]):
    ids_all = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
    counts_all = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    unique, inverse = np.unique(ids_all, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts_all, minlength=len(unique)).astype(np.int64)


def overlaps(pred_labels, true_labels, sample_mask=None, progress: bool = False) -> Overlaps:
    """Blockwise overlap table of two instance label dask arrays (inside ``sample_mask``)."""
    import dask
    import dask.array as da

    from emseg.io.progress import dask_progress

    chunks = pred_labels.chunks
    arrays = [pred_labels, da.asarray(true_labels).rechunk(chunks)]
    if sample_mask is not None:
        arrays.append(da.asarray(sample_mask).rechunk(chunks))
    tasks = [dask.delayed(_block_overlaps)(*blocks) for blocks in zip(*(a.to_delayed().ravel() for a in arrays))]
    with dask_progress("overlaps", progress):
        results = dask.compute(*tasks, scheduler="threads")
    p_ids, p_sizes = _merge_counts([r[0] for r in results], [r[1] for r in results])
    t_ids, t_sizes = _merge_counts([r[2] for r in results], [r[3] for r in results])
    pairs_all = np.concatenate([r[4] for r in results]) if results else np.zeros((0, 2), np.uint64)
    inter_all = np.concatenate([r[5] for r in results]) if results else np.zeros(0, np.int64)
    if len(pairs_all):
        pairs, inverse = np.unique(pairs_all, axis=0, return_inverse=True)
        inter = np.bincount(inverse.ravel(), weights=inter_all, minlength=len(pairs)).astype(np.int64)
    else:
        pairs, inter = np.zeros((0, 2), np.uint64), np.zeros(0, np.int64)
    return Overlaps(p_ids, p_sizes, t_ids, t_sizes, pairs, inter)


def pair_iou(ov: Overlaps) -> np.ndarray:
    p_size = ov.pred_sizes[np.searchsorted(ov.pred_ids, ov.pairs[:, 0])] if len(ov.pairs) else np.zeros(0)
    t_size = ov.true_sizes[np.searchsorted(ov.true_ids, ov.pairs[:, 1])] if len(ov.pairs) else np.zeros(0)
    return ov.intersections / np.maximum(p_size + t_size - ov.intersections, 1)


def match(ov: Overlaps, iou_threshold: float) -> list[tuple[int, int, float]]:
    """One-to-one matches (predicted id, true id, IoU) with IoU >= threshold, maximising the
    summed IoU (Hungarian on the candidate pairs; at thresholds > 0.5 matches are unique anyway)."""
    from scipy.optimize import linear_sum_assignment

    iou = pair_iou(ov)
    keep = iou >= iou_threshold
    cand, cand_iou = ov.pairs[keep], iou[keep]
    if not len(cand):
        return []
    rows, r_inv = np.unique(cand[:, 0], return_inverse=True)
    cols, c_inv = np.unique(cand[:, 1], return_inverse=True)
    cost = np.zeros((len(rows), len(cols)))
    cost[r_inv.ravel(), c_inv.ravel()] = -cand_iou
    r, c = linear_sum_assignment(cost)
    return [(int(rows[i]), int(cols[j]), float(-cost[i, j])) for i, j in zip(r, c) if cost[i, j] < 0]


def instance_scores(n_pred: int, n_true: int, n_matched: int) -> dict[str, float]:
    """Instance precision, recall and F1 = TP / (TP + (FP + FN) / 2), with the empty-case
    rules of `emseg.metrics.scores_from_counts` (1.0 when both are empty)."""
    from emseg.metrics import Counts, scores_from_counts

    tp, fp, fn = n_matched, n_pred - n_matched, n_true - n_matched
    scores = scores_from_counts(Counts(tp, fp, fn))
    return {"precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"],
            "tp": tp, "fp": fp, "fn": fn, "n_pred": n_pred, "n_true": n_true}


def hausdorff_nm(a: np.ndarray, b: np.ndarray, voxel_size: Sequence[float]) -> float:
    """Symmetric Hausdorff distance (nm) between two voxel sets given as boolean arrays of
    the same crop (each must lie wholly inside it)."""
    from scipy import ndimage

    a, b = a.astype(bool), b.astype(bool)
    if not a.any() or not b.any():
        return float("inf") if a.any() != b.any() else 0.0
    to_b = ndimage.distance_transform_edt(~b, sampling=voxel_size)
    to_a = ndimage.distance_transform_edt(~a, sampling=voxel_size)
    return float(max(to_b[a].max(), to_a[b].max()))


def mean_hausdorff(matches: Sequence[tuple[int, int, float]], pred_read: Callable, true_read: Callable,
                   boxes: dict, voxel_size: Sequence[float]) -> tuple[float, list[float]]:
    """Mean Hausdorff distance (nm) over matched pairs; ``boxes`` is (predicted, true) tables
    of id → (lo, hi) inclusive voxel corners; ``*_read(slices)`` return numpy crops."""
    distances = []
    for p, t, _ in matches:
        (lo1, hi1), (lo2, hi2) = boxes[0][p], boxes[1][t]
        region = tuple(slice(min(a, b), max(c, d) + 1) for a, b, c, d in zip(lo1, lo2, hi1, hi2))
        distances.append(hausdorff_nm(pred_read(region) == p, true_read(region) == t, voxel_size))
    return (float(np.mean(distances)) if distances else float("nan")), distances
