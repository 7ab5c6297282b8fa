"""Sample mask (cell = 1, resin/empty = 0), the ASEM/incasem recipe, blockwise.

1. keep voxels with grey value in the open interval (low, high) — default (2, 180);
2. binary opening with a ball of radius 3, closing with a ball of radius 2 — blockwise
   with ``map_overlap`` (halo 2·3 + 2·2 = 10 voxels; beyond the volume border the
   operations ignore the outside, like skimage's ``mode="ignore"``), equal to the
   whole-volume result;
3. remove objects and fill holes smaller than 100,000 voxels (6-connectivity). This needs
   global connectivity, so it runs with cc3d on an in-memory copy of the mask: at full
   resolution when the volume has at most ``max_voxels_in_memory`` voxels (exact), else on a
   majority-downsampled copy (factor f = 2, 4, … chosen to fit), whose decisions are
   upsampled blockwise: full-resolution voxels change only inside coarse cells whose coarse
   value the cleaning changed. Approximation (f > 1 only): objects/holes are measured in
   f³-voxel cells, and structures thinner than f voxels are judged by their surroundings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from emseg.io.ome_zarr import downsample_block
from emseg.io.progress import dask_progress
from emseg.prepare.common import Source, as_volume, to_dask

DEFAULT_MAX_VOXELS = 2**27  # 134 M voxels (~1.5 GB peak for the global step); Lucchi fits


class SampleMaskConfig(BaseModel):
    """Sample-mask parameters (defaults: incasem's 01_data_formatting)."""

    low: float = Field(2, description="keep voxels with value > low")
    high: float = Field(180, description="keep voxels with value < high")
    opening_radius: int = Field(3, ge=0)
    closing_radius: int = Field(2, ge=0)
    min_object_size: int = Field(100_000, ge=0, description="remove objects smaller than this (voxels)")
    max_hole_size: int = Field(100_000, ge=0, description="fill holes smaller than this (voxels)")
    max_voxels_in_memory: int = Field(DEFAULT_MAX_VOXELS, ge=1, description="budget of the global cleaning step")


def ball(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    zz, yy, xx = np.meshgrid(r, r, r, indexing="ij")
    return (zz**2 + yy**2 + xx**2) <= radius**2


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Erosion by a ball, outside the array counted as foreground (dilating the complement
    is the same operation and several times faster in scipy for mostly-foreground masks)."""
    from scipy import ndimage

    if radius == 0:
        return mask
    return ~ndimage.binary_dilation(~mask, ball(radius), border_value=0)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    from scipy import ndimage

    if radius == 0:
        return mask
    return ndimage.binary_dilation(mask, ball(radius), border_value=0)


def threshold_and_smooth(block: np.ndarray, config: SampleMaskConfig) -> np.ndarray:
    """Steps 1–2 on one block (given ``smoothing_halo`` voxels of context)."""
    mask = (block > config.low) & (block < config.high)
    mask = dilate(erode(mask, config.opening_radius), config.opening_radius)
    return erode(dilate(mask, config.closing_radius), config.closing_radius)


def smoothing_halo(config: SampleMaskConfig) -> int:
    return 2 * (config.opening_radius + config.closing_radius)


def clean(mask: np.ndarray, min_object_size: float, max_hole_size: float) -> np.ndarray:
    """Remove 6-connected objects < ``min_object_size`` and fill holes (background
    components not touching the volume border) < ``max_hole_size``."""
    import cc3d

    labels = cc3d.connected_components(mask, connectivity=6)
    keep = np.bincount(labels.ravel()) >= min_object_size
    keep[0] = False
    mask = keep[labels]
    del labels
    background = cc3d.connected_components(~mask, connectivity=6)
    sizes = np.bincount(background.ravel())
    faces = [background[0], background[-1], background[:, 0], background[:, -1], background[:, :, 0], background[:, :, -1]]
    touches_border = np.zeros(sizes.shape, dtype=bool)
    for face in faces:
        touches_border[np.unique(face)] = True
    hole = (sizes < max_hole_size) & ~touches_border
    hole[0] = False
    return mask | hole[background]


def downsample_factor(shape: Sequence[int], max_voxels: int) -> int:
    """Smallest power of two f with ceil(shape / f) having at most ``max_voxels`` voxels."""
    f = 1
    while math.prod(math.ceil(s / f) for s in shape) > max_voxels:
        f *= 2
    return f


def sample_mask(
    source: Source,
    config: SampleMaskConfig | None = None,
    voxel_size: Sequence[float] | None = None,
    chunks: int | Sequence[int] | None = None,
    progress: bool = False,
):
    """Sample mask of a volume as uint8 (1 = sample): a numpy array when the volume fits
    the memory budget, else a lazy dask array (write either with `write_ome_zarr`)."""
    import dask.array as da

    config = config or SampleMaskConfig()
    volume = as_volume(source, voxel_size)
    raw = to_dask(volume, chunks)
    factor = downsample_factor(volume.shape, config.max_voxels_in_memory)
    if factor > 1 and any(c % factor for cs in raw.chunks for c in cs[:-1]):
        raw = raw.rechunk(tuple(max(factor, cs[0] // factor * factor) for cs in raw.chunks))
    halo = smoothing_halo(config)
    smooth = raw.map_overlap(threshold_and_smooth, depth=halo, boundary="none", dtype=bool, config=config)
    coarse = smooth if factor == 1 else smooth.map_blocks(
        lambda b: downsample_block(b.view(np.uint8), (factor,) * 3, "image").astype(bool),
        dtype=bool, chunks=tuple(tuple(math.ceil(c / factor) for c in cs) for cs in smooth.chunks))
    with dask_progress("sample mask: threshold, opening, closing", progress):
        coarse_mask = coarse.compute(scheduler="threads")
    cleaned = clean(coarse_mask, config.min_object_size / factor**3, config.max_hole_size / factor**3)
    if factor == 1:
        return cleaned.view(np.uint8)
    changed = cleaned != coarse_mask
    del coarse_mask

    def upsample(block, block_info=None):
        region = tuple(slice(a // factor, -(-b // factor)) for a, b in block_info[0]["array-location"])
        where = np.ix_(*(np.arange(n) // factor for n in block.shape))
        local_changed, local_clean = changed[region][where], cleaned[region][where]
        return np.where(local_changed, local_clean, block).view(np.uint8)

    return smooth.map_blocks(upsample, dtype=np.uint8)
