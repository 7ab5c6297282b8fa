"""Class maps: several single-organelle probability maps → one uint8 class label volume.

Each map is thresholded at its own threshold (default: the one stored with the model that
made it, `emseg.postprocess.pipeline.stored_model_threshold`, else 0.5); where several
classes reach theirs, the highest ``(p - t) / (1 - t)`` wins (`emseg.postprocess.ops.
resolve_conflicts`). The output stores ``attrs["emseg"]["classes"] = {"1": name, …}`` with
the thresholds and sources under the same keys, and NGFF ``image-label.properties``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emseg.errors import InvalidValuesError

CONFLICT_RULE = "highest (p - t) / (1 - t) among the classes with p >= t; ties: the lower class value"
DEFAULT_THRESHOLD = 0.5
SUFFIXES = (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".h5", ".hdf5", ".n5", ".mrc")


@dataclass(frozen=True)
class ClassSource:
    """One class of a class map: its name, threshold (and where that came from) and map."""

    name: str
    threshold: float
    threshold_from: str  # "option", "model" or "default"
    source: str


def file_stem(source) -> str:
    """``mito.ome.zarr`` → ``mito`` (the name of a class whose model does not name it)."""
    name = Path(os.fspath(source)).name
    lower = name.lower()
    return next((name[: -len(s)] for s in SUFFIXES if lower.endswith(s) and len(name) > len(s)), name)


def class_names(volumes: Sequence, sources: Sequence, names: Sequence[str] | None = None) -> list[str]:
    """``names`` (each its own), else each map's organelle (stored with its model by `emseg
    predict`), else its file name; a name that repeats gets ``-2``, ``-3``… (``mito``, ``mito-2``)."""
    from emseg.postprocess.pipeline import stored_attrs

    if names is not None:
        if len(names) != len(volumes):
            raise InvalidValuesError(f"{len(volumes)} probability maps but {len(names)} class names")
        chosen = [str(n).strip() for n in names]
        repeated = [n for k, n in enumerate(chosen) if n in chosen[:k]]
        if repeated:
            raise InvalidValuesError(f"class name {repeated[0]!r} is given twice; give each map its own name")
    else:
        chosen = []
        for k, (volume, source) in enumerate(zip(volumes, sources)):
            organelle = str(stored_attrs(volume).get("model", {}).get("organelle") or "")
            fallback = file_stem(source) if isinstance(source, (str, os.PathLike)) else f"class{k + 1}"
            name = organelle if organelle not in ("", "object") else fallback
            unique, n = name, 1
            while unique in chosen:
                n += 1
                unique = f"{name}-{n}"
            chosen.append(unique)
    for name in chosen:
        if not name or "=" in name or "," in name:
            raise InvalidValuesError(f"class name {name!r}: must be non-empty, without '=' or ','")
    return chosen


def parse_threshold_options(values: Sequence[str]) -> tuple[list[float], dict[str, float]]:
    """``-t`` values → (plain thresholds, ``NAME=T`` overrides), every value checked in [0, 1]."""
    from emseg.postprocess.ops import check_threshold

    plain, named = [], {}
    for value in values:
        name, _, number = str(value).rpartition("=")
        try:
            threshold = float(number)
        except ValueError:
            raise InvalidValuesError(f"--threshold {value}: expected a number in [0, 1] or NAME=NUMBER") from None
        check_threshold(threshold, f"--threshold {value}: threshold")
        if "=" in str(value):
            named[name.strip()] = threshold
        else:
            plain.append(threshold)
    return plain, named


def class_thresholds(volumes: Sequence, names: Sequence[str], thresholds: Sequence[float] = (),
                     overrides: Mapping[str, float] | None = None) -> list[tuple[float, str]]:
    """(threshold, where it came from) per class: ``overrides[name]``, else ``thresholds`` (one for
    all or one per map), else the model's stored threshold, else 0.5."""
    from emseg.postprocess.ops import check_threshold
    from emseg.postprocess.pipeline import stored_model_threshold

    thresholds = [check_threshold(t) for t in thresholds]
    if len(thresholds) not in (0, 1, len(volumes)):
        raise InvalidValuesError(f"{len(volumes)} probability maps but {len(thresholds)} thresholds "
                                 "(give one for all, one per map, or NAME=T)")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InvalidValuesError(f"--threshold {unknown[0]}=…: no class {unknown[0]!r}; classes: {', '.join(names)}")
    result = []
    for k, (volume, name) in enumerate(zip(volumes, names)):
        if name in overrides:
            result.append((check_threshold(overrides[name]), "option"))
        elif thresholds:
            result.append((thresholds[k if len(thresholds) > 1 else 0], "option"))
        else:
            stored = stored_model_threshold(volume)
            result.append((DEFAULT_THRESHOLD, "default") if stored is None else (stored, "model"))
    return result


def open_maps(sources: Sequence, voxel_size: Sequence[float] | None = None, allow_incomplete: bool = False) -> list:
    """The probability maps as Volumes: complete, probabilities, all on one grid (else a one-line
    error naming the file)."""
    from emseg.postprocess.pipeline import check_same_grid, is_probability, open_input, require_complete

    if not 1 <= len(sources) <= 255:
        raise InvalidValuesError(f"a class map takes 1 to 255 probability maps, got {len(sources)}")
    volumes = [open_input(s, voxel_size) for s in sources]
    for source, volume in zip(sources, volumes):
        require_complete(volume, allow_incomplete)
        if not is_probability(volume):
            raise InvalidValuesError(f"{source_name(source, volume)}: not a probability map (dtype {volume.dtype}, not written "
                                     "by emseg predict); a class map is made from probability maps")
        check_same_grid(volumes[0], volume, "probability map", "probability map")
    return volumes


def source_name(source, volume) -> str:
    """The map as the user named it (an OME-Zarr group, not its level ``0``)."""
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else str(volume.path)


def label_properties(names: Sequence[str]) -> list[dict]:
    """NGFF ``image-label.properties``: one entry per class value."""
    return [{"label-value": k + 1, "name": name} for k, name in enumerate(names)]


def add_label_properties(path: str | os.PathLike, names: Sequence[str]) -> None:
    """Add the class names to the NGFF ``image-label`` of an OME-Zarr label volume emseg wrote."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    attrs = dict(group.attrs)
    ngff = attrs.get("ome", attrs)
    label = {**ngff.get("image-label", {}), "properties": label_properties(names)}
    if "ome" in attrs:
        group.attrs["ome"] = {**attrs["ome"], "image-label": label}
    else:
        group.attrs["image-label"] = label


def write_class_map(
    sources: Sequence,
    output: str | os.PathLike,
    thresholds: Sequence[float] = (),
    overrides: Mapping[str, float] | None = None,
    names: Sequence[str] | None = None,
    voxel_size: Sequence[float] | None = None,
    block: Sequence[int] = (128, 256, 256),
    levels: int | None = 1,
    overwrite: bool = False,
    progress: bool = False,
    allow_incomplete: bool = False,
) -> dict:
    """Several probability maps → one uint8 class label OME-Zarr (0 = no class, k = the k-th map),
    blockwise and atomic. Returns the output, classes (`ClassSource` list), shape and voxel size."""
    from emseg.io import write_ome_zarr
    from emseg.postprocess.ops import resolve_conflicts
    from emseg.postprocess.pipeline import processing_chunks

    volumes = open_maps(sources, voxel_size, allow_incomplete)
    names = class_names(volumes, sources, names)
    chosen = class_thresholds(volumes, names, thresholds, overrides)
    classes = [ClassSource(n, t, why, source_name(s, v)) for n, (t, why), s, v in zip(names, chosen, sources, volumes)]
    first = volumes[0]
    blocks, out_chunks = processing_chunks(first.shape, block)
    labels = resolve_conflicts([v.to_dask(blocks) for v in volumes], [c.threshold for c in classes])
    keys = [str(k + 1) for k in range(len(classes))]
    attrs = {"classes": dict(zip(keys, names)), "thresholds": {k: c.threshold for k, c in zip(keys, classes)},
             "threshold_from": {k: c.threshold_from for k, c in zip(keys, classes)},
             "sources": {k: c.source for k, c in zip(keys, classes)}, "conflict_rule": CONFLICT_RULE}
    target = write_ome_zarr(labels, output, first.voxel_size, chunks=out_chunks, levels=levels, kind="labels",
                            overwrite=overwrite, progress=progress, attrs=attrs)
    add_label_properties(target, names)  # NGFF metadata beside emseg's (written after the atomic rename)
    return {"output": str(target), "classes": classes, "shape": first.shape, "voxel_size": first.voxel_size}


def stored_classes(source) -> dict[int, str]:
    """Class value → name of a class map written by `write_class_map` ({} for any other volume)."""
    from emseg.postprocess.pipeline import open_input, stored_attrs

    classes = stored_attrs(open_input(source)).get("classes", {})
    try:
        return {int(k): str(v) for k, v in sorted(classes.items(), key=lambda kv: int(kv[0]))}
    except (AttributeError, TypeError, ValueError):
        return {}
