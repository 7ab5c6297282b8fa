"""`open_volume`: every supported format behind one call."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emseg.errors import (
    AmbiguousSourceError,
    CorruptFileError,
    InvalidValuesError,
    ShapeMismatchError,
    UnsupportedFormatError,
    VolumeNotFoundError,
)
from emseg.io import readers
from emseg.io.metadata import (
    hdf5_voxel_size,
    imagej_voxel_size,
    mrc_voxel_size,
    n5_voxel_size,
    ome_zarr_level,
    zarr_voxel_size,
)
from emseg.io.volume import Volume, check_voxel_size, warn_missing_voxel_size

TIFF_EXT = (".tif", ".tiff")
SLICE_EXT = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
HDF5_EXT = (".h5", ".hdf5", ".hdf", ".he5")
MRC_EXT = (".mrc", ".rec", ".st", ".map")
SUPPORTED = "TIFF, folder of TIFF/PNG slices, HDF5 (file.h5:/dataset), zarr v2/v3, OME-Zarr, N5, MRC"

#: zarr reader used when ``backend="auto"``: tensorstore is fastest (benchmarks/io_read.py)
DEFAULT_ZARR_BACKEND = "tensorstore"


def open_volume(
    path: str | os.PathLike,
    voxel_size: Sequence[float] | None = None,
    *,
    level: int | str = 0,
    channel: int | None = None,
    backend: str = "auto",
) -> Volume:
    """Open any supported volume lazily as a `Volume` (z, y, x; voxel size in nm).

    path: a TIFF (multipage or 2D), a folder of 2D slices, ``file.h5:/dataset``, a zarr
        array or group (v2/v3), an OME-Zarr image (``level`` picks the scale), an N5
        dataset, or an MRC file. A `Volume` is returned unchanged.
    voxel_size: (z, y, x) in nm; overrides what the file says. Without it and without
        metadata, 1 nm is assumed with a warning.
    channel: for RGB/multichannel images, which channel to read (else an error).
    backend: for zarr arrays, ``"zarr"`` (zarr-python), ``"tensorstore"`` or ``"auto"``.
    """
    if isinstance(path, Volume):
        return path.with_voxel_size(voxel_size) if voxel_size is not None else path
    spec = os.fspath(path)
    file_path, inner = split_inner_path(spec)
    if not os.path.exists(file_path):
        raise VolumeNotFoundError(f"{file_path}: no such file or folder")
    volume = open_any(file_path, inner, level, channel, backend)
    if voxel_size is not None:
        volume = volume.with_voxel_size(voxel_size)
    elif volume.voxel_size is None:  # type: ignore[comparison-overlap]
        volume.voxel_size = warn_missing_voxel_size(spec)
        volume.voxel_size_assumed = True
    if volume.size == 0:
        raise InvalidValuesError(f"{spec}: volume is empty (shape {volume.shape})")
    return volume


def split_inner_path(spec: str) -> tuple[str, str]:
    """Split ``file.h5:/a/b`` into (``file.h5``, ``/a/b``); other paths pass through."""
    if os.path.exists(spec):
        return spec, ""
    head, sep, tail = spec.rpartition(":")
    if sep and head and os.path.exists(head) and not tail.startswith(("\\", "//")):
        return head, tail
    return spec, ""


def open_any(path: str, inner: str, level: int | str, channel: int | None, backend: str) -> Volume:
    lower = path.lower().rstrip("/\\")
    p = Path(path)
    if p.is_dir():
        if is_n5(p):
            return open_n5(path, inner)
        if is_zarr(p):
            return open_zarr(path, inner, level, channel, backend)
        if inner:
            raise UnsupportedFormatError(f"{path}: ':{inner}' only applies to HDF5 files")
        return open_slice_folder(path, channel)
    if inner and not lower.endswith(HDF5_EXT):
        raise UnsupportedFormatError(f"{path}: ':{inner}' only applies to HDF5 files")
    if lower.endswith(TIFF_EXT):
        return open_tiff(path, channel)
    if lower.endswith(HDF5_EXT):
        return open_hdf5(path, inner, channel)
    if lower.endswith(MRC_EXT):
        return open_mrc(path)
    if lower.endswith((".png", ".jpg", ".jpeg")):
        return open_slice_files(path, [path], channel)
    raise UnsupportedFormatError(
        f"{path}: unknown volume format '{p.suffix or p.name}'; emseg reads {SUPPORTED}"
    )


# --- TIFF and slices --------------------------------------------------------------------


class _TiffProblems(logging.Handler):
    """Collects what tifffile logs while a file is opened (it logs, not raises, a broken page chain)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_tiff_complete(path: str, tif: Any, series: Any, problems: list[str]) -> None:
    """A truncated TIFF is an error, never fewer slices: a broken page chain, data past the
    end of the file, or fewer images than the ImageJ header announces."""
    broken = [m for m in problems if "invalid page offset" in m or "corrupt" in m]
    if broken:
        raise CorruptFileError(f"{path}: TIFF is truncated or damaged ({broken[0].split('> ')[-1]})")
    size = os.path.getsize(path)
    offset = getattr(series, "dataoffset", None)
    if offset is not None and offset + series.size * series.dtype.itemsize > size:
        raise CorruptFileError(f"{path}: TIFF is truncated (its image data ends past the end of the file)")
    announced = (tif.imagej_metadata or {}).get("images") if tif.is_imagej else None
    planes = int(np.prod(series.shape[:-2])) if len(series.shape) > 2 else 1
    if announced and int(announced) > planes and "S" not in series.axes.upper():
        raise CorruptFileError(f"{path}: TIFF is truncated (the ImageJ header announces {announced} images, "
                               f"the file holds {planes})")


def open_tiff(path: str, channel: int | None) -> Volume:
    import tifffile

    problems = _TiffProblems()
    log = logging.getLogger("tifffile")
    log.addHandler(problems)
    propagate, log.propagate = log.propagate, False
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype, axes = tuple(series.shape), np.dtype(series.dtype), series.axes
            voxel_size = imagej_voxel_size(tif)
            page_shape = tif.pages[0].shape
            # touch the last page so that truncation shows here, not in the middle of a run
            tif.pages[len(tif.pages) - 1].asarray() if len(tif.pages) > 1 else None
            check_tiff_complete(path, tif, series, problems.messages)
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, struct_error()) as err:
        raise CorruptFileError(f"{path}: not a readable TIFF ({err})") from err
    finally:
        log.removeHandler(problems)
        log.propagate = propagate
    reader: Any = readers.TiffReader(path, squeeze_2d=False)
    axes = axes.upper()
    if axes.endswith("S") or (len(shape) >= 3 and shape[-1] in (3, 4) and "C" in axes[-1:]):
        shape, reader = select_channel(path, shape, reader, channel)
        axes = axes[:-1]
    if len(shape) == 2:
        shape = (1, *shape)
        reader = rebuild_2d(path, reader, channel)
    if len(shape) != 3:
        raise UnsupportedFormatError(
            f"{path}: TIFF has axes {axes} with shape {tuple(shape)}; emseg reads 2D or 3D "
            "grayscale (z, y, x). Split channels/time points first."
        )
    return Volume(path, tuple(int(s) for s in shape), dtype, voxel_size, reader,  # type: ignore[arg-type]
                  chunks=(1, *page_shape[:2]) if len(page_shape) >= 2 else None,
                  format="tiff", check_nan=dtype.kind == "f")


def struct_error() -> type:
    import struct

    return struct.error


def rebuild_2d(path: str, reader: Any, channel: int | None) -> Any:
    inner = readers.TiffReader(path, squeeze_2d=True)
    return readers.ChannelReader(inner, channel) if channel is not None else inner


def select_channel(path: str, shape: tuple, reader: Any, channel: int | None) -> tuple[tuple, Any]:
    """Handle a trailing RGB(A)/channel axis: pick ``channel`` or say how to."""
    n = shape[-1]
    if channel is None:
        raise InvalidValuesError(
            f"{path}: image is RGB/multichannel ({n} channels, shape {tuple(shape)}); EM is "
            "grayscale: pick one with channel=N (CLI: --channel N) or convert it to grayscale"
        )
    if not 0 <= channel < n:
        raise InvalidValuesError(f"{path}: channel {channel} out of range (image has {n})")
    return tuple(shape[:-1]), readers.ChannelReader(reader, channel)


def open_slice_folder(path: str, channel: int | None) -> Volume:
    from natsort import natsorted

    files = natsorted(
        str(f) for f in Path(path).iterdir() if f.is_file() and f.suffix.lower() in SLICE_EXT
    )
    if not files:
        raise UnsupportedFormatError(
            f"{path}: folder holds no image slices (.tif/.png/.jpg) and is not zarr/N5"
        )
    return open_slice_files(path, files, channel)


def open_slice_files(path: str, files: list[str], channel: int | None) -> Volume:
    first = image_shape(files[0])
    for f in files[1:]:
        shape = image_shape(f)
        if shape != first:
            raise ShapeMismatchError(
                f"{f}: slice has shape {shape}, but {Path(files[0]).name} has {first}; "
                "all slices of a stack must have the same shape"
            )
    reader: Any = readers.SliceFolderReader(files)
    shape: tuple = (len(files), *first)
    if len(first) == 3:
        shape, reader = select_channel(files[0], shape, reader, channel)
    if len(shape) != 3:
        raise UnsupportedFormatError(f"{files[0]}: slices must be 2D images, got shape {first}")
    dtype = readers.read_2d_image(files[0]).dtype
    voxel_size = slice_voxel_size(files[0])
    return Volume(path, tuple(int(s) for s in shape), np.dtype(dtype), voxel_size, reader,  # type: ignore[arg-type]
                  chunks=(1, *shape[1:]), format="slices", check_nan=np.dtype(dtype).kind == "f")


def image_shape(path: str) -> tuple[int, ...]:
    """Shape of a 2D image from its header only."""
    try:
        if path.lower().endswith(TIFF_EXT):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return tuple(tif.series[0].shape)
        from PIL import Image

        with Image.open(path) as im:
            bands = len(im.getbands())
            return (im.height, im.width) if bands == 1 else (im.height, im.width, bands)
    except Exception as err:  # noqa: BLE001
        raise CorruptFileError(f"{path}: cannot read image header ({err})") from err


def slice_voxel_size(path: str):
    if path.lower().endswith(TIFF_EXT):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return imagej_voxel_size(tif)
    return None


# --- HDF5 -------------------------------------------------------------------------------


def list_hdf5_datasets(path: str) -> list[str]:
    import h5py

    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: names.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
    return names


def open_hdf5(path: str, inner: str, channel: int | None) -> Volume:
    import h5py

    try:
        datasets = list_hdf5_datasets(path)
    except OSError as err:
        raise CorruptFileError(f"{path}: not a readable HDF5 file ({err})") from err
    if not inner:
        if len(datasets) != 1:
            listing = ", ".join(datasets) if datasets else "none"
            raise AmbiguousSourceError(
                f"{path}: name the dataset as {path}:/path/to/dataset; datasets in the file: {listing}"
            )
        inner = datasets[0]
    with h5py.File(path, "r") as f:
        if inner not in f or not isinstance(f[inner], h5py.Dataset):
            raise AmbiguousSourceError(
                f"{path}: no dataset '{inner}'; datasets in the file: {', '.join(datasets) or 'none'}"
            )
        ds = f[inner]
        shape, dtype, chunks = tuple(ds.shape), ds.dtype, ds.chunks
        voxel_size = hdf5_voxel_size(dict(ds.attrs))
    reader: Any = readers.Hdf5Reader(path, inner)
    return finish_array_volume(f"{path}:{inner}", shape, dtype, voxel_size, reader, chunks, "hdf5", channel)


def finish_array_volume(name, shape, dtype, voxel_size, reader, chunks, fmt, channel) -> Volume:
    """Common tail of array formats: 2D → one slice, channel-last → pick, else must be 3D."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4 and shape[-1] <= 4:
        shape, reader = select_channel(name, shape, reader, channel)
        chunks = chunks[:-1] if chunks else None
    if len(shape) == 2:
        inner = reader
        reader = Lift2D(inner)
        shape, chunks = (1, *shape), ((1, *chunks) if chunks else None)
    if len(shape) != 3:
        raise UnsupportedFormatError(
            f"{name}: array has shape {shape}; emseg reads 2D or 3D grayscale (z, y, x)"
        )
    dtype = np.dtype(dtype)
    return Volume(name, shape, dtype, voxel_size, reader,  # type: ignore[arg-type]
                  chunks=tuple(int(c) for c in chunks) if chunks else None, format=fmt,
                  check_nan=dtype.kind == "f")


class Lift2D:
    """Presents a 2D array reader as a one-slice 3D reader."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, region):
        return np.asarray(self.inner(region[1:]))[None][region[0]]


# --- zarr, OME-Zarr, N5 ---------------------------------------------------------------


def is_zarr(p: Path) -> bool:
    return any((p / m).exists() for m in (".zarray", ".zgroup", "zarr.json"))


def is_n5(p: Path) -> bool:
    if p.suffix.lower() == ".n5":
        return True
    attrs = p / "attributes.json"
    if attrs.exists():
        try:
            return "dimensions" in json.loads(attrs.read_text()) or "n5" in json.loads(attrs.read_text())
        except (json.JSONDecodeError, OSError):
            return False
    return False


def open_zarr(path: str, inner: str, level: int | str, channel: int | None, backend: str) -> Volume:
    import zarr

    target = os.path.join(path, inner.strip("/")) if inner else path
    try:
        node = zarr.open(target, mode="r")
    except Exception as err:  # noqa: BLE001
        raise CorruptFileError(f"{target}: cannot open zarr ({err})") from err
    voxel_size = None
    if isinstance(node, zarr.Group):
        attrs = dict(node.attrs)
        if "multiscales" in attrs or "ome" in attrs:
            sub, voxel_size = ome_zarr_level(attrs, level, target)
            target = os.path.join(target, sub)
            node = zarr.open_array(target, mode="r")
        else:
            arrays = sorted(name for name, _ in node.arrays())
            groups = sorted(name for name, _ in node.groups())
            if len(arrays) == 1 and not groups:
                target = os.path.join(target, arrays[0])
                node = zarr.open_array(target, mode="r")
            else:
                listing = ", ".join(arrays + [g + "/" for g in groups]) or "none"
                raise AmbiguousSourceError(
                    f"{target}: zarr group holds several arrays; open one of them "
                    f"(e.g. {os.path.join(target, (arrays or groups or ['name'])[0])}); contents: {listing}"
                )
    if voxel_size is None:
        voxel_size = zarr_voxel_size(dict(node.attrs))
    use_ts = backend == "tensorstore" or (backend == "auto" and DEFAULT_ZARR_BACKEND == "tensorstore")
    reader: Any
    if use_ts and have_tensorstore():
        reader = readers.TensorstoreReader(target, "zarr3" if node.metadata.zarr_format == 3 else "zarr")
    else:
        reader = readers.ZarrReader(target)
    return finish_array_volume(target, node.shape, node.dtype, voxel_size, reader, node.chunks, "zarr", channel)


def have_tensorstore() -> bool:
    try:
        import tensorstore  # noqa: F401
    except ImportError:
        return False
    return True


def open_n5(path: str, inner: str) -> Volume:
    import tensorstore as ts

    target = os.path.join(path, inner.strip("/")) if inner else path
    try:
        store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": target}}, read=True, open=True).result()
    except Exception as err:  # noqa: BLE001
        raise CorruptFileError(f"{target}: cannot open N5 dataset ({readers.short_reason(err)})") from err
    attrs = json.loads((Path(target) / "attributes.json").read_text())
    store = store.T  # N5 order is (x, y, z); emseg's is (z, y, x)
    chunks = store.chunk_layout.read_chunk.shape
    return finish_array_volume(
        target, store.shape, store.dtype.numpy_dtype, n5_voxel_size(attrs),
        readers.TensorstoreReader(target, "n5"), chunks, "n5", None,
    )


# --- MRC --------------------------------------------------------------------------------


def open_mrc(path: str) -> Volume:
    import mrcfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
                if mrc.data is None:
                    raise CorruptFileError(f"{path}: MRC file has no data block (truncated?)")
                shape, dtype = mrc.data.shape, mrc.data.dtype
                voxel_size = mrc_voxel_size(mrc.voxel_size)
    except (ValueError, OSError) as err:
        raise CorruptFileError(f"{path}: not a readable MRC file ({err})") from err
    if len(shape) == 2:
        shape = (1, *shape)
    return Volume(path, tuple(int(s) for s in shape), np.dtype(dtype).newbyteorder("="),  # type: ignore[arg-type]
                  voxel_size, readers.MrcReader(path), chunks=(1, *shape[1:]), format="mrc",
                  check_nan=np.dtype(dtype).kind == "f")


def describe(volume: Volume) -> dict:
    """What ``emseg info`` prints, as a dict."""
    return {
        "path": volume.path,
        "format": volume.format,
        "shape (z, y, x)": volume.shape,
        "dtype": str(volume.dtype),
        "voxel size (nm)": volume.voxel_size,
        "chunks": volume.chunks,
        "size": human_bytes(volume.nbytes),
    }


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


__all__ = ["open_volume", "split_inner_path", "check_voxel_size", "describe"]
