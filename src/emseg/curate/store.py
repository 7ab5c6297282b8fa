"""The patch store: one zarr v2 group with all patches and their table (no small files).

Layout (the contract read by pretraining)::

    PATCHES.zarr/                attrs {"emseg": {"kind": "patch_store", "patch_size": 224,
                                                  "complete": bool, "datasets": [names],
                                                  "done": {name: [row_start, row_stop]}, ...}}
      patches                    (N, 224, 224) uint8, chunks (64, 224, 224)
      table/<column>             1-D, length N: dataset int32, plane uint8, slice/y/x/height/width
                                 int32, hash uint64, exemplar int64, score float32, kept bool

Rows of a dataset are contiguous. A dataset is listed in ``done`` only once its rows, hashes,
exemplars and scores are all written, so an interrupted run truncates to the last done dataset
and carries on from there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emseg.errors import CorruptFileError, VolumeNotFoundError

PATCH = 224
CHUNK_PATCHES = 64
TABLE_CHUNK = 65536
COLUMNS: dict[str, str] = {
    "dataset": "int32",
    "plane": "uint8",
    "slice": "int32",
    "y": "int32",
    "x": "int32",
    "height": "int32",
    "width": "int32",
    "hash": "uint64",
    "exemplar": "int64",
    "score": "float32",
    "kept": "bool",
}
FILL = {"score": np.nan, "exemplar": -1}


class PatchStore:
    """Read/write access to a patch store (see the module docstring)."""

    def __init__(self, group, path: str) -> None:
        self.group = group
        self.path = path

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> PatchStore:
        """Open an existing store (``mode="r"`` or ``"r+"``)."""
        import zarr

        path = str(path)
        if not Path(path).exists():
            raise VolumeNotFoundError(f"{path}: no such patch store")
        try:
            group = zarr.open_group(path, mode=mode, zarr_format=2)
            meta = dict(group.attrs)["emseg"]
        except Exception as err:  # noqa: BLE001 - any zarr failure means "not a store"
            raise CorruptFileError(f"{path}: not an emseg patch store ({err})") from err
        if meta.get("kind") != "patch_store":
            raise CorruptFileError(f"{path}: zarr group is not an emseg patch store")
        return cls(group, path)

    @classmethod
    def create(cls, path: str | Path) -> PatchStore:
        """Create an empty store at ``path``."""
        import zarr

        path = str(path)
        group = zarr.open_group(path, mode="w", zarr_format=2)
        group.create_array("patches", shape=(0, PATCH, PATCH), chunks=(CHUNK_PATCHES, PATCH, PATCH), dtype="uint8",
                           fill_value=0)
        table = group.create_group("table")
        for name, dtype in COLUMNS.items():
            table.create_array(name, shape=(0,), chunks=(TABLE_CHUNK,), dtype=dtype, fill_value=FILL.get(name, 0))
        group.attrs["emseg"] = {"kind": "patch_store", "patch_size": PATCH, "complete": False, "datasets": [],
                                "done": {}, "sources": {}}
        return cls(group, path)

    # ---- metadata ------------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        return dict(self.group.attrs["emseg"])

    def update_meta(self, **changes) -> None:
        meta = self.meta
        meta.update(changes)
        self.group.attrs["emseg"] = meta

    @property
    def dataset_names(self) -> list[str]:
        return list(self.meta["datasets"])

    @property
    def done(self) -> dict[str, list[int]]:
        return dict(self.meta.get("done", {}))

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete", False))

    # ---- data ----------------------------------------------------------------------------
    @property
    def patches(self):
        return self.group["patches"]

    def column(self, name: str) -> np.ndarray:
        return self.group["table"][name][:]

    def __len__(self) -> int:
        return int(self.patches.shape[0])

    @property
    def table(self):
        """The table as a pandas DataFrame (one row per patch)."""
        import pandas as pd

        return pd.DataFrame({name: self.column(name) for name in COLUMNS})

    def kept_indices(self) -> np.ndarray:
        """Row indices of the kept patches (exemplar and informative)."""
        return np.flatnonzero(self.column("kept"))

    # ---- writing -------------------------------------------------------------------------
    def truncate(self, rows: int) -> None:
        """Drop every row from ``rows`` on (used to restart an interrupted dataset)."""
        self.patches.resize((rows, PATCH, PATCH))
        for name in COLUMNS:
            self.group["table"][name].resize((rows,))

    def append(self, patches: np.ndarray, columns: dict[str, np.ndarray]) -> tuple[int, int]:
        """Append patches and their table columns; returns the new rows' (start, stop)."""
        start = len(self)
        stop = start + len(patches)
        self.patches.resize((stop, PATCH, PATCH))
        self.patches[start:stop] = patches
        for name, dtype in COLUMNS.items():
            arr = self.group["table"][name]
            arr.resize((stop,))
            if name in columns:
                arr[start:stop] = np.asarray(columns[name]).astype(dtype)
        return start, stop

    def write_column(self, name: str, start: int, values: np.ndarray) -> None:
        self.group["table"][name][start:start + len(values)] = np.asarray(values).astype(COLUMNS[name])
