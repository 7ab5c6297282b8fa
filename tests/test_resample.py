"""Resampling between voxel sizes: centre-aligned linear interpolation, exact 2× averaging,
anti-aliasing beyond 2×, and the lazy reader agreeing with the in-memory function."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from emseg.io import array_volume
from emseg.predict.resample import resample_array, resampled


@pytest.mark.parametrize("scale", [(2.0, 2.0, 2.0), (0.5, 0.5, 0.5), (1.5, 0.7, 1.0)])
def test_linear_resampling_matches_scipy_with_aligned_centres(scale):
    data = np.random.default_rng(0).random((10, 12, 14)).astype(np.float32)
    out = resample_array(data, scale)
    coords = np.meshgrid(*[(np.arange(n) + 0.5) * s - 0.5 for n, s in zip(out.shape, scale)], indexing="ij")
    np.testing.assert_allclose(out, map_coordinates(data, coords, order=1, mode="nearest"), atol=1e-6)


def test_halving_averages_each_block_and_covers_odd_extents():
    data = np.random.default_rng(1).random((10, 12, 14)).astype(np.float32)
    np.testing.assert_allclose(resample_array(data, (2, 2, 2)), data.reshape(5, 2, 6, 2, 7, 2).mean(axis=(1, 3, 5)),
                               atol=1e-6)
    assert resample_array(data[:9], (2, 2, 2)).shape == (5, 6, 7)  # the odd last slice is not dropped


def test_four_times_coarser_is_low_passed():
    noise = np.random.default_rng(2).normal(0, 1, (64, 64, 64)).astype(np.float32)
    assert resample_array(noise, (4, 4, 4)).std() < 0.25  # linear sampling alone keeps 1/sqrt(8) = 0.35


def test_lazy_reader_equals_the_in_memory_resampling():
    data = np.random.default_rng(3).integers(0, 256, (30, 40, 50), dtype=np.uint8)
    volume = resampled(array_volume(data, (5.0, 5.0, 5.0)), (15.0, 10.0, 2.5))
    assert volume.shape == (10, 20, 100) and volume.voxel_size == (15.0, 10.0, 2.5)
    expected = np.clip(np.rint(resample_array(data, (3.0, 2.0, 0.5))), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(volume[2:7, 5:15, 30:70], expected[2:7, 5:15, 30:70])
