"""Densities inside a mask (a bouton, a cell): per class, the objects counted in the mask, the
class's volume fraction of the mask and objects per µm³ of mask.

An object is counted in the mask when the voxel holding its centroid is in the mask (an object
that straddles the mask's edge counts once, on the side of its centre); the volume fraction
counts voxels: class voxels in the mask / mask voxels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from emseg.errors import InvalidValuesError

NM3_PER_UM3 = 1e9
ALL_OBJECTS = "objects"  # the one row of a table without classes


def check_mask(volume) -> None:
    if np.dtype(volume.dtype).kind not in "uib":
        raise InvalidValuesError(f"{volume.path}: a mask must hold integers (0 outside, non-zero inside), "
                                 f"got dtype {volume.dtype}")


def centroid_voxels(table, voxel_size: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    """(n, 3) z, y, x index of the voxel that holds each object's centroid (nm columns)."""
    centroids = table[[f"centroid_{a}_nm" for a in "zyx"]].to_numpy(np.float64)
    voxels = np.floor(centroids / np.asarray(voxel_size, np.float64)).astype(np.int64)
    return np.clip(voxels, 0, np.asarray(shape, np.int64) - 1)


def centroids_in_mask(inside, table, voxel_size: Sequence[float]) -> np.ndarray:
    """Whether each object's centroid voxel is in the boolean dask mask ``inside`` (read blockwise)."""
    if not len(table):
        return np.zeros(0, bool)
    z, y, x = centroid_voxels(table, voxel_size, inside.shape).T
    return np.asarray(inside.vindex[z, y, x].compute(scheduler="threads"), bool)


def density(labels, table, mask, voxel_size: Sequence[float] | None = None, block: Sequence[int] = (64, 256, 256),
            classes: Mapping[int, str] | None = None, progress: bool = False):
    """(density table, in-mask flag per row of ``table``) for a label volume, its nm measurement
    ``table`` (a class table with ``classes``: value → name) and a mask of the same grid. The
    density table (index ``class``) has ``objects``, ``objects_per_um3``, ``volume_fraction``,
    ``class_volume_um3`` (inside the mask) and ``mask_volume_um3``."""
    import dask
    import dask.array as da
    import pandas as pd

    from emseg.io.progress import dask_progress
    from emseg.measure.objects import open_aligned
    from emseg.postprocess.pipeline import open_input, processing_chunks

    volume = open_input(labels, voxel_size)
    mask_volume = open_aligned(mask, volume, voxel_size, "mask")
    check_mask(mask_volume)
    chunks, _ = processing_chunks(volume.shape, block)
    data, inside = volume.to_dask(chunks), mask_volume.to_dask(chunks) != 0
    groups = {name: data == value for value, name in classes.items()} if classes else {ALL_OBJECTS: data != 0}
    with dask_progress("density", progress):
        voxels = dask.compute(da.count_nonzero(inside), *(da.count_nonzero(g & inside) for g in groups.values()),
                              scheduler="threads")
    if not voxels[0]:
        raise InvalidValuesError(f"{mask_volume.path}: the mask is empty (no non-zero voxel)")
    flags = centroids_in_mask(inside, table, volume.voxel_size)
    names = table.index.get_level_values("class") if classes else np.full(len(table), ALL_OBJECTS)
    voxel_um3 = float(np.prod(volume.voxel_size)) / NM3_PER_UM3
    mask_um3 = voxels[0] * voxel_um3
    rows = []
    for name, class_voxels in zip(groups, voxels[1:]):
        objects = int(flags[np.asarray(names) == name].sum())
        rows.append({"class": name, "objects": objects, "objects_per_um3": objects / mask_um3,
                     "volume_fraction": class_voxels / voxels[0], "class_volume_um3": class_voxels * voxel_um3,
                     "mask_volume_um3": mask_um3})
    return pd.DataFrame(rows).set_index("class"), flags
