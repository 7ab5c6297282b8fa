"""Voxel scores of a prediction against ground truth, accumulated block by block.

Counts come from `emseg.metrics.confusion_counts` on each block and are summed; masks
(sample ∧ metric) restrict where voxels count. The boundary-exclusion metric mask is
`emseg.masks.boundary_exclusion_mask` applied with ``width`` voxels of overlap, which makes
it equal to the whole-volume mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emseg.metrics import Counts, confusion_counts, scores_from_counts


def _counts_block(pred, truth, mask) -> np.ndarray:
    c = confusion_counts(pred, truth, mask)
    return np.array([[c.tp, c.fp, c.fn, c.tn]], np.int64)


def _sum_blocks(arrays: Sequence, function, width: int, progress: bool, description: str) -> np.ndarray:
    """Apply ``function`` to aligned blocks of ``arrays`` (each returns a (k, width) int64
    table) and sum the tables."""
    import dask
    import dask.array as da

    from emseg.io.progress import dask_progress

    arrays = [a for a in arrays]
    chunks = arrays[0].chunks
    arrays = [da.asarray(a).rechunk(chunks) for a in arrays]
    delayed = [a.to_delayed().ravel() for a in arrays]
    tasks = [dask.delayed(function)(*blocks) for blocks in zip(*delayed)]
    with dask_progress(description, progress):
        tables = dask.compute(*tasks, scheduler="threads")
    return np.sum(tables, axis=0) if tables else np.zeros((1, width), np.int64)


def metric_mask(truth_labels, width: int):
    """Lazy boundary-exclusion mask (1 = scored) of a ground-truth label dask array."""
    from emseg.masks import boundary_exclusion_mask

    if width == 0:
        return None
    depth = tuple(min(int(width), min(c)) if len(c) > 1 else 0 for c in truth_labels.chunks)
    if any(d < width for d, c in zip(depth, truth_labels.chunks) if len(c) > 1):
        truth_labels = truth_labels.rechunk(tuple(max(int(width), max(c)) for c in truth_labels.chunks))
        depth = tuple(int(width) if len(c) > 1 else 0 for c in truth_labels.chunks)
    return truth_labels.map_overlap(boundary_exclusion_mask, depth=depth, boundary="none", dtype=np.uint8,
                                   width=int(width))


def voxel_counts(pred_mask, truth_mask, mask=None, progress: bool = False) -> Counts:
    """Confusion counts of two boolean dask arrays inside ``mask`` (None = everywhere)."""
    if mask is None:
        table = _sum_blocks([pred_mask, truth_mask], lambda p, t: _counts_block(p, t, None), 4, progress, "voxel")
    else:
        table = _sum_blocks([pred_mask, truth_mask, mask], _counts_block, 4, progress, "voxel")
    return Counts(*(int(v) for v in table[0]))


def sweep_counts(prob, truth_mask, thresholds: Sequence[float], scale: float = 1.0, mask=None,
                 progress: bool = False) -> list[Counts]:
    """Counts for every threshold in one pass over the probability map."""
    thresholds = np.asarray(thresholds, np.float64) * scale

    def block_counts(p, t, m=None):
        rows = [_counts_block(p >= th, t, m)[0] for th in thresholds]
        return np.array(rows, np.int64)

    arrays = [prob, truth_mask] + ([mask] if mask is not None else [])
    table = _sum_blocks(arrays, block_counts, 4, progress, "sweep")
    return [Counts(*(int(v) for v in row)) for row in table]


def sweep_table(thresholds: Sequence[float], counts: Sequence[Counts]) -> list[dict]:
    return [{"threshold": float(t), **scores_from_counts(c)} for t, c in zip(thresholds, counts)]


def plot_sweep(rows: list[dict], path) -> None:
    """PNG of F1, IoU, precision and recall against the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["threshold"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for key in ("f1", "iou", "precision", "recall"):
        ax.plot(t, [r[key] for r in rows], marker="o" if key == "f1" else None, label=key)
    best = max(rows, key=lambda r: r["f1"])
    ax.axvline(best["threshold"], color="grey", ls=":", lw=1)
    ax.set(xlabel="threshold", ylabel="score", ylim=(0, 1.02),
           title=f"best F1 {best['f1']:.3f} at {best['threshold']:.2f}")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
