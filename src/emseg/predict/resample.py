"""Resampling between voxel sizes: a lazy linear view of a volume, and in-memory arrays.

Voxel centres are aligned: target voxel i sits at source coordinate (i + 0.5) · scale − 0.5,
so halving the resolution averages each 2 × 2 × 2 block, and doubling it interpolates
between neighbours; more than 2× coarser, a box filter of about the scale's width comes first
(against aliasing). Linear interpolation is separable, done axis by axis (no coordinate grids).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from emseg.io.volume import Region, Volume, check_voxel_size

VOXEL_SIZE_TOLERANCE = 0.1  # relative difference per axis before two voxel sizes "differ"


def same_voxel_size(a: Sequence[float], b: Sequence[float], tolerance: float = VOXEL_SIZE_TOLERANCE) -> bool:
    """True when every axis of ``a`` is within ``tolerance`` (relative) of ``b``'s."""
    return all(abs(float(x) - float(y)) <= tolerance * float(y) for x, y in zip(a, b))


def source_coordinates(indices: np.ndarray, scale: float) -> np.ndarray:
    """Source coordinates of target voxel centres ``indices`` (scale = target / source voxel size)."""
    return (indices + 0.5) * scale - 0.5


def box_width(scale: float) -> int:
    """Width of the box filter applied before sampling ``scale``× coarser (1: none). Linear
    sampling alone averages two neighbours, exactly a box at scale 2; coarser needs more."""
    return max(1, int(round(scale)) - 1) if scale > 2 else 1


def interpolate_axis(data: np.ndarray, coords: np.ndarray, axis: int, scale: float = 1.0) -> np.ndarray:
    """``data`` linearly interpolated at ``coords`` along ``axis`` (edges clamped), float32;
    when ``scale`` > 2 (downsampling), box-filtered first against aliasing."""
    width = box_width(scale)
    if width > 1:
        from scipy.ndimage import uniform_filter1d

        data = uniform_filter1d(data.astype(np.float32, copy=False), width, axis=axis, mode="nearest")
    n = data.shape[axis]
    c = np.clip(coords, 0, n - 1)
    i0 = np.floor(c).astype(np.intp)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (c - i0).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(data.ndim)])
    a0 = np.take(data, i0, axis=axis).astype(np.float32, copy=False)
    a1 = np.take(data, i1, axis=axis).astype(np.float32, copy=False)
    return a0 + (a1 - a0) * w


def resample_array(data: np.ndarray, scale: Sequence[float], shape: Sequence[int] | None = None,
                   start: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """``data`` linearly resampled (float32) to the grid with ``scale`` = target / source voxel
    size; ``shape`` and ``start`` choose the target region (default: the whole resampled grid)."""
    if shape is None:
        shape = resampled_shape(data.shape, scale)
    out = data
    for axis, (n, s, o) in enumerate(zip(shape, scale, start)):
        out = interpolate_axis(out, source_coordinates(np.arange(o, o + n, dtype=np.float64), s), axis, s)
    return out


def resampled_shape(shape: Sequence[int], scale: Sequence[float]) -> tuple[int, ...]:
    """Voxels of the resampled grid: enough to cover every source voxel."""
    return tuple(max(1, int(np.ceil(n / f - 1e-6))) for n, f in zip(shape, scale))


def cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float ``values`` back to ``dtype`` (integers rounded and clipped)."""
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


class ResampledReader:
    """Reads a region of the resampled grid from the source's bounding region (picklable)."""

    def __init__(self, source: Volume, scale: Sequence[float]) -> None:
        self.source, self.scale = source, tuple(scale)  # target voxel → source voxels

    def __call__(self, region: Region) -> np.ndarray:
        coords = [source_coordinates(np.arange(r.start, r.stop, dtype=np.float64), s)
                  for r, s in zip(region, self.scale)]
        pad = [box_width(s) for s in self.scale]  # the box filter's reach
        lo = [min(n - 1, max(0, int(np.floor(c.min())) - p)) for c, n, p in zip(coords, self.source.shape, pad)]
        hi = [min(n, max(low + 1, int(np.ceil(c.max())) + 2 + p))
              for c, n, low, p in zip(coords, self.source.shape, lo, pad)]
        out = np.asarray(self.source[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
        for axis, (c, low, s) in enumerate(zip(coords, lo, self.scale)):
            out = interpolate_axis(out, c - low, axis, s)
        return cast_like(out, self.source.dtype)


def resampled(volume: Volume, voxel_size: Sequence[float], shape: Sequence[int] | None = None) -> Volume:
    """``volume`` seen at ``voxel_size`` nm (z, y, x); ``shape`` fixes the grid's extent
    (default: enough target voxels to cover the volume)."""
    target = check_voxel_size(voxel_size, volume.path)
    scale = [t / s for t, s in zip(target, volume.voxel_size)]
    shape = tuple(shape) if shape is not None else resampled_shape(volume.shape, scale)
    return dataclasses.replace(volume, shape=shape, voxel_size=target, reader=ResampledReader(volume, scale),
                               chunks=None, path=f"{volume.path} (resampled to {target} nm)")
