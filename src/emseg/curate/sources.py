"""Turning command-line sources into named datasets (one source = one dataset).

A source is ``PATH`` or ``NAME=PATH``; PATH is a volume or 2D image any `emseg.io` reader opens,
a folder (a slice folder or zarr is one volume; otherwise every image file inside is one
item of the dataset), or a ``.txt`` list file with one source per line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from emseg.errors import ConfigError, VolumeNotFoundError

IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".mrc", ".h5", ".hdf5", ".zarr", ".n5", ".bmp"}


@dataclass
class Dataset:
    """A named dataset: one or more volume paths."""

    name: str
    items: list[str] = field(default_factory=list)
    source: str = ""


def _name_of(path: str) -> str:
    p = Path(path.rstrip("/"))
    name = p.name
    for suffix in (".ome.zarr", ".zarr", ".n5", ".tiff", ".tif", ".h5", ".hdf5", ".mrc", ".png"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.stem or name


def _items(path: str) -> list[str]:
    """The volume paths a folder source stands for."""
    p = Path(path)
    if not p.is_dir() or p.suffix in (".zarr", ".n5") or (p / ".zgroup").exists() or (p / "zarr.json").exists():
        return [path]
    files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VolumeNotFoundError(f"{path}: folder holds no images or volumes")
    from emseg.io import open_volume

    try:  # a folder of equally sized 2D slices is one volume
        open_volume(path)
        return [path]
    except Exception:  # noqa: BLE001 - not a slice stack: each file is its own item
        return files


def resolve_sources(sources: list[str]) -> list[Dataset]:
    """Datasets for the given sources; raises on missing paths and duplicate names."""
    datasets: list[Dataset] = []
    for spec in sources:
        name, _, path = spec.rpartition("=") if "=" in spec and not os.path.exists(spec) else ("", "", spec)
        if path.endswith(".txt") and os.path.isfile(path):
            lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
            datasets += resolve_sources([ln for ln in lines if ln and not ln.startswith("#")])
            continue
        file_part = path.split(".h5:")[0] + ".h5" if ".h5:" in path else path
        if not os.path.exists(file_part):
            raise VolumeNotFoundError(f"{path}: no such file or folder")
        datasets.append(Dataset(name or _name_of(path), _items(path), path))
    seen: dict[str, str] = {}
    for ds in datasets:
        if ds.name in seen:
            raise ConfigError(
                f"duplicate dataset name {ds.name!r} ({seen[ds.name]} and {ds.source}); "
                "name them explicitly as NAME=PATH"
            )
        seen[ds.name] = ds.source
    return datasets
