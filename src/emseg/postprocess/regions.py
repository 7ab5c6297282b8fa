"""Per-label reductions over label volumes larger than memory: each block gives a small
table per label (voxel count, bounding box, coordinate moments, intensity sums), tables
are merged by label, so an object spanning many blocks is counted once and exactly."""

from __future__ import annotations

import itertools

import numpy as np

AXES = "zyx"
MOMENTS = [a + b for a, b in itertools.combinations_with_replacement(AXES, 2)]  # zz zy zx yy yx xx


def block_table(labels: np.ndarray, origin_vox, raw: np.ndarray | None = None, moments: bool = False):
    """pandas table (index: label id) for one block whose first voxel is at ``origin_vox``."""
    import pandas as pd

    nonzero = labels != 0
    ids = labels[nonzero]
    coords = np.nonzero(nonzero)
    frame = {"id": ids}
    for axis, c in zip(AXES, coords):
        frame[axis] = c.astype(np.int64) + int(origin_vox[AXES.index(axis)])
    if raw is not None:
        values = raw[nonzero].astype(np.float64)
        frame["intensity"] = values
        frame["intensity2"] = values * values
    df = pd.DataFrame(frame)
    if moments:
        for name in MOMENTS:
            df[name] = df[name[0]].astype(np.float64) * df[name[1]]
    grouped = df.groupby("id", sort=False)
    table = pd.DataFrame({"count": grouped.size()})
    for axis in AXES:
        table[f"lo_{axis}"] = grouped[axis].min()
        table[f"hi_{axis}"] = grouped[axis].max()
        if moments:
            table[f"sum_{axis}"] = grouped[axis].sum().astype(np.float64)
    if moments:
        for name in MOMENTS:
            table[f"sum_{name}"] = grouped[name].sum()
    if raw is not None:
        table["sum_intensity"] = grouped["intensity"].sum()
        table["sum_intensity2"] = grouped["intensity2"].sum()
    return table


def merge_tables(tables):
    """Combine block tables: counts and sums add, boxes take min/max."""
    import pandas as pd

    tables = list(tables)
    if not any(len(t) for t in tables):  # no object: no rows, but the columns of a block table
        empty = tables[0].iloc[:0] if tables else pd.DataFrame(
            columns=["count"] + [f"{e}_{a}" for a in AXES for e in ("lo", "hi")])
        empty.index.name = "id"
        return empty
    tables = [t for t in tables if len(t)]
    df = pd.concat(tables)
    agg = {c: ("min" if c.startswith("lo_") else "max" if c.startswith("hi_") else "sum") for c in df.columns}
    merged = df.groupby(level=0).agg(agg)
    merged.index.name = "id"
    return merged.sort_index()


def label_table(labels, raw=None, moments: bool = False, progress: bool = False, description: str = "objects"):
    """Per-label table of a label dask array (optionally with an aligned raw dask array)."""
    import dask
    import dask.array as da

    from emseg.io.progress import dask_progress

    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in labels.chunks]
    label_blocks = labels.to_delayed()
    raw_blocks = da.asarray(raw).rechunk(labels.chunks).to_delayed() if raw is not None else None
    tasks = []
    for index in itertools.product(*(range(len(c)) for c in labels.chunks)):
        origin = tuple(int(starts[a][index[a]]) for a in range(3))
        tasks.append(dask.delayed(block_table)(label_blocks[index], origin,
                                               raw_blocks[index] if raw_blocks is not None else None, moments))
    with dask_progress(description, progress):
        tables = dask.compute(*tasks, scheduler="threads")
    return merge_tables(tables)


def boxes(table) -> dict:
    """id → (lo, hi) inclusive voxel corners, from a label table."""
    lo = table[[f"lo_{a}" for a in AXES]].to_numpy()
    hi = table[[f"hi_{a}" for a in AXES]].to_numpy()
    return {int(i): (tuple(int(v) for v in low), tuple(int(v) for v in high)) for i, low, high in zip(table.index, lo, hi)}
