"""Open a class map (`emseg postprocess MAP1 MAP2 …`) in napari: a labels layer named after
the file, whose ``features`` table has a ``class`` column, so that napari's status bar names the
class under the cursor. Also napari's reader for class maps (File > Open)."""

from __future__ import annotations

import os
from collections.abc import Callable


def class_map_layer(path: str | os.PathLike) -> tuple:
    """A napari layer data tuple (lazy data, keyword arguments, ``"labels"``) for a class map."""
    from emseg.errors import InvalidValuesError
    from emseg.io import open_volume
    from emseg.postprocess.classes import file_stem, stored_classes

    volume = open_volume(str(path))
    names = stored_classes(volume)
    if not names:
        raise InvalidValuesError(f"{path}: not a class map (no class names stored by `emseg postprocess`)")
    scale = tuple(float(v) for v in volume.voxel_size)
    features = {"index": [0, *names], "class": ["none", *names.values()]}
    kwargs = {"name": file_stem(path), "scale": scale, "features": features,
              "metadata": {"voxel_size": scale, "classes": {str(k): v for k, v in names.items()}}}
    return volume.to_dask(volume.chunks), kwargs, "labels"


def get_reader(path: str | os.PathLike | list) -> Callable | None:
    """napari reader hook: a reader for an emseg class map, None for anything else (so that
    other readers, e.g. napari-ome-zarr, open it)."""
    from emseg.postprocess.classes import stored_classes

    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        is_class_map = bool(stored_classes(str(path)))
    except Exception:  # noqa: BLE001 — not a volume emseg reads: another reader's file
        return None
    return (lambda _path: [class_map_layer(path)]) if is_class_map else None
