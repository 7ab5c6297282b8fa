"""Merge and split counts of an instance segmentation against ground truth.

A predicted object **covers** a true object when at least ``fraction`` of the true object's
voxels lie in it, and **lies in** it when at least ``fraction`` of its own voxels lie in the
true object. A merge is a predicted object that covers two or more true objects (touching
mitochondria given one label); a split is a true object that two or more predicted objects lie
in (one mitochondrion cut in pieces). With ``fraction`` > 0.5 neither can happen by accident
of a single large overlap; the default, 0.5, counts a pair cut in halves.
"""

from __future__ import annotations

import numpy as np

from emseg.evaluate.instances import Overlaps


def check_fraction(fraction: float) -> float:
    """The merge/split fraction must lie in (0, 1]."""
    if not 0.0 < fraction <= 1.0:
        from emseg.errors import InvalidValuesError

        raise InvalidValuesError(f"merge/split fraction must be in (0, 1], got {fraction}")
    return float(fraction)


def merges_and_splits(ov: Overlaps, fraction: float = 0.5) -> dict:
    """``merges`` (predicted objects covering ≥ 2 true ones), ``merged_true`` (the true objects
    they cover), ``splits`` (true objects with ≥ 2 predicted ones lying in them), ``split_pieces``
    (those predicted objects) and the ``fraction`` used."""
    fraction = check_fraction(fraction)
    result = {"merges": 0, "merged_true": 0, "splits": 0, "split_pieces": 0, "fraction": fraction}
    if not len(ov.pairs):
        return result
    pred, true = ov.pairs[:, 0], ov.pairs[:, 1]
    p_size = ov.pred_sizes[np.searchsorted(ov.pred_ids, pred)]
    t_size = ov.true_sizes[np.searchsorted(ov.true_ids, true)]
    for role, group, part, size in (("merge", pred, true, t_size), ("split", true, pred, p_size)):
        substantial = ov.intersections >= fraction * size
        ids, counts = np.unique(group[substantial], return_counts=True)
        many = ids[counts >= 2]
        involved = np.isin(group, many) & substantial
        if role == "merge":
            result["merges"], result["merged_true"] = len(many), len(np.unique(part[involved]))
        else:
            result["splits"], result["split_pieces"] = len(many), len(np.unique(part[involved]))
    return result
