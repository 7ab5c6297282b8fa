"""Stroke volumes: checks (classes, ROI, shape) and a user simulation drawn from ground truth.

A stroke volume has the raw volume's shape: 0 = no stroke, 1 = object, 2 = background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emseg.errors import InvalidValuesError, ShapeMismatchError
from emseg.io.volume import Region

OBJECT, BACKGROUND = 1, 2


def check_shapes(image_shape: Sequence[int], strokes_shape: Sequence[int], image_name: str, strokes_name: str,
                 subject: str = "strokes have", hint: str = "draw the strokes as a label layer of the same shape") -> None:
    """The strokes (or another volume, named by ``subject``) must have the image's shape, else a clear
    error ending with ``hint``."""
    if tuple(image_shape) != tuple(strokes_shape):
        raise ShapeMismatchError(
            f"{strokes_name}: {subject} shape {tuple(strokes_shape)} but the image {image_name} has "
            f"{tuple(image_shape)}; {hint}"
        )


def stroke_summary(strokes, slab: int = 32) -> tuple[dict[int, int], Region | None]:
    """Voxel count per stroke value and the bounding box of all strokes (reads ``slab`` z-planes at a time)."""
    counts: dict[int, int] = {}
    lo = np.full(3, np.iinfo(np.int64).max)
    hi = np.full(3, -1)
    for z0 in range(0, strokes.shape[0], slab):
        block = np.asarray(strokes[z0:z0 + slab])
        values, n = np.unique(block, return_counts=True)
        for v, c in zip(values.tolist(), n.tolist()):
            counts[int(v)] = counts.get(int(v), 0) + int(c)
        where = np.nonzero(block)
        if where[0].size:
            idx = np.array([w.min() for w in where]), np.array([w.max() for w in where])
            lo = np.minimum(lo, idx[0] + (z0, 0, 0))
            hi = np.maximum(hi, idx[1] + (z0, 0, 0))
    counts.pop(0, None)
    box = None if hi[0] < 0 else tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))
    return counts, box  # type: ignore[return-value]


def check_strokes(counts: dict[int, int], name: str) -> None:
    """Both classes present and no other values, else a clear error."""
    bad = sorted(set(counts) - {OBJECT, BACKGROUND})
    if bad:
        raise InvalidValuesError(
            f"{name}: stroke values must be 0 (none), 1 (object) or 2 (background); found {bad[:5]}"
        )
    missing = [label for value, label in ((OBJECT, "object (1)"), (BACKGROUND, "background (2)")) if not counts.get(value)]
    if missing:
        raise InvalidValuesError(
            f"{name}: strokes of both classes are needed; there are none for {' and '.join(missing)} "
            "— draw at least one object stroke and one background stroke"
        )


# ---------------------------------------------------------------- user simulation (benchmark)

def plane_positions(n: int, k: int) -> list[int]:
    """``k`` evenly spaced plane indices in ``range(n)`` (centres of k equal slabs)."""
    return sorted({int((i + 0.5) * n / k) for i in range(k)})


def simulate_strokes(
    truth: np.ndarray,
    planes: int,
    axis: int = 0,
    erosion_vox: int = 3,
    margin_vox: int = 6,
    min_area_vox: int = 30,
    background_fraction: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Draw strokes as a user would, from a binary ground truth, on ``planes`` planes along ``axis``.

    Object strokes: the 2D skeleton (centre line) of every object section that survives an
    erosion by ``erosion_vox`` (sections smaller than ``min_area_vox`` are skipped, as a user
    would skip slivers). Background strokes: pieces of the centre lines of the background
    farther than ``margin_vox`` from any object, a random ``background_fraction`` of them.
    """
    from scipy import ndimage as ndi
    from skimage.morphology import disk, skeletonize

    rng = np.random.default_rng(seed)
    truth = np.asarray(truth) > 0
    strokes = np.zeros(truth.shape, np.uint8)
    for position in plane_positions(truth.shape[axis], planes):
        section = np.take(truth, position, axis=axis)
        out = np.zeros(section.shape, np.uint8)
        inner = ndi.binary_erosion(section, disk(erosion_vox))
        parts, n = ndi.label(inner)
        sizes = np.bincount(parts.ravel(), minlength=n + 1)
        big = np.flatnonzero(sizes >= min_area_vox)
        keep = np.isin(parts, big[big > 0])
        out[skeletonize(keep)] = OBJECT
        far = ~ndi.binary_dilation(section, disk(margin_vox))
        far = ndi.binary_erosion(far, disk(margin_vox), border_value=1)
        skeleton = skeletonize(far)
        # cut the background skeleton at branch points and keep a random subset of its pieces
        neighbours = ndi.convolve(skeleton.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant")
        pieces, m = ndi.label(skeleton & (neighbours <= 3), structure=np.ones((3, 3)))
        sizes = np.bincount(pieces.ravel(), minlength=m + 1)
        chosen = [i for i in range(1, m + 1) if sizes[i] >= 5 and rng.random() < background_fraction]
        if not chosen and m:
            chosen = [int(np.argmax(sizes[1:])) + 1]
        out[np.isin(pieces, chosen)] = BACKGROUND
        index = [slice(None)] * 3
        index[axis] = position
        strokes[tuple(index)] = out
    return strokes
