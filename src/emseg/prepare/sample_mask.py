"""Sample mask (cell = 1, resin/empty = 0), the ASEM/incasem recipe, blockwise.

1. keep voxels with grey value in the open interval (low, high) — default (2, 180);
2. binary opening with a ball of radius 3, closing with a ball of radius 2 — blockwise
   with ``map_overlap`` (halo 2·3 + 2·2 = 10 voxels; beyond the volume border the
   operations ignore the outside, like skimage's ``mode="ignore"``), equal to the
   whole-volume result;
3. remove objects and fill holes smaller than 100,000 voxels (6-connectivity). This needs
   global connectivity, so it runs with cc3d on an in-memory copy of the mask: at full
   resolution when the volume has at most ``max_voxels_in_memory`` voxels (exact), else on
   coarse copies (factor f = 2, 4, … chosen to fit): "any foreground" cells decide which
   objects to remove, "any background" cells which holes to fill, and the decisions are
   applied blockwise at full resolution. Approximation (f > 1 only): sizes are counted in
   whole f³ cells and parts closer than one cell merge, so the cleaning errs on the side of
   keeping objects and not filling holes (small objects next to big ones stay; holes with
   a gap to the outside narrower than a cell stay open); a speck removed inside a hole
   leaves its own voxels empty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import Field, model_validator

from emseg.config_base import StrictConfig
from emseg.io.progress import dask_progress
from emseg.prepare.common import Source, as_volume, map_with_halo, to_dask

DEFAULT_MAX_VOXELS = 2**27  # 134 M voxels (~1.5 GB peak for the global step); Lucchi fits


class SampleMaskConfig(StrictConfig):
    """Sample-mask parameters (defaults: incasem's 01_data_formatting)."""

    renamed_keys = {"min_object_size": "min_object_size_vox", "max_hole_size": "max_hole_size_vox"}

    low: float = Field(2, description="keep voxels with value > low")
    high: float = Field(180, description="keep voxels with value < high")
    opening_radius: int = Field(3, ge=0)
    closing_radius: int = Field(2, ge=0)
    min_object_size_vox: int = Field(100_000, ge=0, description="remove objects smaller than this (voxels)")
    max_hole_size_vox: int = Field(100_000, ge=0, description="fill holes smaller than this (voxels)")
    max_voxels_in_memory: int = Field(DEFAULT_MAX_VOXELS, ge=1, description="budget of the global cleaning step")

    @model_validator(mode="after")
    def _range(self) -> SampleMaskConfig:
        if self.low >= self.high:
            raise ValueError(f"--low {self.low:g} must be below --high {self.high:g} (voxels kept: low < value < high)")
        return self


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
    """Remove 6-connected objects < ``min_object_size``, then fill holes (background
    components not touching the volume border) < ``max_hole_size``."""
    mask = mask & ~small_components(mask, min_object_size)
    return mask | small_components(~mask, max_hole_size, exclude_border=True)


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
    smooth = map_with_halo(raw, threshold_and_smooth, halo, bool, config=config)
    if factor == 1:
        with dask_progress("sample mask: threshold, opening, closing", progress):
            mask = smooth.compute(scheduler="threads")
        return clean(mask, config.min_object_size_vox, config.max_hole_size_vox).view(np.uint8)
    pooled = {
        key: smooth.map_blocks(any_pool, factor, invert, dtype=bool,
                               chunks=tuple(tuple(math.ceil(c / factor) for c in cs) for cs in smooth.chunks))
        for key, invert in (("foreground", False), ("background", True))
    }
    with dask_progress("sample mask: threshold, opening, closing (coarse)", progress):
        coarse = dict(zip(pooled, da.compute(*pooled.values(), scheduler="threads")))
    remove = small_components(coarse["foreground"], config.min_object_size_vox / factor**3)
    fill = small_components(coarse["background"], config.max_hole_size_vox / factor**3, exclude_border=True)
    del coarse

    def apply(block, block_info=None):
        region = tuple(slice(a // factor, -(-b // factor)) for a, b in block_info[0]["array-location"])
        cells = np.ix_(*(np.arange(n) // factor for n in block.shape))
        return np.where(block, ~remove[region][cells], fill[region][cells]).view(np.uint8)

    return smooth.map_blocks(apply, dtype=np.uint8)


def any_pool(block: np.ndarray, factor: int, invert: bool = False) -> np.ndarray:
    """Coarse cell = 1 when any of its factor³ voxels is set (or unset, with ``invert``)."""
    if invert:
        block = ~block
    pads = [(0, (-n) % factor) for n in block.shape]
    block = np.pad(block, pads, constant_values=False)
    z, y, x = (n // factor for n in block.shape)
    return block.reshape(z, factor, y, factor, x, factor).any(axis=(1, 3, 5))


def small_components(mask: np.ndarray, max_size: float, exclude_border: bool = False) -> np.ndarray:
    """Voxels of 6-connected components of ``mask`` smaller than ``max_size`` (and, with
    ``exclude_border``, not touching the array border)."""
    import cc3d

    labels = cc3d.connected_components(mask, connectivity=6)
    small = np.bincount(labels.ravel()) < max_size
    small[0] = False
    if exclude_border:
        for face in (labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]):
            small[np.unique(face)] = False
    return small[labels]
