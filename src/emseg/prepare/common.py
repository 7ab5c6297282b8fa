"""Shared plumbing of the preparation steps: inputs as Volumes, dask arrays with
write-safe chunks, and blockwise reductions that keep memory bounded."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from emseg.errors import InvalidValuesError, ShapeMismatchError
from emseg.io import Volume, array_volume, open_volume
from emseg.io.ome_zarr import default_chunks, read_chunks_for

OUT_CHUNK = 64  # output chunk edge; dask blocks are multiples of it so writes never race
WORK_ITEMSIZE = 4  # budget dask blocks as if 4 bytes/voxel (float temporaries stay small)

Source = Volume | np.ndarray | str | os.PathLike


def as_volume(source: Source, voxel_size: Sequence[float] | None = None, name: str = "<array>") -> Volume:
    """A `Volume` from a path (any format emseg reads), a numpy array or a Volume."""
    if isinstance(source, Volume):
        return source.with_voxel_size(voxel_size) if voxel_size is not None else source
    if isinstance(source, (str, os.PathLike)):
        return open_volume(str(source), voxel_size)
    return array_volume(np.asarray(source), voxel_size or (1.0, 1.0, 1.0), name=name)


def work_chunks(shape: Sequence[int], chunks: int | Sequence[int] | None = None) -> tuple[int, int, int]:
    """Dask block shape: multiples of the output chunks, about 32 MiB of float32 per block."""
    out = default_chunks(shape, chunks or OUT_CHUNK)
    return read_chunks_for(shape, out, WORK_ITEMSIZE)


def to_dask(volume: Volume, chunks: int | Sequence[int] | None = None):
    """The volume as a dask array with `work_chunks` blocks."""
    return volume.to_dask(work_chunks(volume.shape, chunks))


def check_same_shape(a: Volume, b: Volume, what: str = "labels") -> None:
    """Raise `ShapeMismatchError` naming both sources when their shapes differ."""
    if tuple(a.shape) != tuple(b.shape):
        raise ShapeMismatchError(
            f"{a.path}: {what} have shape {tuple(a.shape)} but the image {b.path} has shape {tuple(b.shape)}"
        )


def check_integer(volume: Volume, what: str) -> None:
    """Raise `InvalidValuesError` unless the volume holds integers (or booleans)."""
    if np.dtype(volume.dtype).kind not in "uib":
        raise InvalidValuesError(
            f"{volume.path}: {what} must be integers, got dtype {volume.dtype}; "
            "convert them (e.g. `emseg convert --labels`) after rounding"
        )


def block_locations(array) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """(block index, region in voxels) for every block of a dask array."""
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(int) for c in array.chunks]
    for index in itertools.product(*(range(len(c)) for c in array.chunks)):
        region = tuple(slice(int(starts[d][i]), int(starts[d][i] + array.chunks[d][i])) for d, i in enumerate(index))
        yield index, region


def reduce_blocks(
    arrays: Sequence[Any],
    fn: Callable[..., Any],
    combine: Callable[[Any, tuple[slice, ...]], None],
    description: str = "blocks",
    progress: bool = False,
    batch: int | None = None,
) -> None:
    """Compute ``fn(*blocks, region)`` for every block of equally chunked dask arrays,
    a batch at a time on the threaded scheduler, and hand each result to ``combine``.

    Only one batch of blocks is in memory at once: memory is bounded by the block size.
    """
    import dask
    from tqdm.auto import tqdm

    batch = batch or 2 * (os.cpu_count() or 2)
    delayed = [a.to_delayed() for a in arrays]
    locations = list(block_locations(arrays[0]))
    bar = tqdm(total=len(locations), desc=description, unit="block", leave=False, disable=not progress)
    try:
        for start in range(0, len(locations), batch):
            part = locations[start:start + batch]
            tasks = [dask.delayed(fn)(*(d[index] for d in delayed), region) for index, region in part]
            for (_, region), result in zip(part, dask.compute(*tasks, scheduler="threads")):
                combine(result, region)
            bar.update(len(part))
    finally:
        bar.close()


def map_with_halo(array, fn, depth: int, dtype, **kwargs):
    """``map_overlap`` with ``depth`` voxels of real context and nothing beyond the
    volume border (``boundary="none"``); axes shorter than the halo become one block."""
    depths = {}
    for axis, size in enumerate(array.shape):
        if size <= depth:
            array = array.rechunk({axis: size})
            depths[axis] = 0
        else:
            depths[axis] = depth
    return array.map_overlap(fn, depth=depths, boundary="none", dtype=dtype, **kwargs)
