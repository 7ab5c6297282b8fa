"""Sample masks and boundary-exclusion masks, blockwise, and their input checks."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.errors import InvalidValuesError, ShapeMismatchError
from emseg.masks import boundary_exclusion_mask
from emseg.prepare.exclusion import ORGANELLE_WIDTHS, exclusion_mask, exclusion_width
from emseg.prepare.sample_mask import SampleMaskConfig, clean, downsample_factor, sample_mask, threshold_and_smooth


def resin_with_cell(shape=(48, 96, 96)) -> np.ndarray:
    """Bright resin (230) around a cell (100) that has a small bright hole; a small
    dark speck floats in the resin; a few noisy voxels test the opening."""
    raw = np.full(shape, 230, np.uint8)
    raw[8:40, 16:80, 16:80] = 100
    raw[20:26, 40:46, 40:46] = 230  # hole: 216 voxels
    raw[4:10, 84:90, 84:90] = 100  # speck: 216 voxels
    raw[30, 5, 5] = 100  # single voxel, removed by the opening
    return raw


CONFIG = SampleMaskConfig(min_object_size_vox=1000, max_hole_size_vox=1000)


def test_sample_mask_recipe():
    raw = resin_with_cell()
    mask = np.asarray(sample_mask(raw, CONFIG, chunks=32))
    assert mask.dtype == np.uint8
    assert mask[20:26, 40:46, 40:46].all()  # hole filled
    assert not mask[4:10, 84:90, 84:90].any() and mask[30, 5, 5] == 0  # speck and noise removed
    assert mask[10:38, 18:78, 18:78].all() and not mask[:6].any()


def test_sample_mask_blockwise_equals_whole_volume(synth_small):
    config = SampleMaskConfig(low=60, high=200, min_object_size_vox=300, max_hole_size_vox=300)
    whole = clean(threshold_and_smooth(synth_small.raw, config), 300, 300)
    assert 0.05 < whole.mean() < 0.95
    for chunks in (16, (32, 16, 64)):
        assert (np.asarray(sample_mask(synth_small.raw, config, chunks=chunks)).astype(bool) == whole).all()


def test_sample_mask_downsampled_cleaning_approximates_exact():
    raw = resin_with_cell()
    small_budget = CONFIG.model_copy(update={"max_voxels_in_memory": raw.size // 8})
    assert downsample_factor(raw.shape, small_budget.max_voxels_in_memory) == 2
    lazy = sample_mask(raw, small_budget, chunks=32)
    assert hasattr(lazy, "dask")  # computed blockwise, not in memory
    approx = np.asarray(lazy)
    exact = np.asarray(sample_mask(raw, CONFIG, chunks=32))
    assert approx[20:26, 40:46, 40:46].all() and not approx[4:10, 84:90, 84:90].any()
    assert (approx != exact).mean() < 0.001


def touching_balls(shape=(32, 64, 64)) -> np.ndarray:
    """Instance labels: balls, two of them touching, one across block faces."""
    zz, yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.uint16)
    for value, (z, y, x, r) in enumerate([(16, 16, 16, 9), (16, 16, 33, 8), (10, 45, 45, 12), (28, 60, 5, 6)], 1):
        labels[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= r * r] = value
    return labels


@pytest.mark.parametrize("width", [0, 1, 2, 4])
def test_exclusion_mask_blockwise_equals_whole(width):
    labels = touching_balls()
    expected = boundary_exclusion_mask(labels, width)
    assert (exclusion_mask(labels, width, chunks=16).compute() == expected).all()
    if width:
        assert 0 < expected.mean() < 1


def test_exclusion_bad_input(synth_small):
    labels = touching_balls(synth_small.raw.shape)
    with pytest.raises(InvalidValuesError, match="non-negative"):
        exclusion_mask(labels, -1)
    with pytest.raises(InvalidValuesError, match="non-negative"):
        exclusion_width(1.5)
    with pytest.raises(InvalidValuesError, match="integers"):
        exclusion_mask(labels.astype(np.float32), 2)
    with pytest.raises(ShapeMismatchError, match="shape"):
        exclusion_mask(labels, 2, image=synth_small.raw[:, :-1])
    with pytest.raises(InvalidValuesError, match="unknown organelle"):
        exclusion_width(None, "ribosome")
    assert exclusion_width(None, "mito") == ORGANELLE_WIDTHS["mito"] == 4
