"""Voxel sizes from each format's metadata, always returned as (z, y, x) nanometres."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from emseg.errors import AmbiguousSourceError, InvalidVoxelSizeError
from emseg.io.volume import VoxelSize, check_voxel_size

#: factor from a unit name to nanometres
UNIT_TO_NM = {
    "nm": 1.0, "nanometer": 1.0, "nanometre": 1.0,
    "um": 1e3, "µm": 1e3, "\u03bcm": 1e3, "micron": 1e3, "micrometer": 1e3, "micrometre": 1e3,
    "mm": 1e6, "millimeter": 1e6, "angstrom": 0.1, "å": 0.1, "a": 0.1, "pm": 1e-3, "picometer": 1e-3,
}


def unit_factor(unit: str | None, default: float = 1.0) -> float:
    if not unit:
        return default
    return UNIT_TO_NM.get(str(unit).strip().lower().replace("\\u00b5", "µ"), default)


def positive_or_none(values: Sequence[float], source: str) -> VoxelSize | None:
    try:
        return check_voxel_size(values, source)
    except InvalidVoxelSizeError:
        raise
    except (TypeError, ValueError):
        return None


def imagej_voxel_size(tif: Any) -> VoxelSize | None:
    """From ImageJ metadata (``spacing``, ``unit``) and the X/YResolution tags."""
    page = tif.pages[0]
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    ij = tif.imagej_metadata or {}
    if xres is None or yres is None:
        return None
    x = xres.value[1] / xres.value[0] if xres.value[0] else 0
    y = yres.value[1] / yres.value[0] if yres.value[0] else 0
    if not ij:
        unit_tag = page.tags.get("ResolutionUnit")
        unit = {2: 2.54e7, 3: 1e7}.get(int(unit_tag.value) if unit_tag else 1)
        if unit is None or (x == 1 and y == 1):
            return None  # no physical unit: the tags carry no voxel size
        return (float(min(x, y) * unit), float(y * unit), float(x * unit))
    factor = unit_factor(ij.get("unit"), default=1.0)
    if ij.get("unit") in (None, "", "pixel") and x == 1 and y == 1 and "spacing" not in ij:
        return None
    z = float(ij.get("spacing", x))
    return check_voxel_size((z * factor, y * factor, x * factor), tif.filehandle.path)


def from_attrs_list(values: Sequence[float], source: str, order: str = "zyx") -> VoxelSize:
    values = [float(v) for v in values][-3:]
    if len(values) == 2:
        values = [values[0], *values]
    if order == "xyz":
        values = values[::-1]
    return check_voxel_size(values, source)


def zarr_voxel_size(attrs: Mapping[str, Any], source: str = "zarr") -> VoxelSize | None:
    """funlib/daisy ``resolution`` (zyx, nm) or ``voxel_size`` attributes."""
    for key in ("voxel_size", "resolution"):
        if key in attrs:
            return from_attrs_list(attrs[key], source)
    return None


def hdf5_voxel_size(attrs: Mapping[str, Any], source: str = "hdf5") -> VoxelSize | None:
    """``resolution`` / ``voxel_size`` (zyx nm) or ilastik/Fiji ``element_size_um``."""
    if "element_size_um" in attrs:
        return check_voxel_size([float(v) * 1e3 for v in list(attrs["element_size_um"])[-3:]], source)
    return zarr_voxel_size(attrs, source)


def n5_voxel_size(attrs: Mapping[str, Any], source: str = "n5") -> VoxelSize | None:
    """N5 ``resolution`` or ``pixelResolution`` are in x, y, z order."""
    if "pixelResolution" in attrs:
        res = attrs["pixelResolution"]
        dims = res.get("dimensions", res) if isinstance(res, dict) else res
        factor = unit_factor(res.get("unit") if isinstance(res, dict) else None)
        return from_attrs_list([d * factor for d in dims], source, order="xyz")
    if "resolution" in attrs:
        return from_attrs_list(attrs["resolution"], source, order="xyz")
    return None


def mrc_voxel_size(voxel_size: Any) -> VoxelSize | None:
    """MRC headers give Å in x, y, z; zeros mean unset."""
    x, y, z = float(voxel_size.x), float(voxel_size.y), float(voxel_size.z)
    if x <= 0 or y <= 0:
        return None
    z = z if z > 0 else x
    return (z / 10.0, y / 10.0, x / 10.0)


def ome_zarr_level(attrs: Mapping[str, Any], level: int | str, source: str) -> tuple[str, VoxelSize | None]:
    """Path and voxel size (nm) of one scale level of an OME-Zarr multiscale image."""
    attrs = attrs.get("ome", attrs)
    multiscales = attrs.get("multiscales") or []
    if not multiscales:
        raise AmbiguousSourceError(f"{source}: OME-Zarr group without multiscales datasets")
    ms = multiscales[0]
    datasets = ms.get("datasets", [])
    paths = [d["path"] for d in datasets]
    if isinstance(level, str) and level in paths:
        index = paths.index(level)
    else:
        try:
            index = int(level)
        except ValueError:
            index = -1
        if not 0 <= index < len(datasets):
            raise AmbiguousSourceError(f"{source}: no scale level {level!r}; levels: {', '.join(paths)}")
    dataset = datasets[index]
    axes = ms.get("axes") or [{"name": n} for n in "zyx"]
    axes = [a if isinstance(a, dict) else {"name": a} for a in axes]
    scale = [1.0] * len(axes)
    for transforms in (ms.get("coordinateTransformations", []), dataset.get("coordinateTransformations", [])):
        for t in transforms:
            if t.get("type") == "scale":
                scale = [a * b for a, b in zip(scale, t["scale"])]
    spatial = [(a, s) for a, s in zip(axes, scale) if a.get("type", "space") == "space" or a["name"] in "zyx"]
    if not spatial:
        return dataset["path"], None
    values = [s * unit_factor(a.get("unit"), default=1.0) for a, s in spatial]
    if not any(a.get("unit") for a, _ in spatial) and all(v == 1.0 for v in values):
        return dataset["path"], None
    return dataset["path"], from_attrs_list(values, source)
