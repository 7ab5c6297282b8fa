"""Per-object measurements in nm from an instance label volume larger than memory.

Pass 1 (blockwise, `emseg.postprocess.regions.label_table`): voxel counts, bounding boxes,
coordinate moments and intensity sums per label, merged across blocks, so every object is
measured once whatever blocks it spans. Pass 2: each object's bounding-box crop is meshed
for its surface area (objects must fit in memory one at a time; the volume need not).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emseg.errors import InvalidValuesError
from emseg.postprocess.regions import AXES, MOMENTS

SUMMARY_COLUMNS = ("volume_nm3", "surface_area_nm2", "equivalent_diameter_nm", "sphericity", "elongation",
                   "mean_intensity")


def check_labels(volume) -> None:
    if np.dtype(volume.dtype).kind not in "ui":
        raise InvalidValuesError(f"{volume.path}: labels must be integers, got dtype {volume.dtype} "
                                 "(a probability map? run `emseg postprocess` first)")


def object_boxes(volume, block=(64, 256, 256), progress: bool = False) -> dict:
    """id → (lo, hi) inclusive voxel corners of every object in a label Volume."""
    from emseg.postprocess.pipeline import processing_chunks
    from emseg.postprocess.regions import boxes, label_table

    check_labels(volume)
    chunks, _ = processing_chunks(volume.shape, block)
    return boxes(label_table(volume.to_dask(chunks), progress=progress, description="boxes"))


def read_object(volume, label: int, box) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Boolean mask of one object over its bounding box, and the box's first voxel."""
    lo, hi = box
    region = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
    return np.asarray(volume[region]) == label, tuple(lo)


def shape_columns(table, voxel_size: Sequence[float]):
    """Derived columns (nm) from a merged moment table."""
    import pandas as pd

    vs = np.asarray(voxel_size, np.float64)
    n = table["count"].to_numpy(np.float64)
    out = pd.DataFrame(index=table.index)
    out["voxels"] = table["count"].astype(np.int64)
    out["volume_nm3"] = n * float(np.prod(vs))
    out["equivalent_diameter_nm"] = np.cbrt(6.0 * out["volume_nm3"] / np.pi)
    mean = np.stack([table[f"sum_{a}"].to_numpy() / n for a in AXES], axis=1)  # voxel index units
    for k, a in enumerate(AXES):
        out[f"centroid_{a}_nm"] = (mean[:, k] + 0.5) * vs[k]  # voxel centres, origin at the volume corner
    for k, a in enumerate(AXES):
        out[f"bbox_min_{a}_nm"] = table[f"lo_{a}"].to_numpy() * vs[k]
        out[f"bbox_max_{a}_nm"] = (table[f"hi_{a}"].to_numpy() + 1) * vs[k]
    cov = np.zeros((len(table), 3, 3))
    for name in MOMENTS:
        i, j = AXES.index(name[0]), AXES.index(name[1])
        c = (table[f"sum_{name}"].to_numpy() / n - mean[:, i] * mean[:, j]) * vs[i] * vs[j]
        cov[:, i, j] = cov[:, j, i] = c
    cov += np.diag(vs**2 / 12.0)  # a voxel is a box, not a point
    eig = np.sort(np.clip(np.linalg.eigvalsh(cov), 0, None), axis=1)[:, ::-1]
    lengths = 2.0 * np.sqrt(5.0 * eig)  # full axes of the solid ellipsoid with these moments
    for k, name in enumerate(("major", "intermediate", "minor")):
        out[f"axis_{name}_nm"] = lengths[:, k]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["elongation"] = lengths[:, 0] / lengths[:, 2]
        out["eccentricity"] = np.sqrt(1.0 - (lengths[:, 2] / lengths[:, 0]) ** 2)
    if "sum_intensity" in table:
        mean_i = table["sum_intensity"].to_numpy() / n
        out["mean_intensity"] = mean_i
        out["std_intensity"] = np.sqrt(np.clip(table["sum_intensity2"].to_numpy() / n - mean_i**2, 0, None))
    return out


def measure(labels, raw=None, voxel_size: Sequence[float] | None = None, surface: bool = True,
            block: Sequence[int] = (64, 256, 256), progress: bool = False, split_binary: bool = True):
    """Table (pandas, one row per object, index ``id``) of volume, surface area, equivalent
    diameter, centroid and bounding box, principal axes, elongation, eccentricity,
    sphericity, intensity mean/std (with ``raw``) and a touches-border flag; all in nm.
    A binary (0/1) volume is split into connected components first (``split_binary``)."""
    import tempfile

    from emseg.postprocess.pipeline import as_instances, open_input, processing_chunks

    volume = open_input(labels, voxel_size)
    check_labels(volume)
    chunks, _ = processing_chunks(volume.shape, block)
    with tempfile.TemporaryDirectory(prefix="emseg-measure-") as tmp:
        if split_binary:
            volume = as_instances(volume, chunks, tmp, progress=progress)
        return measure_instances(volume, raw, voxel_size, surface, chunks, progress)


def open_aligned(source, labels, voxel_size: Sequence[float] | None, role: str):
    """A volume read beside ``labels`` (raw, mask): an in-memory array takes the labels' voxel
    size; it must have their shape and voxel size (else a one-line error naming both files)."""
    from emseg.postprocess.pipeline import check_same_grid, open_input

    volume = open_input(source, voxel_size or (labels.voxel_size if isinstance(source, np.ndarray) else None))
    check_same_grid(labels, volume, role, "labels")
    return volume


def measure_instances(volume, raw, voxel_size, surface: bool, chunks, progress: bool):
    """`measure`'s table for an instance label Volume, read in dask ``chunks``."""
    from emseg.measure.meshes import surface_area_nm2
    from emseg.postprocess.regions import label_table

    raw_data = open_aligned(raw, volume, voxel_size, "raw").to_dask(chunks) if raw is not None else None
    table = label_table(volume.to_dask(chunks), raw_data, moments=True, progress=progress, description="measure")
    out = shape_columns(table, volume.voxel_size)
    shape = np.asarray(volume.shape)
    lo = table[[f"lo_{a}" for a in AXES]].to_numpy()
    hi = table[[f"hi_{a}" for a in AXES]].to_numpy()
    out["touches_border"] = (lo == 0).any(axis=1) | (hi == shape - 1).any(axis=1)
    if surface:
        import dask

        from emseg.io.progress import dask_progress

        def area(label, box):
            return surface_area_nm2(read_object(volume, int(label), box)[0], volume.voxel_size)

        tasks = [dask.delayed(area)(label, (low, high)) for label, low, high in zip(table.index, lo, hi)]
        with dask_progress("surfaces", progress):
            areas = dask.compute(*tasks, scheduler="threads")
        out["surface_area_nm2"] = np.asarray(areas, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["sphericity"] = np.pi ** (1 / 3) * (6 * out["volume_nm3"]) ** (2 / 3) / out["surface_area_nm2"]
    out.index.name = "id"
    return out


def summary_columns(table) -> list[str]:
    """The main columns present in ``table``, in nm or µm."""
    from emseg.measure.units import UNITS, column_name

    named = [column_name(c, u) for c in SUMMARY_COLUMNS for u in UNITS]
    return [c for c in dict.fromkeys(named) if c in table]


def by_class(table) -> list:
    """(class name or None, rows) pairs: one per class of a class table, else the whole table."""
    if "class" not in (table.index.names or []):
        return [(None, table)]
    return list(table.groupby(level="class", sort=False))


def describe(rows, columns: list[str]):
    """Object count and distribution (mean, std, quartiles) of ``columns``."""
    result = rows[columns].describe().T
    result.insert(0, "objects", len(rows))
    return result


def summary(table) -> "object":
    """`describe` of the main columns; per class for a class table (index ``class, id``)."""
    import pandas as pd

    columns = summary_columns(table)
    groups = by_class(table)
    if not groups or groups[0][0] is None:  # instance table, or a class table without objects
        return describe(table, columns)
    return pd.concat({name: describe(rows, columns) for name, rows in groups}, names=["class", "measure"])


def plot_histograms(table, path) -> None:
    """PNG with one histogram per main column (one colour per class for a class table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = summary_columns(table)
    groups = by_class(table)
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 2.8), dpi=110, squeeze=False)
    for ax, column in zip(axes[0], columns):
        for name, rows in groups:
            values = rows[column].replace([np.inf, -np.inf], np.nan).dropna()
            ax.hist(values, bins=min(40, max(5, len(values) // 3)), alpha=0.8 if name is None else 0.5,
                    color="tab:blue" if name is None else None, label=name)
        ax.set(title=column, ylabel="objects")
        if len(groups) > 1 or groups[0][0] is not None:
            ax.legend(fontsize=7)
    fig.suptitle(f"{len(table)} objects")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
