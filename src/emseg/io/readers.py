"""Format-specific readers behind `Volume`. Each is a small picklable callable
``reader(region) -> ndarray`` that opens its file lazily, once per process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emseg.errors import CorruptFileError
from emseg.io.volume import Region, format_region


def short_reason(err: BaseException) -> str:
    """A library's error on one line, without tensorstore's spec dump."""
    text = str(err).split(" [tensorstore_spec=")[0].strip()
    return text.splitlines()[0] if text else type(err).__name__


def corrupt(path: str, what: str, region: Region, err: BaseException) -> CorruptFileError:
    """The one-line error for a chunk that cannot be read or decoded."""
    return CorruptFileError(f"{path}: cannot read {what} at z, y, x {format_region(region)}; "
                            f"a chunk is corrupt or truncated ({short_reason(err)})")


class LazyHandle:
    """Base for readers that hold an open file handle: reopened after pickling."""

    _handle: Any = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def open(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def handle(self) -> Any:
        if self._handle is None:
            self._handle = self.open()
        return self._handle


class ChannelReader:
    """Selects one channel of a channel-last array reader."""

    def __init__(self, inner: Any, channel: int) -> None:
        self.inner, self.channel = inner, channel

    def __call__(self, region: Region) -> np.ndarray:
        return self.inner(region + (slice(self.channel, self.channel + 1),))[..., 0]


class TiffReader(LazyHandle):
    """Multipage TIFF via tifffile's zarr view: reads only the strips/tiles of a region."""

    def __init__(self, path: str, series: int = 0, squeeze_2d: bool = False) -> None:
        self.path, self.series, self.squeeze_2d = path, series, squeeze_2d

    def open(self) -> Any:
        import tifffile
        import zarr

        store = tifffile.imread(self.path, aszarr=True, series=self.series)
        return zarr.open(store, mode="r")

    def __call__(self, region: Region) -> np.ndarray:
        try:
            if self.squeeze_2d:  # a 2D image presented as one z-slice
                return np.asarray(self.handle[region[1:]])[None][region[0]]
            return np.asarray(self.handle[region])
        except (ValueError, OSError, KeyError) as err:
            raise CorruptFileError(f"{self.path}: cannot read TIFF data ({err})") from err


class SliceFolderReader:
    """A folder of 2D images, one per z, in natural sort order."""

    def __init__(self, files: list[str]) -> None:
        self.files = files

    def __call__(self, region: Region) -> np.ndarray:
        zs, ys, xs = region
        planes = [read_2d_image(self.files[z])[ys, xs] for z in range(zs.start, zs.stop)]
        if not planes:
            return np.zeros((0, ys.stop - ys.start, xs.stop - xs.start))
        return np.stack(planes)


def read_2d_image(path: str) -> np.ndarray:
    """Read one 2D slice image (TIFF or PNG/JPEG)."""
    try:
        if Path(path).suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im)
    except Exception as err:  # noqa: BLE001 - any decoder failure is a corrupt file
        raise CorruptFileError(f"{path}: cannot read image ({err})") from err


class Hdf5Reader(LazyHandle):
    """One dataset of an HDF5 file."""

    def __init__(self, path: str, dataset: str) -> None:
        self.path, self.dataset = path, dataset

    def open(self) -> Any:
        import h5py

        return h5py.File(self.path, "r")[self.dataset]

    def __call__(self, region: Region) -> np.ndarray:
        try:
            return self.handle[region]
        except OSError as err:  # h5py: a chunk's filter (gzip, ...) failed
            raise corrupt(self.path, f"HDF5 dataset {self.dataset}", region, err) from err


class ZarrReader(LazyHandle):
    """A zarr v2/v3 array read with zarr-python."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self) -> Any:
        import zarr

        return zarr.open_array(self.path, mode="r")

    def __call__(self, region: Region) -> np.ndarray:
        try:
            return np.asarray(self.handle[region])
        except (ValueError, OSError, RuntimeError) as err:  # numcodecs' decoders raise these
            raise corrupt(self.path, "zarr array", region, err) from err


class TensorstoreReader(LazyHandle):
    """A zarr v2/v3 or N5 array read with tensorstore (fast, concurrent chunk decoding)."""

    def __init__(self, path: str, driver: str) -> None:
        self.path, self.driver = path, driver

    def open(self) -> Any:
        import tensorstore as ts

        spec = {"driver": self.driver, "kvstore": {"driver": "file", "path": self.path}}
        store = ts.open(spec, read=True, open=True).result()
        # N5 lists dimensions x fastest (x, y, z); present them as (z, y, x) like z5py does
        return store.T if self.driver == "n5" else store

    def __call__(self, region: Region) -> np.ndarray:
        try:
            return self.handle[region].read().result()
        except ValueError as err:  # tensorstore reports a bad chunk as ValueError naming its file
            raise corrupt(self.path, f"{self.driver} array", region, err) from err


class MrcReader(LazyHandle):
    """An MRC/REC file, memory-mapped."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self) -> Any:
        import mrcfile

        return mrcfile.mmap(self.path, mode="r", permissive=True).data

    def __call__(self, region: Region) -> np.ndarray:
        data = self.handle
        if data.ndim == 2:
            data = data[None]
        return np.array(data[region])
