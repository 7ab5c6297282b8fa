"""Reading kept patches from a patch store (``emseg curate`` output) in shuffled batches.

Store layout (zarr v2 group): attrs ``{"emseg": {"kind": "patch_store", "patch_size": P,
"complete": true, ...}}``; ``patches`` (N, P, P) uint8 in chunks of 64 patches, border patches
top-left and zero-padded; ``table/<column>`` 1-D arrays incl. ``height``, ``width``, ``kept``.

Batches are drawn chunk by chunk (a shuffle buffer of whole zarr chunks), so memory stays
bounded for any store size and every chunk is decompressed once per epoch. A patch smaller
than P is mirrored out to P×P so random crops/rotations never see the zero padding.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emseg.errors import CorruptFileError, InvalidValuesError


@dataclass
class PatchTable:
    """The kept rows of a store: indices into ``patches`` and true sizes."""

    path: Path
    patches: object  # zarr array (N, P, P)
    index: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    patch_size: int
    chunk: int

    def __len__(self) -> int:
        return len(self.index)


def open_patch_store(path: str | os.PathLike) -> PatchTable:
    """Open a complete patch store (`emseg.curate.store.PatchStore`) and select kept rows."""
    from emseg.curate.store import PatchStore

    store = PatchStore.open(path)
    if not store.meta.get("complete", False):
        raise CorruptFileError(f"{path}: patch store is incomplete (curation did not finish)")
    index = store.kept_indices()
    if index.size == 0:
        raise InvalidValuesError(f"{path}: no kept patches to pretrain on")
    patches = store.patches
    size = int(store.meta.get("patch_size", patches.shape[1]))
    heights = store.column("height")[index].astype(int)
    widths = store.column("width")[index].astype(int)
    return PatchTable(Path(path), patches, index, heights, widths, size, int(patches.chunks[0]))


def mirror_fill(patch: np.ndarray, height: int, width: int) -> np.ndarray:
    """The top-left ``height × width`` content mirrored out to the full patch size."""
    size_y, size_x = patch.shape
    content = patch[:height, :width]
    if (height, width) == (size_y, size_x):
        return patch
    return np.pad(content, ((0, size_y - height), (0, size_x - width)), mode="symmetric")


def patch_stats(table: PatchTable, max_chunks: int = 8, seed: int = 0) -> tuple[float, float]:
    """Mean and std of [0, 1] intensities over the kept patches of a few random chunks (true regions only)."""
    rng = np.random.default_rng(seed)
    chunk_of = table.index // table.chunk
    unique = np.unique(chunk_of)
    total = total_sq = count = 0.0
    for c in rng.choice(unique, size=min(max_chunks, unique.size), replace=False):
        block = np.asarray(table.patches[c * table.chunk:(c + 1) * table.chunk])
        for row in np.flatnonzero(chunk_of == c):
            values = block[table.index[row] % table.chunk, :table.heights[row], :table.widths[row]] / 255.0
            total += values.sum()
            total_sq += (values ** 2).sum()
            count += values.size
    mean = total / count
    return float(mean), float(max(np.sqrt(max(total_sq / count - mean ** 2, 0.0)), 1e-3))


def iterate_batches(table: PatchTable, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                    buffer_chunks: int = 16) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of (uint8 patches (B, P, P), sizes (B, 2)); incomplete last batch dropped.

    Chunks are shuffled and split between ``world`` ranks; patches are shuffled inside a
    buffer of ``buffer_chunks`` chunks.
    """
    rng = np.random.default_rng(seed)
    chunk_of = table.index // table.chunk
    chunks = rng.permutation(np.unique(chunk_of))[rank::world]
    pending_img: list[np.ndarray] = []
    pending_size: list[np.ndarray] = []
    for start in range(0, len(chunks), buffer_chunks):
        loaded = {int(c): np.asarray(table.patches[c * table.chunk:(c + 1) * table.chunk])
                  for c in chunks[start:start + buffer_chunks]}
        rows = np.flatnonzero(np.isin(chunk_of, chunks[start:start + buffer_chunks]))
        for row in rng.permutation(rows):
            patch = loaded[int(chunk_of[row])][table.index[row] % table.chunk]
            h, w = int(table.heights[row]), int(table.widths[row])
            pending_img.append(mirror_fill(patch, h, w))
            pending_size.append(np.array([h, w]))
            if len(pending_img) == batch_size:
                yield np.stack(pending_img), np.stack(pending_size)
                pending_img, pending_size = [], []


def endless_batches(table: PatchTable, batch_size: int, seed: int, rank: int = 0,
                    world: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`iterate_batches` repeated with fresh shuffles: under DDP every rank must run the same
    number of steps although the chunks split unevenly, so the caller stops after a fixed count."""
    for repeat in range(1 << 30):
        count = 0
        for batch in iterate_batches(table, batch_size, seed + 7919 * repeat, rank, world):
            count += 1
            yield batch
        if count == 0:
            return


def batches_per_epoch(table: PatchTable, batch_size: int, world: int = 1) -> int:
    """Approximate number of batches per rank per epoch (for progress bars and schedules)."""
    return max(1, len(table) // (batch_size * world))
