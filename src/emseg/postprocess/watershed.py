"""Seeded watershed of a (larger than memory) binary mask, block by block with a halo.

Each block is read with ``halo`` voxels of context on every side (less at the volume border)
and segmented on its own by a seed source (`DistanceSeeds` for a foreground-only map: the
distance transform of the mask, its h-maxima as seeds) and
``skimage.segmentation.watershed`` restricted to the mask. The block keeps the labels of its
core, numbered 1..n, plus how it labels the plane just below each of its low faces. Where a
block and its neighbour both label a voxel of that plane, their two labels are one object
(`emseg.postprocess.components.same_voxel_pairs`); the connected-components machinery joins
them into consecutive ids, and pass 2 looks up the labels pass 1 stored in a work folder (or,
without one, segments every block again). A block segments only the bounding box of the
objects that reach its core (`relevant_box`); a block without foreground costs nothing.

Rule: an object (a connected component of the mask at ``connectivity``) whose bounding box
is shorter than the halo along every axis (at most ``halo - 1`` voxels) is seen whole, with
its nearest background, by every block that labels any voxel of it, so each of them segments
it as a whole-volume run does: the result equals the whole-volume run up to renumbering.
A wider object may be segmented differently by two blocks; its labels are then joined where
they share voxels, so it is never merged with another object and at worst comes out whole,
as with connected components.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from emseg.errors import InvalidValuesError
from emseg.postprocess.components import (
    BlockSummary,
    Components,
    check_connectivity,
    final_lut,
    lookup,
    merge_blocks,
    same_voxel_pairs,
    size_filter,
    summarize_labels,
)

#: (mask block, *channel blocks) → (elevation to flood, markers: int labels, 0 = none)
SeedSource = Callable[..., tuple[np.ndarray, np.ndarray]]


def footprint(connectivity: int) -> np.ndarray:
    """3×3×3 structuring element of 6-, 18- or 26-connectivity."""
    return ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[check_connectivity(connectivity)])


def dynamic_maxima(distance: np.ndarray, h: float, structure: np.ndarray,
                   objects: np.ndarray) -> tuple[np.ndarray, int]:
    """Seeds (labels, count) at the maxima of ``distance`` (≥ 0, 0 on the background) whose
    dynamic is at least ``h``: from such a maximum one must descend by ≥ h to reach a higher
    one, and the background counts as 0, so an object's highest maximum has the dynamic of its
    height. By reconstruction of max(d - h, 0) under d (HMAX): the seed voxels are the tops
    (d - HMAX ≥ h), and tops in one regional maximum of HMAX, e.g. two equal peaks joined above
    d - h, are one seed. Per object (``objects``: labels) in its bounding box, which gives the
    same seeds in less time and memory than the whole array."""
    from skimage.morphology import local_maxima, reconstruction

    seeds = np.zeros(distance.shape, np.int32)
    n = 0
    for label, box in enumerate(ndimage.find_objects(objects), start=1):
        if box is None:
            continue
        inside = objects[box] == label
        crop = np.where(inside, distance[box], 0.0)
        rebuilt = reconstruction(np.maximum(crop - h, 0.0), crop, method="dilation", footprint=structure)
        tops = inside & ((crop - rebuilt) >= h * (1 - 1e-9))
        if not tops.any():
            continue
        plateaus = local_maxima(rebuilt, footprint=structure, allow_borders=True) & inside & (rebuilt > 0)
        plateau_ids, _ = ndimage.label(plateaus | tops, structure)
        ids, local = np.unique(plateau_ids[tops], return_inverse=True)
        seeds[box][tops] = n + 1 + local.ravel()
        n += len(ids)
    return seeds, n


def merge_close_seeds(seeds: np.ndarray, n: int, objects: np.ndarray, voxel_size: Sequence[float],
                      min_distance_nm: float) -> np.ndarray:
    """Seed id → merged seed id: seeds of one object closer than ``min_distance_nm`` (between
    their nearest voxels) become one (single linkage)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    table = np.arange(n + 1)
    points = np.nonzero(seeds)
    if min_distance_nm <= 0 or n < 2:
        return table
    ids, owner = seeds[points], objects[points]
    coords = np.stack(points, axis=1) * np.asarray(voxel_size, np.float64)
    close = cKDTree(coords).query_pairs(min_distance_nm, output_type="ndarray")
    close = close[(ids[close[:, 0]] != ids[close[:, 1]]) & (owner[close[:, 0]] == owner[close[:, 1]])]
    if not len(close):
        return table
    graph = coo_matrix((np.ones(len(close), np.int8), (ids[close[:, 0]], ids[close[:, 1]])), shape=(n + 1, n + 1))
    _, group = connected_components(graph, directed=False)
    first = np.full(group.max() + 1, n + 1)
    np.minimum.at(first, group, np.arange(n + 1))
    return first[group]


@dataclass(frozen=True)
class DistanceSeeds:
    """Seed source for a foreground-only map. Elevation: minus the Euclidean distance (nm) to
    the background. Seeds: the maxima of that distance with a dynamic ≥ ``h_nm`` (a neck between
    two objects must be ``h_nm`` thinner, in radius, than the thinner of the two; see
    `dynamic_maxima`); seeds of one object closer than ``min_distance_nm`` merged. An object
    without such a maximum (inscribed radius < ``h_nm``) is one seed, so it stays whole."""

    voxel_size: tuple[float, float, float]
    h_nm: float = 20.0
    min_distance_nm: float = 0.0
    connectivity: int = 26

    def __post_init__(self) -> None:
        if not self.h_nm > 0:
            raise InvalidValuesError(f"watershed h must be > 0 nm, got {self.h_nm}")
        if not self.min_distance_nm >= 0:
            raise InvalidValuesError(f"watershed minimum seed distance must be >= 0 nm, got {self.min_distance_nm}")

    def __call__(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask = mask.astype(bool, copy=False)
        structure = footprint(self.connectivity)
        distance = ndimage.distance_transform_edt(mask, sampling=self.voxel_size)
        objects, n_objects = ndimage.label(mask, structure)
        seeds, n = dynamic_maxima(distance, self.h_nm, structure, objects)
        seeds = merge_close_seeds(seeds, n, objects, self.voxel_size, self.min_distance_nm)[seeds]
        seeded = np.zeros(n_objects + 1, bool)
        seeded[objects[seeds > 0]] = True
        seeded[0] = True
        whole = ~seeded[objects]  # objects without a seed are their own marker
        markers = seeds.astype(np.int64 if n + n_objects + 1 >= 2**31 else np.int32)
        markers[whole] = objects[whole] + n + 1
        return -distance, markers


def segment(mask: np.ndarray, seeds: SeedSource, connectivity: int, *channels: np.ndarray,
            origin: Sequence[int] = (0, 0, 0), volume_shape: Sequence[int] | None = None) -> np.ndarray:
    """Seeded watershed of one array (read at ``origin`` of a volume of ``volume_shape``; default:
    the array is the volume): ``seeds`` gives the elevation and markers, flooding stays inside
    ``mask``. Labels are the markers' ids (not consecutive).

    Marker voxels get the elevation -10¹² - (their raster index in the volume), so they flood
    first and in volume order: skimage's heap leaves the order of equal (value, age) items to
    whatever else is queued, which would let ties between two seeds resolve differently in a
    block and in the whole volume."""
    from skimage.segmentation import watershed

    elevation, markers = seeds(mask, *channels)
    where = np.nonzero(markers)
    shape = tuple(volume_shape) if volume_shape is not None else mask.shape
    index = np.ravel_multi_index(tuple(c + int(o) for c, o in zip(where, origin)), shape)
    elevation = elevation.astype(np.float64, copy=False)  # seed sources return a fresh array
    elevation[where] = -1e12 - index.astype(np.float64)
    return watershed(elevation, markers, mask=mask.astype(bool, copy=False), connectivity=footprint(connectivity))


@dataclass(frozen=True)
class BlockGeometry:
    """Where a block's core and padded read lie (voxels, per axis)."""

    core: tuple[slice, ...]  # in the volume
    padded: tuple[slice, ...]  # in the volume
    at_border: tuple  # per axis (low side, high side) on the volume border
    volume_shape: tuple[int, ...]

    @property
    def inner(self) -> tuple[slice, ...]:
        """The core inside the padded read."""
        return tuple(slice(c.start - p.start, c.stop - p.start) for c, p in zip(self.core, self.padded))


def block_geometry(chunks, index: tuple, halo: Sequence[int]) -> BlockGeometry:
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
    size = [int(s[-1]) for s in starts]
    core = tuple(slice(int(starts[a][index[a]]), int(starts[a][index[a] + 1])) for a in range(3))
    padded = tuple(slice(max(0, c.start - h), min(n, c.stop + h)) for c, h, n in zip(core, halo, size))
    at_border = tuple((index[a] == 0, index[a] == len(chunks[a]) - 1) for a in range(3))
    return BlockGeometry(core, padded, at_border, tuple(size))


def relevant_box(mask: np.ndarray, region: tuple[slice, ...], connectivity: int) -> tuple[slice, ...] | None:
    """The bounding box, grown by one voxel, of the objects (connected components of ``mask``)
    that reach into ``region``; None when none does. Segmenting that box instead of the whole
    read gives those objects the same labels: each lies in it with its nearest background."""
    import cc3d

    if not mask[region].any():
        return None
    objects = cc3d.connected_components(mask, connectivity=connectivity)
    ids = np.unique(objects[region])
    boxes = [b for b in ndimage.find_objects(objects) if b is not None]
    chosen = [boxes[i - 1] for i in ids[ids > 0]]
    return tuple(slice(max(0, min(b[a].start for b in chosen) - 1), min(mask.shape[a], max(b[a].stop for b in chosen) + 1))
                 for a in range(3))


def _core_labels(padded: np.ndarray, geometry: BlockGeometry, seeds: SeedSource, connectivity: int,
                 channels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """(labels of the padded read, the same as core-local ids 1..n (0: not in the core), n).
    Only the objects that reach the core or the planes below it are segmented (`relevant_box`)."""
    mask = padded.astype(bool, copy=False)
    labels = np.zeros(mask.shape, np.int32)
    near_core = tuple(slice(max(0, i.start - 1), i.stop + 1) for i in geometry.inner)
    box = relevant_box(mask, near_core, connectivity)
    if box is not None:
        origin = [p.start + b.start for p, b in zip(geometry.padded, box)]
        labels[box] = segment(mask[box], seeds, connectivity, *(c[box] for c in channels), origin=origin,
                              volume_shape=geometry.volume_shape)
    in_core = np.unique(labels[geometry.inner])
    in_core = in_core[in_core > 0]
    local = np.zeros(int(labels.max(initial=0)) + 1, np.int64)
    local[in_core] = np.arange(1, len(in_core) + 1)
    return labels, local, len(in_core)


def _plane_below_own(labels: np.ndarray, local: np.ndarray, geometry: BlockGeometry, axis: int) -> np.ndarray:
    """How this block labels the plane just below its low face along ``axis``, with a 1-voxel
    in-plane margin (core-local ids; 0 outside the read or for labels not in the core)."""
    inner = geometry.inner
    others = [a for a in range(3) if a != axis]
    plane = np.zeros([inner[a].stop - inner[a].start + 2 for a in others], np.int64)
    if inner[axis].start == 0:  # first block along this axis: nothing below
        return plane
    src, dst = [slice(None)] * 3, []
    src[axis] = inner[axis].start - 1
    for a in others:
        lo, hi = inner[a].start - 1, inner[a].stop + 1
        src[a] = slice(max(lo, 0), min(hi, labels.shape[a]))
        dst.append(slice(src[a].start - lo, src[a].stop - lo))
    plane[tuple(dst)] = local[labels[tuple(src)]]
    return plane


def _summarize_block(padded: np.ndarray, geometry: BlockGeometry, seeds: SeedSource, connectivity: int,
                     store, *channels: np.ndarray) -> BlockSummary:
    labels, local, n = _core_labels(padded, geometry, seeds, connectivity, channels)
    core = local[labels[geometry.inner]]
    if store is not None:  # pass 2 reads the block's labels back instead of segmenting it again
        store[geometry.core] = core.astype(np.uint32)
    summary = summarize_labels(core, n, geometry.at_border)
    summary.below = {axis: _plane_below_own(labels, local, geometry, axis) for axis in range(3)}
    return summary


def _final_block(padded: np.ndarray, geometry: BlockGeometry, seeds: SeedSource, connectivity: int,
                 offset: int, lut: np.ndarray, dtype, *channels: np.ndarray) -> np.ndarray:
    labels, local, n = _core_labels(padded, geometry, seeds, connectivity, channels)
    return lookup(local[labels[geometry.inner]], n, offset, lut, dtype)


def _stored_block(local: np.ndarray, offsets: np.ndarray, counts: np.ndarray, lut: np.ndarray, dtype,
                  block_info=None) -> np.ndarray:
    index = tuple(block_info[0]["chunk-location"])
    return lookup(local, int(counts[index]), offsets[index], lut, dtype)


def _local_store(workdir, chunks):
    """A uint32 zarr array for the blocks' local labels, one zarr chunk per block (None when
    the blocks are irregular)."""
    import zarr

    block = tuple(c[0] for c in chunks)
    if workdir is None or any(any(b != c[0] for b in c[:-1]) for c in chunks):
        return None
    shape = tuple(int(sum(c)) for c in chunks)
    return zarr.create_array(store=str(Path(workdir) / "watershed_local.zarr"), shape=shape, chunks=block,
                             dtype="uint32", fill_value=0, overwrite=True)


def halo_voxels(halo_nm: float, voxel_size: Sequence[float]) -> tuple[int, int, int]:
    """The halo in voxels per axis (at least 1: the plane below each face)."""
    if not halo_nm > 0:
        raise InvalidValuesError(f"watershed halo must be > 0 nm, got {halo_nm}")
    return tuple(max(1, math.ceil(halo_nm / float(v) - 1e-9)) for v in voxel_size)


def watershed_instances(mask, seeds: SeedSource, halo: Sequence[int], connectivity: int = 26,
                        min_size_vox: int = 0, progress: bool = False, channels: Sequence = (), workdir=None):
    """Blockwise seeded watershed of a boolean dask array ``mask`` (its chunks are the blocks)
    with ``halo`` voxels of context per axis; ``channels``: dask arrays on the same grid that
    ``seeds`` also reads (none for `DistanceSeeds`). Objects under ``min_size_vox`` voxels are
    dropped. With a ``workdir`` (which must outlive the returned array), pass 1 stores each
    block's labels there and pass 2 looks them up; without, pass 2 segments every block again.
    Returns (lazy labels, number of objects)."""
    import dask
    import dask.array as da

    from emseg.io.progress import dask_progress

    connectivity = check_connectivity(connectivity)
    mask = da.asarray(mask)
    channels = [da.asarray(c) for c in channels]
    halo = tuple(max(1, int(h)) for h in halo)
    grid = tuple(len(c) for c in mask.chunks)
    indices = list(itertools.product(*(range(g) for g in grid)))
    geometries = {index: block_geometry(mask.chunks, index, halo) for index in indices}

    def reads(index):
        return [array[geometries[index].padded] for array in (mask, *channels)]

    store = _local_store(workdir, mask.chunks)
    tasks = [dask.delayed(_summarize_block)(reads(i)[0], geometries[i], seeds, connectivity, store, *reads(i)[1:])
             for i in indices]
    with dask_progress("watershed", progress):
        summaries = dask.compute(*tasks, scheduler="threads")
    components: Components = merge_blocks(dict(zip(indices, summaries)), mask.chunks, connectivity, same_voxel_pairs)
    new_ids, n = size_filter(components, min_size_vox)
    lut, dtype = final_lut(components, new_ids)
    if store is not None:
        counts = np.zeros(grid, np.int64)
        for index, summary in zip(indices, summaries):
            counts[index] = summary.n
        local = da.from_zarr(store, chunks=mask.chunks)
        return local.map_blocks(_stored_block, components.offsets, counts, lut, dtype, dtype=dtype,
                                meta=np.empty((0, 0, 0), dtype)), n
    blocks = np.empty(grid, dtype=object)
    for index in indices:
        geometry = geometries[index]
        shape = tuple(s.stop - s.start for s in geometry.core)
        task = dask.delayed(_final_block)(reads(index)[0], geometry, seeds, connectivity, components.offsets[index],
                                          lut, dtype, *reads(index)[1:])
        blocks[index] = da.from_delayed(task, shape, dtype=dtype)
    return da.block(blocks.tolist()), n
