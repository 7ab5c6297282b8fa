"""A lazy view of a volume resampled to another voxel size (linear interpolation)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from emseg.io.volume import Region, Volume, check_voxel_size


class ResampledReader:
    """Reads a region of the resampled grid from the source's bounding region (picklable)."""

    def __init__(self, source: Volume, scale: Sequence[float]) -> None:
        self.source, self.scale = source, tuple(scale)  # target voxel → source voxels

    def __call__(self, region: Region) -> np.ndarray:
        from scipy.ndimage import map_coordinates

        coords = [(np.arange(r.start, r.stop) + 0.5) * s - 0.5 for r, s in zip(region, self.scale)]
        lo = [max(0, int(np.floor(c.min()))) for c in coords]
        hi = [min(n, int(np.ceil(c.max())) + 2) for c, n in zip(coords, self.source.shape)]
        data = self.source[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32)
        grid = np.meshgrid(*[c - l for c, l in zip(coords, lo)], indexing="ij")
        out = map_coordinates(data, grid, order=1, mode="nearest")
        if self.source.dtype.kind in "ui":
            info = np.iinfo(self.source.dtype)
            return np.clip(np.rint(out), info.min, info.max).astype(self.source.dtype)
        return out.astype(self.source.dtype)


def resampled(volume: Volume, voxel_size: Sequence[float]) -> Volume:
    """``volume`` seen at ``voxel_size`` nm (z, y, x)."""
    target = check_voxel_size(voxel_size, volume.path)
    scale = [t / s for t, s in zip(target, volume.voxel_size)]
    shape = tuple(max(1, int(round(n / f))) for n, f in zip(volume.shape, scale))
    return dataclasses.replace(volume, shape=shape, voxel_size=target, reader=ResampledReader(volume, scale),
                               chunks=None, path=f"{volume.path} (resampled to {target} nm)")
