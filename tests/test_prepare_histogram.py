"""Histogram matching across cells, blockwise."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.errors import InvalidValuesError, ShapeMismatchError
from emseg.prepare.histogram import match_histogram
from emseg.synth import make_volume


@pytest.fixture(scope="module")
def two_cells():
    a = make_volume((24, 60, 70), (8.0, 8.0, 8.0), seed=5).raw
    b = (make_volume((20, 50, 40), (8.0, 8.0, 8.0), seed=6).raw * 0.5 + 60).astype(np.uint8)
    return a, b


def test_matches_skimage(two_cells):
    from skimage.exposure import match_histograms

    a, b = two_cells
    expected = np.clip(np.rint(match_histograms(a, b)), 0, 255).astype(np.uint8)
    out = match_histogram(a, b, chunks=16).compute()
    assert out.dtype == np.uint8 and (out == expected).all()
    assert abs(out.mean() - b.mean()) < 1 < abs(a.mean() - b.mean())


def test_uint16_and_masks(two_cells):
    a, b = (v.astype(np.uint16) * 100 for v in two_cells)
    mask = np.zeros(a.shape, np.uint8)
    mask[:, :30] = 1
    out = match_histogram(a, b, mask=mask, chunks=16).compute()
    assert out.dtype == np.uint16
    # inside the mask the distribution now follows the reference
    assert abs(np.median(out[mask > 0]) - np.median(b)) <= 100


def test_bad_input(two_cells):
    a, b = two_cells
    with pytest.raises(InvalidValuesError, match="uint8 or uint16"):
        match_histogram(a.astype(np.float32), b)
    with pytest.raises(InvalidValuesError, match="bit depth"):
        match_histogram(a, b.astype(np.uint16))
    with pytest.raises(ShapeMismatchError):
        match_histogram(a, b, mask=np.ones((2, 2, 2), np.uint8))
    with pytest.raises(InvalidValuesError, match="empty mask"):
        match_histogram(a, b, mask=np.zeros(a.shape, np.uint8))
