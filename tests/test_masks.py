"""Boundary-exclusion masks: the fast binary path equals the ball-filter definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from emseg.errors import InvalidValuesError
from emseg.masks import _ball, boundary_exclusion_mask


def reference(labels: np.ndarray, width: int) -> np.ndarray:
    """ASEM's definition: 0 in dilate(labels, ball) − erode(labels, ball)."""
    ball = _ball(width)
    hi = ndimage.maximum_filter(labels, footprint=ball, mode="nearest")
    lo = ndimage.minimum_filter(labels, footprint=ball, mode="nearest")
    return (hi == lo).astype(np.uint8)


@pytest.mark.parametrize("width", [1, 2, 4])
def test_binary_fast_path_equals_ball_filters(width):
    rng = np.random.default_rng(width)
    labels = (ndimage.gaussian_filter(rng.random((24, 30, 28)), 2) > 0.5).astype(np.uint8)
    assert 0 < labels.mean() < 1
    np.testing.assert_array_equal(boundary_exclusion_mask(labels, width), reference(labels, width))


def test_instances_exclude_contacts_between_objects():
    labels = np.zeros((10, 10, 10), np.uint16)
    labels[:, :, :5], labels[:, :, 5:] = 1, 2  # two touching objects, no background
    mask = boundary_exclusion_mask(labels, 1)
    assert mask[:, :, 4:6].sum() == 0 and mask[:, :, :3].all()


def test_bad_width():
    with pytest.raises(InvalidValuesError, match="non-negative integer"):
        boundary_exclusion_mask(np.zeros((2, 2, 2), np.uint8), -1)
