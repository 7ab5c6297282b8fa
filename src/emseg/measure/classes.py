"""Per-class measurements of a class map (`emseg postprocess MAP1 MAP2 …`): the connected
components of each class are measured as `emseg.measure.objects.measure` measures objects,
in one table indexed by ``class`` (its name) and ``id`` (the object's number in its class)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from emseg.errors import InvalidValuesError

MAX_CLASSES = 255


def class_names(volume, chunks, names: Mapping[int, str] | None = None) -> dict[int, str]:
    """Class value → name: ``names``, else those stored with the class map, else every non-zero
    value of the volume named by its number."""
    import dask.array as da

    from emseg.postprocess.classes import stored_classes

    if names:
        return {int(k): str(v) for k, v in names.items()}
    stored = stored_classes(volume)
    if stored:
        return stored
    values = [int(v) for v in da.unique(volume.to_dask(chunks)).compute(scheduler="threads") if v != 0]
    if len(values) > MAX_CLASSES:
        raise InvalidValuesError(f"{volume.path}: {len(values)} label values is not a class map (at most "
                                 f"{MAX_CLASSES} classes); measure it without --classes")
    return {v: str(v) for v in values}


def measure_classes(labels, raw=None, voxel_size: Sequence[float] | None = None, surface: bool = True,
                    block: Sequence[int] = (64, 256, 256), progress: bool = False,
                    names: Mapping[int, str] | None = None):
    """One table (index ``class, id``) of every class's connected components (26-connected),
    with `measure`'s columns; ``names``: class value → name (default: `class_names`)."""
    import shutil
    import tempfile
    from pathlib import Path

    import pandas as pd

    from emseg.measure.objects import check_labels, measure_instances
    from emseg.postprocess.pipeline import as_instances, open_input, processing_chunks

    volume = open_input(labels, voxel_size)
    check_labels(volume)
    chunks, _ = processing_chunks(volume.shape, block)
    classes = class_names(volume, chunks, names)
    data = volume.to_dask(chunks)
    tables = []
    with tempfile.TemporaryDirectory(prefix="emseg-measure-") as tmp:
        for value, name in classes.items() or {None: ""}.items():  # no class: an empty table, every column
            mask = data == value if value is not None else data != 0
            objects = as_instances(volume, chunks, tmp, mask=mask, progress=progress, name=f"class-{value}")
            table = measure_instances(objects, raw, voxel_size, surface, chunks, progress)
            tables.append(table.assign(**{"class": name}).set_index("class", append=True))
            shutil.rmtree(Path(tmp) / f"class-{value}.ome.zarr", ignore_errors=True)  # one class on disk at a time
    found = [t for t in tables if len(t)] or tables[:1]
    return pd.concat(found).reorder_levels(["class", "id"])
