"""Blockwise 3D CLAHE that reproduces `skimage.exposure.equalize_adapthist` exactly.

CLAHE's context is a fixed grid of contextual regions ("tiles", ``kernel_size`` voxels,
anchored at the volume's origin): every voxel's output is a trilinear blend of the
mappings of the 2 × 2 × 2 tiles around it. So instead of guessing a halo we compute in
two blockwise passes:

1. per-tile histograms, accumulated block by block (a block adds its voxels to every tile
   it overlaps; the reflect padding skimage applies beyond the far end of the volume is
   reproduced with per-axis integer weights), then clipped and mapped once per tile;
2. the mapping applied block by block (``map_blocks``; no halo needed, because the
   mappings already hold the whole context). The global min/max stretch that skimage
   applies at the end needs one more cheap reduction over the result.

The output equals the whole-volume result up to float rounding (≤ 1 grey level), with no
seams at any block size. Memory: one batch of blocks plus the tile mappings
(``n_tiles × nbins`` uint16: 96 × 256 for Lucchi).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from pydantic import Field, field_validator

from emseg.config_base import StrictConfig
from emseg.errors import InvalidValuesError
from emseg.io import Volume
from emseg.io.progress import dask_progress
from emseg.prepare.common import Source, as_volume, reduce_blocks, to_dask

NR_OF_GRAY = 2**14  # skimage's internal grey levels
SLAB_VOXELS = 2**21  # apply the mapping this many voxels at a time (bounds float temporaries)


class ClaheConfig(StrictConfig):
    """CLAHE parameters (defaults: ASEM/incasem's 3D CLAHE)."""

    kernel_size: int | tuple[int, int, int] = Field(128, description="contextual region edge (z, y, x) in voxels")
    clip_limit: float = Field(0.02, ge=0, description="normalised clip limit (skimage's meaning)")
    nbins: int = Field(256, ge=2, le=NR_OF_GRAY, description="histogram bins")

    @field_validator("kernel_size")
    @classmethod
    def _positive(cls, value):
        sizes = (value,) * 3 if isinstance(value, int) else tuple(value)
        if len(sizes) != 3 or min(sizes) < 1:
            raise ValueError(f"kernel_size must be a positive int or 3 positive ints, got {value}")
        return value

    def kernel(self) -> tuple[int, int, int]:
        k = self.kernel_size
        return (k,) * 3 if isinstance(k, int) else tuple(int(v) for v in k)  # type: ignore[return-value]


def grey14(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """skimage's first step: ``img_as_uint`` then a linear stretch of [lo, hi] to 14 bits."""
    from skimage.exposure import rescale_intensity
    from skimage.util import img_as_uint

    try:
        as_uint = img_as_uint(values)
    except ValueError as err:
        raise InvalidValuesError(f"CLAHE input values cannot be converted to uint16 ({err})") from err
    return np.round(rescale_intensity(as_uint, in_range=(lo, hi), out_range=(0, NR_OF_GRAY - 1))).astype(np.uint16)


def bin_function(dtype: np.dtype, lo: float, hi: float, nbins: int):
    """raw block → histogram bin (uint16), through a lookup table for 8/16-bit data."""
    bin_size = 1 + NR_OF_GRAY // nbins
    if dtype in (np.uint8, np.uint16):
        table = grey14(np.arange(np.iinfo(dtype).max + 1, dtype=dtype), lo, hi) // bin_size
        return lambda block: table[block]
    return lambda block: grey14(block, lo, hi) // bin_size


def reflect_index(positions: np.ndarray, size: int) -> np.ndarray:
    """Index into an axis of ``size`` for positions past its end, as ``np.pad(mode="reflect")``."""
    if size == 1:
        return np.zeros_like(positions)
    period = 2 * (size - 1)
    q = positions % period
    return np.where(q >= size, period - q, q)


def tile_weights(size: int, kernel: int) -> np.ndarray:
    """(n_tiles, size) int: how often each voxel of the axis counts in each tile's
    histogram (1 inside the volume; reflected voxels count again in the last tile)."""
    n_tiles = math.ceil(size / kernel)
    positions = np.arange(n_tiles * kernel)
    weights = np.zeros((n_tiles, size), dtype=np.int64)
    np.add.at(weights, (positions // kernel, reflect_index(positions, size)), 1)
    return weights


def block_tile_histograms(bins: np.ndarray, region: tuple[slice, ...], weights: list[np.ndarray],
                          nbins: int) -> dict[tuple[int, int, int], np.ndarray]:
    """Histograms that one block contributes to each tile it overlaps."""
    per_axis = []
    for axis_weights, sl in zip(weights, region):
        entries = []
        local = axis_weights[:, sl.start:sl.stop]
        for tile in np.nonzero(local.any(axis=1))[0]:
            nonzero = np.nonzero(local[tile])[0]
            lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
            entries.append((int(tile), slice(lo, hi), local[tile, lo:hi]))
        per_axis.append(entries)
    result = {}
    for (tz, sz, wz), (ty, sy, wy), (tx, sx, wx) in itertools.product(*per_axis):
        sub = bins[sz, sy, sx]
        if (wz == 1).all() and (wy == 1).all() and (wx == 1).all():
            hist = np.bincount(sub.ravel(), minlength=nbins)
        else:
            w = (wz[:, None, None] * wy[None, :, None] * wx[None, None, :]).astype(np.float64)
            hist = np.rint(np.bincount(sub.ravel(), weights=w.ravel(), minlength=nbins)).astype(np.int64)
        result[(tz, ty, tx)] = hist
    return result


def tile_mappings(histograms: np.ndarray, kernel: Sequence[int], clip_limit: float) -> np.ndarray:
    """Clip and equalise each tile's histogram (skimage's own routines, so results match)."""
    from skimage.exposure._adapthist import clip_histogram, map_histogram

    elements = math.prod(kernel)
    clim = int(np.clip(clip_limit * elements, 1, None)) if clip_limit > 0 else elements
    flat = histograms.reshape(-1, histograms.shape[-1]).copy()
    for row in flat:
        clip_histogram(row, clim)
    maps = map_histogram(flat, 0, NR_OF_GRAY - 1, elements)
    return maps.reshape(histograms.shape).astype(np.uint16)


def axis_blend(start: int, stop: int, kernel: int, n_tiles: int):
    """Per-axis (lower tile, upper tile, lower weight, upper weight) for voxels start..stop."""
    shifted = np.arange(start, stop) + kernel // 2
    block = shifted // kernel
    upper_weight = (shifted % kernel) / kernel
    lower = np.clip(block - 1, 0, n_tiles - 1)
    upper = np.clip(block, 0, n_tiles - 1)
    return (lower, upper), (1 - upper_weight, upper_weight)


def apply_mappings(bins: np.ndarray, region: tuple[slice, ...], maps: np.ndarray, kernel: Sequence[int]) -> np.ndarray:
    """CLAHE result (0..2^14-1, uint16) of one block: trilinear blend of tile mappings,
    summed in float32 in skimage's order."""
    n_tiles = maps.shape[:3]
    (zt, zw), (yt, yw), (xt, xw) = (axis_blend(s.start, s.stop, k, n) for s, k, n in zip(region, kernel, n_tiles))
    out = np.empty(bins.shape, dtype=np.uint16)
    slab = max(1, SLAB_VOXELS // max(1, bins.shape[1] * bins.shape[2]))
    for z0 in range(0, bins.shape[0], slab):
        z1 = min(bins.shape[0], z0 + slab)
        result = np.zeros((z1 - z0, *bins.shape[1:]), dtype=np.float32)
        for ez, ey, ex in np.ndindex(2, 2, 2):
            tz = zt[ez][z0:z1, None, None]
            mapped = maps[tz, yt[ey][None, :, None], xt[ex][None, None, :], bins[z0:z1]]
            coeff = (xw[ex][None, None, :] * yw[ey][None, :, None]) * zw[ez][z0:z1, None, None]
            result += (mapped * coeff).astype(np.float32)
        out[z0:z1] = result.astype(np.uint16)
    return out


def clahe(
    source: Source,
    config: ClaheConfig | None = None,
    voxel_size: Sequence[float] | None = None,
    chunks: int | Sequence[int] | None = None,
    progress: bool = False,
):
    """Lazy uint8 CLAHE of a volume (a dask array; write it with `write_ome_zarr`).

    Runs two blockwise reductions now (value range, tile histograms, result range);
    the returned array computes the output block by block.
    """
    import dask.array as da

    config = config or ClaheConfig()
    volume: Volume = as_volume(source, voxel_size)
    kernel = config.kernel()
    raw = to_dask(volume, chunks)
    with dask_progress("CLAHE: value range", progress):
        vmin, vmax = da.compute(raw.min(), raw.max(), scheduler="threads")
    try:
        lo, hi = (float(grey14_input(np.array([v], dtype=volume.dtype))) for v in (vmin, vmax))
    except InvalidValuesError as err:
        raise InvalidValuesError(f"{volume.path}: {err}") from err
    if lo == hi:
        raise InvalidValuesError(f"{volume.path}: volume is constant (value {vmin}); CLAHE is undefined")
    to_bins = bin_function(np.dtype(volume.dtype), lo, hi, config.nbins)
    bins = raw.map_blocks(to_bins, dtype=np.uint16)

    weights = [tile_weights(s, k) for s, k in zip(volume.shape, kernel)]
    histograms = np.zeros((*(len(w) for w in weights), config.nbins), dtype=np.int64)

    def add(partial, region):
        for key, hist in partial.items():
            histograms[key] += hist

    reduce_blocks([bins], lambda b, region: block_tile_histograms(b, region, weights, config.nbins),
                  add, "CLAHE: tile histograms", progress)
    maps = tile_mappings(histograms, kernel, config.clip_limit)

    def equalised(block, block_info=None):
        region = tuple(slice(a, b) for a, b in block_info[0]["array-location"])
        return apply_mappings(block, region, maps, kernel)

    result = bins.map_blocks(equalised, dtype=np.uint16)
    with dask_progress("CLAHE: result range", progress):
        rmin, rmax = (float(v) for v in da.compute(result.min(), result.max(), scheduler="threads"))
    return result.map_blocks(stretch_to_uint8, rmin, rmax, dtype=np.uint8)


def grey14_input(value: np.ndarray) -> int:
    """``img_as_uint`` of one value (the range skimage stretches from)."""
    from skimage.util import img_as_uint

    try:
        return int(img_as_uint(value)[0])
    except ValueError as err:
        raise InvalidValuesError(f"CLAHE input values cannot be converted to uint16 ({err})") from err


def stretch_to_uint8(result: np.ndarray, rmin: float, rmax: float) -> np.ndarray:
    """skimage's final ``rescale_intensity`` to [0, 1], then rounded to 0..255."""
    if rmax == rmin:
        return np.zeros(result.shape, dtype=np.uint8)
    scaled = (result.astype(np.float64) - rmin) / (rmax - rmin)
    return np.rint(scaled * 255).astype(np.uint8)
