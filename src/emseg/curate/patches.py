"""Patch extraction as in CEM500K: planes by anisotropy, a 224-px grid with border strips.

* planes: anisotropy = |x_size − z_size| / x_size; above 0.2 only xy, otherwise xy, xz and yz;
* grid per plane: ``n = max(1, floor(L/224 + 0.5))`` cells along an axis of length L, at
  0, 224, …; the last cell is cut at the image edge, so a border strip of ≥ 112 px becomes a
  smaller patch and a narrower one is dropped;
* every patch is stored zero-padded in the top-left of a 224 × 224 tile with its true size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from emseg.errors import InvalidValuesError

PATCH = 224
MIN_EDGE = PATCH // 2
ANISOTROPY_LIMIT = 0.2
PLANES = ("xy", "xz", "yz")


def anisotropy(voxel_size: tuple[float, float, float]) -> float:
    """|x − z| / x of a (z, y, x) voxel size."""
    z, _, x = voxel_size
    return abs(x - z) / x


def planes_for(shape: tuple[int, int, int], voxel_size: tuple[float, float, float]) -> list[int]:
    """Plane codes (0 = xy, 1 = xz, 2 = yz) to cut: only xy for 2D images or anisotropic volumes."""
    if shape[0] == 1 or anisotropy(voxel_size) > ANISOTROPY_LIMIT:
        return [0]
    return [0, 1, 2]


def grid(length: int, patch: int = PATCH) -> list[tuple[int, int]]:
    """(start, size) of the grid cells along an axis of ``length`` pixels."""
    cells = max(1, int(np.floor(length / patch + 0.5)))
    out = []
    for i in range(cells):
        start = i * patch
        size = min(patch, length - start)
        if size >= MIN_EDGE:
            out.append((start, size))
    return out


def plane_shape(shape: tuple[int, int, int], plane: int) -> tuple[int, int, int]:
    """(number of slices, height, width) of a volume cut along ``plane``."""
    z, y, x = shape
    return {0: (z, y, x), 1: (y, z, x), 2: (x, z, y)}[plane]


@dataclass
class PatchBatch:
    """Patches (N, 224, 224) uint8, zero-padded, with their position in the volume."""

    patches: np.ndarray
    plane: np.ndarray
    slice: np.ndarray
    y: np.ndarray
    x: np.ndarray
    height: np.ndarray
    width: np.ndarray

    def __len__(self) -> int:
        return len(self.patches)


def count_patches(shape: tuple[int, int, int], planes: list[int]) -> int:
    """How many patches `iter_patches` yields for a volume of this shape."""
    total = 0
    for p in planes:
        n, h, w = plane_shape(shape, p)
        total += n * len(grid(h)) * len(grid(w))
    return total


def _read_slab(volume, plane: int, start: int, stop: int) -> np.ndarray:
    """Slices ``start:stop`` of ``plane`` as (n, height, width) uint8-convertible data."""
    if plane == 0:
        return volume[start:stop]
    if plane == 1:
        return np.moveaxis(volume[:, start:stop, :], 1, 0)
    return np.moveaxis(volume[:, :, start:stop], 2, 0)


def iter_patches(volume, to_uint8, slab_voxels: int = 64 * 2**20) -> Iterator[PatchBatch]:
    """Yield the patches of a `Volume` slab by slab (bounded memory), plane after plane.

    ``to_uint8`` converts a slab to uint8 (the dataset-wide conversion).
    """
    shape = tuple(int(s) for s in volume.shape)
    for plane in planes_for(shape, volume.voxel_size):
        n, h, w = plane_shape(shape, plane)
        rows, cols = grid(h), grid(w)
        if not rows or not cols:
            continue
        per_slab = max(1, slab_voxels // (h * w))
        for start in range(0, n, per_slab):
            stop = min(n, start + per_slab)
            slab = to_uint8(_read_slab(volume, plane, start, stop))
            yield _cut(slab, plane, start, rows, cols)


def _cut(slab: np.ndarray, plane: int, start: int, rows, cols) -> PatchBatch:
    count = len(slab) * len(rows) * len(cols)
    out = np.zeros((count, PATCH, PATCH), dtype=np.uint8)
    meta = np.zeros((count, 6), dtype=np.int64)
    i = 0
    for y, hy in rows:
        for x, wx in cols:
            k = len(slab)
            out[i:i + k, :hy, :wx] = slab[:, y:y + hy, x:x + wx]
            meta[i:i + k] = np.stack(
                [np.full(k, plane), start + np.arange(k), np.full(k, y), np.full(k, x), np.full(k, hy), np.full(k, wx)], 1
            )
            i += k
    return PatchBatch(out, *(meta[:, j] for j in range(6)))


def check_extent(shape: tuple[int, int, int], source: str) -> None:
    """Raise a clear error when a volume or image is too small to give any patch."""
    if shape[1] < MIN_EDGE or shape[2] < MIN_EDGE:
        raise InvalidValuesError(
            f"{source}: image is {shape[1]} x {shape[2]} px; curation needs at least {MIN_EDGE} px in y and x"
        )
