"""Block plans: chunk-aligned write blocks, each with the read region its model needs.

gunpowder habit: context is geometry. A plan is built from the volume shape, an optional
ROI, the output chunks, and the model's context (``context_lo`` + ``context_hi`` voxels the
network needs around every output voxel; for valid-conv nets from ``input_shape_for``, for
same-padded nets a halo). Every write block covers whole output chunks, so concurrent
writers never share a chunk; reads beyond the volume are mirror-padded (``reflect_read``)
identically for every block, so blockwise output equals whole-volume output.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emseg.errors import ConfigError

Shape = tuple[int, int, int]
Slices = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Block:
    """One unit of work: write ``write`` (clipped to the volume) from input read at ``read_start``."""

    index: Shape  # block coordinates in the plan's grid (stable id for the ledger)
    write: Slices  # output region, whole chunks (the last chunk per axis may be partial)
    read_start: Shape  # corner of the read region in volume voxels (may be negative)

    @property
    def key(self) -> str:
        return "_".join(str(i) for i in self.index)

    @property
    def write_shape(self) -> Shape:
        return tuple(s.stop - s.start for s in self.write)  # type: ignore[return-value]


@dataclass(frozen=True)
class BlockPlan:
    """Write blocks tiling a chunk-aligned cover of the ROI, with one fixed read shape."""

    volume_shape: Shape
    block_shape: Shape  # write block (multiple of the chunks)
    read_shape: Shape  # network input per block (constant: batching is trivial)
    context_lo: Shape  # voxels read before the write start
    blocks: tuple[Block, ...]

    def __len__(self) -> int:
        return len(self.blocks)

    @property
    def n_voxels(self) -> int:
        return int(sum(np.prod(b.write_shape) for b in self.blocks))


def plan_blocks(volume_shape: Sequence[int], block_shape: Sequence[int], read_shape: Sequence[int],
                context_lo: Sequence[int], chunks: Sequence[int], roi: Slices | None = None,
                grid: Sequence[int] = (1, 1, 1)) -> BlockPlan:
    """Tile the chunk-aligned cover of ``roi`` into write blocks of ``block_shape``.

    ``block_shape`` must be a multiple of ``chunks`` (so writes cover whole chunks) and of
    ``grid`` (a valid-conv net's total downsampling, so every block sees the same pooling
    phase as a whole-volume pass, which makes the output bit-identical).
    """
    shape = tuple(int(s) for s in volume_shape)
    for b, c, g, axis in zip(block_shape, chunks, grid, "zyx"):
        if b % c or b % g:
            raise ConfigError(f"block shape {tuple(block_shape)} must be a multiple of the output chunks "
                              f"{tuple(chunks)} and of the network's downsampling {tuple(grid)} (axis {axis})")
    roi = roi or tuple(slice(0, n) for n in shape)
    ranges = []
    for r, b in zip(roi, block_shape):
        start = (r.start // b) * b
        ranges.append(range(start, r.stop, b))
    blocks = []
    for starts in itertools.product(*ranges):
        write = tuple(slice(s, min(s + b, n)) for s, b, n in zip(starts, block_shape, shape))
        index = tuple(s // b for s, b in zip(starts, block_shape))
        blocks.append(Block(index, write, tuple(s - c for s, c in zip(starts, context_lo))))  # type: ignore[arg-type]
    return BlockPlan(shape, tuple(block_shape), tuple(read_shape), tuple(context_lo), tuple(blocks))  # type: ignore[arg-type]


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Mirror (numpy ``reflect``, edge not repeated) indices into ``[0, size)``, any distance out."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


def reflect_read(volume, start: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Read ``shape`` voxels at ``start`` from ``volume`` (anything indexable by slices with
    ``.shape``), mirror-padding whatever lies outside; one contiguous read."""
    idx = [reflect_index(np.arange(s, s + n), int(size)) for s, n, size in zip(start, shape, volume.shape)]
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    data = np.asarray(volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
    inside = all(s >= 0 and s + n <= size for s, n, size in zip(start, shape, volume.shape))
    if inside:
        return data
    return data[np.ix_(idx[0] - lo[0], idx[1] - lo[1], idx[2] - lo[2])]


def block_shape_for(chunks: Sequence[int], at_least: Sequence[int], grid: Sequence[int] = (1, 1, 1)) -> Shape:
    """Smallest multiple of lcm(chunk, grid) per axis that is ≥ ``at_least``."""
    out = []
    for c, a, g in zip(chunks, at_least, grid):
        step = math.lcm(int(c), int(g))
        out.append(max(step, math.ceil(int(a) / step) * step))
    return tuple(out)  # type: ignore[return-value]
