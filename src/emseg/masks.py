"""Masks that say where labels count: boundary-exclusion ("metric") masks.

ASEM scores a prediction only away from annotated boundaries, where loose annotation is
uncertain: the metric mask is 0 in ``dilate(labels, n) & ~erode(labels, n)`` and 1
elsewhere (n = 4 voxels for mitochondria, 2 for ER and Golgi, 1 for nuclear pores).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from emseg.errors import InvalidValuesError


def _ball(width: int) -> np.ndarray:
    r = np.arange(-width, width + 1)
    zz, yy, xx = np.meshgrid(r, r, r, indexing="ij")
    return (zz**2 + yy**2 + xx**2) <= width**2


def boundary_exclusion_mask(labels: np.ndarray, width: int, name: str = "labels") -> np.ndarray:
    """uint8 mask: 1 = scored, 0 = within ``width`` voxels of a label boundary.

    ``labels`` is binary or an instance/class label array (any non-zero = object);
    the boundary of every object, including object-object contacts, is excluded.
    Works on a block when the caller gives it ``width`` voxels of context.
    """
    if int(width) != width or width < 0:
        raise InvalidValuesError(f"{name}: exclusion width must be a non-negative integer, got {width}")
    width = int(width)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "uib":
        raise InvalidValuesError(f"{name}: labels must be integers, got dtype {labels.dtype}")
    if width == 0:
        return np.ones(labels.shape, dtype=np.uint8)
    if labels.dtype == bool or (labels.size and int(labels.max()) <= 1 and int(labels.min()) >= 0):
        # binary: near a boundary ⇔ both a foreground and a background voxel lie within
        # ``width`` (Euclidean) — two exact distance transforms, much faster than ball filters
        fg = labels > 0
        if fg.all() or not fg.any():
            return np.ones(labels.shape, dtype=np.uint8)
        near_fg = ndimage.distance_transform_edt(~fg) <= width
        near_bg = ndimage.distance_transform_edt(fg) <= width
        return (~(near_fg & near_bg)).astype(np.uint8)
    footprint = _ball(width) if labels.ndim == 3 else _ball(width)[width]
    # a voxel is near a boundary when its neighbourhood holds more than one label value
    hi = ndimage.maximum_filter(labels, footprint=footprint, mode="nearest")
    lo = ndimage.minimum_filter(labels, footprint=footprint, mode="nearest")
    return (hi == lo).astype(np.uint8)
