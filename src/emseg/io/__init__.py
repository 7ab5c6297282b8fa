"""Reading every vEM volume format lazily, and writing OME-Zarr."""

from emseg.io.normalize import to_uint8
from emseg.io.ome_zarr import write_ome_zarr
from emseg.io.open import describe, open_volume
from emseg.io.volume import MissingVoxelSizeWarning, Volume, array_volume, check_voxel_size

__all__ = [
    "MissingVoxelSizeWarning",
    "Volume",
    "array_volume",
    "check_voxel_size",
    "describe",
    "open_volume",
    "to_uint8",
    "write_ome_zarr",
]
