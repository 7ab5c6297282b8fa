"""Histogram matching of one cell's volume to a reference cell, blockwise.

Histograms of both volumes are accumulated block by block (``bincount``; optionally only
inside sample masks, so resin does not count), the mapping is built once as a lookup
table — the same cumulative-distribution interpolation as
`skimage.exposure.match_histograms` — and applied with ``map_blocks``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emseg.errors import InvalidValuesError
from emseg.io import Volume
from emseg.prepare.common import Source, as_volume, check_same_shape, reduce_blocks, to_dask


def check_matchable(volume: Volume) -> int:
    """Number of grey levels of an 8/16-bit unsigned volume; clear error for other dtypes."""
    dtype = np.dtype(volume.dtype)
    if dtype not in (np.uint8, np.uint16):
        raise InvalidValuesError(
            f"{volume.path}: histogram matching needs uint8 or uint16 data, got {dtype}; convert it first"
        )
    return int(np.iinfo(dtype).max) + 1


def volume_histogram(volume: Volume, mask: Source | None = None, chunks=None, progress: bool = False,
                     description: str = "histogram") -> np.ndarray:
    """Counts of every grey level (inside ``mask`` > 0 when given), blockwise."""
    levels = check_matchable(volume)
    arrays = [to_dask(volume, chunks)]
    if mask is not None:
        mask_volume = as_volume(mask, name="<mask>")
        check_same_shape(mask_volume, volume, "mask")
        arrays.append(mask_volume.to_dask(arrays[0].chunks))
    counts = np.zeros(levels, dtype=np.int64)

    def count(block, *rest):
        values = block[rest[0] > 0] if len(rest) == 2 else block.ravel()
        return np.bincount(values, minlength=levels)

    def add(partial, region):
        counts[:] += partial

    reduce_blocks(arrays, count, add, description, progress)
    if counts.sum() == 0:
        raise InvalidValuesError(f"{volume.path}: no voxels to build a histogram from (empty mask?)")
    return counts


def matching_table(source_counts: np.ndarray, reference_counts: np.ndarray) -> np.ndarray:
    """Float lookup table: source grey level → reference grey level with the same quantile."""
    source_quantiles = np.cumsum(source_counts) / source_counts.sum()
    present = np.nonzero(reference_counts)[0]
    reference_quantiles = np.cumsum(reference_counts[present]) / reference_counts.sum()
    return np.interp(source_quantiles, reference_quantiles, present)


def match_histogram(
    source: Source,
    reference: Source,
    mask: Source | None = None,
    reference_mask: Source | None = None,
    voxel_size: Sequence[float] | None = None,
    chunks: int | Sequence[int] | None = None,
    progress: bool = False,
):
    """Lazy copy of ``source`` (same dtype) whose histogram matches ``reference``'s."""
    volume = as_volume(source, voxel_size, name="<source>")
    ref = as_volume(reference, name="<reference>")
    src_counts = volume_histogram(volume, mask, chunks, progress, "histogram (input)")
    ref_counts = volume_histogram(ref, reference_mask, chunks, progress, "histogram (reference)")
    dtype = np.dtype(volume.dtype)
    if len(ref_counts) > len(src_counts):
        raise InvalidValuesError(
            f"{ref.path}: reference is {ref.dtype} but the input {volume.path} is {dtype}; use the same bit depth"
        )
    table = matching_table(src_counts, ref_counts)
    lut = np.clip(np.rint(table), 0, np.iinfo(dtype).max).astype(dtype)
    return to_dask(volume, chunks).map_blocks(lambda block: lut[block], dtype=dtype)
