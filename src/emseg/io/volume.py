"""The lazy `Volume`: one read interface (z, y, x; nanometres) over every on-disk format."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emseg.errors import InvalidValuesError, InvalidVoxelSizeError

VoxelSize = tuple[float, float, float]
Region = tuple[slice, slice, slice]
DEFAULT_VOXEL_SIZE: VoxelSize = (1.0, 1.0, 1.0)


class MissingVoxelSizeWarning(UserWarning):
    """The file carries no voxel size; emseg assumes 1 nm."""


def check_voxel_size(voxel_size: Sequence[float] | float, source: str = "") -> VoxelSize:
    """Return ``voxel_size`` as a (z, y, x) tuple of positive floats, or raise a clear error."""
    where = f"{source}: " if source else ""
    if np.isscalar(voxel_size):
        voxel_size = (float(voxel_size),) * 3  # type: ignore[arg-type]
    values = tuple(float(v) for v in voxel_size)  # type: ignore[union-attr]
    if len(values) != 3:
        raise InvalidVoxelSizeError(f"{where}voxel size needs 3 values (z y x) in nm, got {values}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise InvalidVoxelSizeError(
            f"{where}voxel size must be positive nanometres (z y x), got {values}"
        )
    return values  # type: ignore[return-value]


def warn_missing_voxel_size(path: str) -> VoxelSize:
    """Warn that ``path`` has no voxel size and return the 1 nm default."""
    warnings.warn(
        f"{path}: no voxel size in the file; assuming 1 x 1 x 1 nm. "
        "Set it with voxel_size=(z, y, x) in open_volume or --voxel-size Z Y X on the CLI.",
        MissingVoxelSizeWarning,
        stacklevel=3,
    )
    return DEFAULT_VOXEL_SIZE


def normalize_region(key: Any, shape: tuple[int, ...]) -> Region:
    """Turn an index expression into three step-1 slices clipped to ``shape``."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1 :]
    key = key + (slice(None),) * (3 - len(key))
    if len(key) != 3:
        raise IndexError(f"a Volume takes 3 indices (z, y, x), got {len(key)}")
    region = []
    for k, n in zip(key, shape):
        if isinstance(k, (int, np.integer)):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {k} out of range for axis of length {n}")
            region.append(slice(i, i + 1))
        elif isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step != 1:
                raise IndexError("Volume reads take step-1 slices; subsample the result instead")
            region.append(slice(start, max(start, stop)))
        else:
            raise IndexError(f"unsupported index {k!r}; use ints and slices")
    return tuple(region)  # type: ignore[return-value]


@dataclass
class Volume:
    """A lazy 3D grayscale or label volume, axis order (z, y, x), voxel size in nm.

    ``volume[z0:z1, y0:y1, x0:x1]`` reads only that region from disk and returns a
    numpy array (integer indices drop their axis, as numpy does).
    """

    path: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    voxel_size: VoxelSize
    reader: Callable[[Region], np.ndarray] = field(repr=False)
    chunks: tuple[int, int, int] | None = None
    format: str = ""
    attrs: dict = field(default_factory=dict, repr=False)
    check_nan: bool = field(default=False, repr=False)
    #: True when the file had no voxel size and emseg assumed the 1 nm default
    voxel_size_assumed: bool = field(default=False, repr=False)

    @property
    def ndim(self) -> int:
        return 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, region: Region) -> np.ndarray:
        """Read a region given as three step-1 slices (already clipped to the shape)."""
        data = np.asarray(self.reader(region))
        expected = tuple(s.stop - s.start for s in region)
        if data.shape != expected:
            raise InvalidValuesError(
                f"{self.path}: reader returned shape {data.shape} for region {expected}"
            )
        if self.check_nan and data.dtype.kind == "f" and not np.isfinite(data).all():
            what = "NaN" if np.isnan(data).any() else "Inf"
            raise InvalidValuesError(
                f"{self.path}: float volume contains {what} values (region {format_region(region)}); "
                "replace them (e.g. with the background value) before using it"
            )
        return data

    def __getitem__(self, key: Any) -> np.ndarray:
        region = normalize_region(key, self.shape)
        data = self.read(region)
        squeeze = tuple(
            i for i, k in enumerate(key if isinstance(key, tuple) else (key,))
            if isinstance(k, (int, np.integer))
        )
        return data.squeeze(axis=squeeze) if squeeze else data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[:, :, :]
        return data.astype(dtype) if dtype is not None else data

    def to_dask(self, chunks: Sequence[int] | None = None):
        """A dask array over this volume (chunks default to the on-disk ones)."""
        import dask.array as da

        chunks = tuple(chunks) if chunks is not None else (self.chunks or (64, 256, 256))
        return da.from_array(self, chunks=chunks, asarray=True, fancy=False, lock=False)

    def with_voxel_size(self, voxel_size: Sequence[float]) -> "Volume":
        """The same data with another voxel size (z, y, x nm), now a known one."""
        return Volume(
            self.path, self.shape, self.dtype, check_voxel_size(voxel_size, self.path),
            self.reader, self.chunks, self.format, self.attrs, self.check_nan,
        )


def format_region(region: Region) -> str:
    """``z0:z1, y0:y1, x0:x1`` for messages."""
    return ", ".join(f"{s.start}:{s.stop}" for s in region)


class ArrayReader:
    """Reads regions of an in-memory array (picklable)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def __call__(self, region: Region) -> np.ndarray:
        return self.data[region]


def array_volume(
    data: np.ndarray, voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE, name: str = "<array>"
) -> Volume:
    """Wrap an in-memory 3D numpy array (or 2D, as one z-slice) as a `Volume`."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise InvalidValuesError(f"{name}: expected a 2D or 3D array, got shape {data.shape}")
    return Volume(
        path=name,
        shape=tuple(int(s) for s in data.shape),  # type: ignore[arg-type]
        dtype=data.dtype,
        voxel_size=check_voxel_size(voxel_size, name),
        reader=ArrayReader(data),
        chunks=None,
        format="array",
    )
