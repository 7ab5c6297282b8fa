"""Connected components of a (larger than memory) binary Dask array, block by block.

Pass 1 labels every block with cc3d and keeps only small things: the number of labels,
the voxel count of each label, the block's six faces and which labels touch the volume
border. Labels that touch across a block face (including diagonal neighbours for 18/26
connectivity) are joined on the small equivalence graph with
``scipy.sparse.csgraph.connected_components``; the result is one lookup table from
"block offset + local label" to the final, consecutive id. Pass 2 relabels each block
again (cc3d is deterministic) and looks its labels up, so nothing volume-sized is ever
held in memory. The result equals whole-volume cc3d up to renumbering.

The merge (`merge_blocks`, `lookup`, `size_filter`) serves any blockwise labelling: the
seeded watershed (`emseg.postprocess.watershed`) labels a halo around each block and joins
labels by `same_voxel_pairs` instead of `adjacent_pairs`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from emseg.errors import InvalidValuesError

CONNECTIVITIES = (6, 18, 26)


def check_connectivity(connectivity: int) -> int:
    if connectivity not in CONNECTIVITIES:
        raise InvalidValuesError(f"connectivity must be one of {CONNECTIVITIES}, got {connectivity}")
    return int(connectivity)


def label_dtype(n_labels: int) -> np.dtype:
    """uint32 while the ids fit, else uint64 (never wrap around)."""
    return np.dtype(np.uint32) if n_labels < 2**32 else np.dtype(np.uint64)


def _label_block(block: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    import cc3d

    labels, n = cc3d.connected_components(np.ascontiguousarray(block, dtype=bool),
                                          connectivity=connectivity, return_N=True)
    return labels, int(n)


@dataclass
class BlockSummary:
    """What pass 1 keeps of one block."""

    n: int
    sizes: np.ndarray  # voxels per local label 0..n
    faces: dict = field(default_factory=dict)  # (axis, 0|1) -> 2D local labels
    border: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # local labels on the volume border
    # axis -> the plane one voxel below the block's low face, with a 1-voxel in-plane margin, as
    # labelled by this block itself (blocks that label a halo, e.g. the watershed; else empty)
    below: dict = field(default_factory=dict)


def _summarize(block: np.ndarray, connectivity: int, at_border: tuple) -> BlockSummary:
    labels, n = _label_block(block, connectivity)
    return summarize_labels(labels, n, at_border)


def summarize_labels(labels: np.ndarray, n: int, at_border: tuple) -> BlockSummary:
    """Pass 1's summary of one block's local labels 1..n: sizes, faces, volume-border labels."""
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.int64)
    faces, border = {}, []
    for axis in range(3):
        for side in (0, 1):
            face = np.take(labels, 0 if side == 0 else -1, axis=axis)
            faces[(axis, side)] = face.astype(np.uint32, copy=True)
            if at_border[axis][side]:
                border.append(np.unique(face))
    border_ids = np.unique(np.concatenate(border)) if border else np.zeros(0, np.int64)
    return BlockSummary(n, sizes, faces, border_ids[border_ids > 0].astype(np.int64))


@dataclass
class Components:
    """Result of pass 1 + merge: everything pass 2 needs, plus per-object sizes."""

    chunks: tuple
    offsets: np.ndarray  # per block (grid shape) first global id - 1
    lut: np.ndarray  # global pre-merge id -> final id (0 stays 0)
    sizes: np.ndarray  # final id -> voxel count (index 0 unused)
    touches_border: np.ndarray  # final id -> bool
    connectivity: int

    @property
    def n_labels(self) -> int:
        return int(len(self.sizes) - 1)


def _grid(chunks) -> tuple[tuple[int, ...], list[np.ndarray]]:
    grid = tuple(len(c) for c in chunks)
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
    return grid, starts


def _plane_pairs(face_hi: np.ndarray, face_lo: np.ndarray, connectivity: int) -> np.ndarray:
    """(u, v) global-id pairs between a block's low face ``face_lo`` and the plane below it
    ``face_hi`` (which has a one-voxel margin on each in-plane side)."""
    h, w = face_lo.shape
    pairs = []
    for d1, d2 in itertools.product((-1, 0, 1), repeat=2):
        if connectivity == 6 and (d1 or d2):
            continue
        if connectivity == 18 and d1 and d2:
            continue
        other = face_hi[1 + d1:1 + d1 + h, 1 + d2:1 + d2 + w]
        both = (face_lo > 0) & (other > 0)
        if both.any():
            pairs.append(np.stack([face_lo[both], other[both]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


def _plane_below(summaries: dict, offsets: np.ndarray, index: tuple, axis: int, chunks) -> np.ndarray:
    """The plane just below block ``index`` along ``axis``, with a 1-voxel in-plane margin,
    assembled (in global ids) from the high faces of up to 9 neighbouring blocks; 0 outside."""
    grid, starts = _grid(chunks)
    other_axes = [a for a in range(3) if a != axis]
    extent = [(starts[a][index[a]] - 1, starts[a][index[a] + 1] + 1) for a in other_axes]
    plane = np.zeros([e1 - e0 for e0, e1 in extent], np.int64)
    for n1, n2 in itertools.product((-1, 0, 1), repeat=2):
        neighbour = list(index)
        neighbour[axis] -= 1
        neighbour[other_axes[0]] += n1
        neighbour[other_axes[1]] += n2
        if not all(0 <= neighbour[a] < grid[a] for a in range(3)):
            continue
        neighbour = tuple(neighbour)
        face = global_ids(summaries[neighbour].faces[(axis, 1)], offsets[neighbour])
        f0 = [starts[a][neighbour[a]] for a in other_axes]
        sl_plane, sl_face = [], []
        for k in range(len(other_axes)):
            lo = max(f0[k], extent[k][0])
            hi = min(f0[k] + face.shape[k], extent[k][1])
            if hi <= lo:
                break
            sl_plane.append(slice(lo - extent[k][0], hi - extent[k][0]))
            sl_face.append(slice(lo - f0[k], hi - f0[k]))
        if len(sl_plane) == 2:
            plane[tuple(sl_plane)] = face[tuple(sl_face)]
    return plane


def global_ids(local: np.ndarray, offset: int) -> np.ndarray:
    """Block-local labels → pre-merge global ids (0 stays 0)."""
    local = local.astype(np.int64)
    return np.where(local > 0, local + offset, 0)


def _equivalences(summaries: dict, offsets: np.ndarray, chunks, pairs_at) -> np.ndarray:
    """Global-id pairs to join, from ``pairs_at(summary, offset, axis, plane_below)`` over every
    block and every axis along which it has a neighbour below."""
    grid, _ = _grid(chunks)
    pairs = []
    for index in itertools.product(*(range(g) for g in grid)):
        for axis in range(3):
            if index[axis] > 0:
                plane = _plane_below(summaries, offsets, index, axis, chunks)
                pairs.append(pairs_at(summaries[index], offsets[index], axis, plane))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


def adjacent_pairs(connectivity: int):
    """Pairs rule of connected components: labels that touch across a block face."""
    def pairs_at(summary: BlockSummary, offset: int, axis: int, plane: np.ndarray) -> np.ndarray:
        return _plane_pairs(plane, global_ids(summary.faces[(axis, 0)], offset), connectivity)
    return pairs_at


def same_voxel_pairs(summary: BlockSummary, offset: int, axis: int, plane: np.ndarray) -> np.ndarray:
    """Pairs rule of blocks that label a halo: a voxel of the plane below that this block and
    its neighbour both label joins the two labels."""
    own = global_ids(summary.below[axis], offset)
    both = (own > 0) & (plane > 0)
    return np.stack([own[both], plane[both]], axis=1)


def merge_blocks(summaries: dict, chunks, connectivity: int, pairs_at=None) -> Components:
    """Join the blocks' labels into final, consecutive ids. ``pairs_at`` says which labels of
    neighbouring blocks are one object (default: `adjacent_pairs`, connected components)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    grid, _ = _grid(chunks)
    offsets = np.zeros(grid, np.int64)
    total = 0
    for index in itertools.product(*(range(g) for g in grid)):
        offsets[index] = total
        total += summaries[index].n
    pairs = _equivalences(summaries, offsets, chunks, pairs_at or adjacent_pairs(connectivity))
    lut = np.arange(total + 1, dtype=np.int64)
    if len(pairs):
        pairs = np.unique(pairs, axis=0)
        nodes, inverse = np.unique(pairs.ravel(), return_inverse=True)
        inverse = inverse.reshape(-1, 2)
        graph = coo_matrix((np.ones(len(pairs), np.int8), (inverse[:, 0], inverse[:, 1])),
                           shape=(len(nodes), len(nodes)))
        _, component = connected_components(graph, directed=False)
        root = np.full(component.max() + 1, np.iinfo(np.int64).max)
        np.minimum.at(root, component, nodes)
        lut[nodes] = root[component]
    is_root = lut == np.arange(total + 1)
    is_root[0] = False
    final = np.cumsum(is_root)  # consecutive ids in order of first appearance
    lut = final[lut]
    lut[0] = 0
    n_final = int(final[-1]) if total else 0
    sizes = np.zeros(n_final + 1, np.int64)
    touches = np.zeros(n_final + 1, bool)
    for index, summary in summaries.items():
        ids = lut[offsets[index] + np.arange(1, summary.n + 1)]
        np.add.at(sizes, ids, summary.sizes[1:])
        touches[lut[offsets[index] + summary.border]] = True
    touches[0] = False
    return Components(tuple(chunks), offsets, lut, sizes, touches, connectivity)


def find_components(mask, connectivity: int = 26, progress: bool = False) -> Components:
    """Pass 1 and the merge over a boolean dask array ``mask`` (z, y, x)."""
    import dask
    import dask.array as da

    from emseg.io.progress import dask_progress

    connectivity = check_connectivity(connectivity)
    mask = da.asarray(mask)
    grid, _ = _grid(mask.chunks)
    blocks = mask.to_delayed()
    tasks, keys = [], []
    for index in itertools.product(*(range(g) for g in grid)):
        at_border = tuple((index[a] == 0, index[a] == grid[a] - 1) for a in range(3))
        tasks.append(dask.delayed(_summarize)(blocks[index], connectivity, at_border))
        keys.append(index)
    with dask_progress("components", progress):
        results = dask.compute(*tasks, scheduler="threads")
    return merge_blocks(dict(zip(keys, results)), mask.chunks, connectivity)


def lookup(labels: np.ndarray, n: int, offset: int, lut: np.ndarray, dtype) -> np.ndarray:
    """Pass 2 for one block: its local labels 1..n through the final lookup table."""
    table = lut[offset:offset + n + 1].copy()
    table[0] = 0
    return table.astype(dtype)[labels]


def _relabel_block(block: np.ndarray, lut: np.ndarray, offsets: np.ndarray, connectivity: int,
                   dtype, block_info=None) -> np.ndarray:
    index = tuple(block_info[0]["chunk-location"])
    labels, n = _label_block(block, connectivity)
    return lookup(labels, n, offsets[index], lut, dtype)


def final_lut(components: Components, lut: np.ndarray | None = None, dtype=None) -> tuple[np.ndarray, np.dtype]:
    """Pre-merge id → output id (through ``lut``, final id → new id, if given) and its dtype."""
    full = components.lut if lut is None else lut[components.lut]
    return full, np.dtype(dtype) if dtype is not None else label_dtype(int(full.max(initial=0)))


def size_filter(components: Components, min_size_vox: int) -> tuple[np.ndarray, int]:
    """Final id → consecutive new id, 0 for objects under ``min_size_vox`` voxels; and their number."""
    keep = components.sizes >= max(1, min_size_vox)
    keep[0] = False
    return np.where(keep, np.cumsum(keep), 0), int(keep.sum())


def relabel(mask, components: Components, lut: np.ndarray | None = None, dtype=None):
    """Pass 2: a lazy dask array of final labels (optionally through another ``lut`` that
    maps final ids to new ones, e.g. after a size filter)."""
    import dask.array as da

    mask = da.asarray(mask)
    if tuple(mask.chunks) != components.chunks:
        raise ValueError("mask chunks differ from the chunks the components were found on")
    full, dtype = final_lut(components, lut, dtype)
    return mask.map_blocks(_relabel_block, full, components.offsets, components.connectivity, dtype,
                           dtype=dtype, meta=np.empty((0, 0, 0), dtype))


def connected_components(mask, connectivity: int = 26, min_size_vox: int = 0, progress: bool = False):
    """Blockwise connected components of a boolean dask array; objects smaller than
    ``min_size_vox`` voxels are dropped. Returns (lazy labels, number of objects)."""
    components = find_components(mask, connectivity, progress)
    new_ids, n = size_filter(components, min_size_vox)
    return relabel(mask, components, new_ids), n
