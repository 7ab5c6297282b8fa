"""Blockwise connected components equal whole-volume cc3d up to renumbering."""

from __future__ import annotations

import cc3d
import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from emseg.postprocess.components import connected_components, find_components, label_dtype


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label arrays differ only by renumbering (0 stays background)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("chunks", [(5, 7, 6), (8, 16, 16), (4, 9, 8)])
def test_blockwise_equals_whole_volume(connectivity, chunks):
    rng = np.random.default_rng(connectivity)
    mask = ndimage.gaussian_filter(rng.random((20, 33, 30)), 1.0) > 0.5  # blobs crossing block faces
    mask |= rng.random(mask.shape) > 0.93  # specks: diagonal contacts across block edges/corners
    labels, n = connected_components(da.from_array(mask, chunks=chunks), connectivity)
    result = labels.compute()
    expected, n_expected = cc3d.connected_components(mask, connectivity=connectivity, return_N=True)
    assert n == n_expected
    assert same_partition(result, expected)
    assert set(np.unique(result)) == set(range(n + 1))  # consecutive ids


def test_diagonal_corner_contact_across_blocks():
    mask = np.zeros((4, 4, 4), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True  # touch only at a corner, in different blocks
    for connectivity, expected in ((6, 2), (18, 2), (26, 1)):
        _, n = connected_components(da.from_array(mask, chunks=2), connectivity)
        assert n == expected
    mask[2, 2, 2] = False
    mask[1, 2, 2] = True  # edge contact
    assert connected_components(da.from_array(mask, chunks=2), 18)[1] == 1
    assert connected_components(da.from_array(mask, chunks=2), 6)[1] == 2


def test_sizes_border_and_size_filter():
    mask = np.zeros((10, 10, 10), bool)
    mask[0:3, 0:3, 0:3] = True  # 27 voxels, touches the border, spans blocks
    mask[5:7, 5:7, 5:6] = True  # 4 voxels, interior
    comps = find_components(da.from_array(mask, chunks=4), 26)
    assert sorted(comps.sizes[1:].tolist()) == [4, 27]
    big = int(np.argmax(comps.sizes))
    assert comps.touches_border[big] and not comps.touches_border[3 - big]
    labels, n = connected_components(da.from_array(mask, chunks=4), 26, min_size_vox=5)
    assert n == 1 and np.count_nonzero(labels.compute()) == 27


def test_label_dtype_switches_to_uint64():
    assert label_dtype(2**32 - 1) == np.uint32
    assert label_dtype(2**32) == np.uint64
