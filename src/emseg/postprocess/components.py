"""Connected components of a (larger than memory) binary Dask array, block by block.

Pass 1 labels every block with cc3d and keeps only small things: the number of labels,
the voxel count of each label, the block's six faces and which labels touch the volume
border. Labels that touch across a block face (including diagonal neighbours for 18/26
connectivity) are joined on the small equivalence graph with
``scipy.sparse.csgraph.connected_components``; the result is one lookup table from
"block offset + local label" to the final, consecutive id. Pass 2 relabels each block
again (cc3d is deterministic) and looks its labels up, so nothing volume-sized is ever
held in memory. The result equals whole-volume cc3d up to renumbering.
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


def _summarize(block: np.ndarray, connectivity: int, at_border: tuple) -> BlockSummary:
    labels, n = _label_block(block, connectivity)
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


def _equivalences(summaries: dict, offsets: np.ndarray, chunks, connectivity: int) -> np.ndarray:
    grid, starts = _grid(chunks)
    pairs = []
    for index in itertools.product(*(range(g) for g in grid)):
        for axis in range(3):
            if index[axis] == 0:
                continue
            other_axes = [a for a in range(3) if a != axis]
            lo_face = summaries[index].faces[(axis, 0)].astype(np.int64)
            lo_face = np.where(lo_face > 0, lo_face + offsets[index], 0)
            # the plane just below, with a 1-voxel margin, assembled from up to 9 blocks
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
                face = summaries[neighbour].faces[(axis, 1)].astype(np.int64)
                face = np.where(face > 0, face + offsets[neighbour], 0)
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
            pairs.append(_plane_pairs(plane, lo_face, connectivity))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


def _merge(summaries: dict, chunks, connectivity: int) -> Components:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    grid, _ = _grid(chunks)
    offsets = np.zeros(grid, np.int64)
    total = 0
    for index in itertools.product(*(range(g) for g in grid)):
        offsets[index] = total
        total += summaries[index].n
    pairs = _equivalences(summaries, offsets, chunks, connectivity)
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
    return _merge(dict(zip(keys, results)), mask.chunks, connectivity)


def _relabel_block(block: np.ndarray, lut: np.ndarray, offsets: np.ndarray, connectivity: int,
                   dtype, block_info=None) -> np.ndarray:
    index = tuple(block_info[0]["chunk-location"])
    labels, n = _label_block(block, connectivity)
    start = offsets[index]
    table = lut[start:start + n + 1].copy()
    table[0] = 0
    return table.astype(dtype)[labels]


def relabel(mask, components: Components, lut: np.ndarray | None = None, dtype=None):
    """Pass 2: a lazy dask array of final labels (optionally through another ``lut`` that
    maps final ids to new ones, e.g. after a size filter)."""
    import dask.array as da

    mask = da.asarray(mask)
    if tuple(mask.chunks) != components.chunks:
        raise ValueError("mask chunks differ from the chunks the components were found on")
    full = components.lut if lut is None else lut[components.lut]
    dtype = np.dtype(dtype) if dtype is not None else label_dtype(int(full.max(initial=0)))
    return mask.map_blocks(_relabel_block, full, components.offsets, components.connectivity, dtype,
                           dtype=dtype, meta=np.empty((0, 0, 0), dtype))


def connected_components(mask, connectivity: int = 26, min_size_vox: int = 0, progress: bool = False):
    """Blockwise connected components of a boolean dask array; objects smaller than
    ``min_size_vox`` voxels are dropped. Returns (lazy labels, number of objects)."""
    components = find_components(mask, connectivity, progress)
    keep = components.sizes >= max(1, min_size_vox)
    keep[0] = False
    new_ids = np.where(keep, np.cumsum(keep), 0)
    return relabel(mask, components, new_ids), int(keep.sum())
