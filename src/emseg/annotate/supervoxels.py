"""SLIC supervoxels on a (possibly downsampled) working grid and their adjacency graph."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def working_factor(shape: Sequence[int], max_slic_voxels: int) -> int:
    """Smallest integer downsampling factor that brings ``shape`` under ``max_slic_voxels``."""
    factor = 1
    while int(np.prod([-(-s // factor) for s in shape])) > max_slic_voxels:
        factor += 1
    return factor


def downsample_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Block mean by ``factor`` on every axis (edges padded by reflection)."""
    if factor == 1:
        return image.astype(np.float32, copy=False)
    pad = [(0, (-s) % factor) for s in image.shape]
    padded = np.pad(image.astype(np.float32, copy=False), pad, mode="edge")
    z, y, x = (s // factor for s in padded.shape)
    return padded.reshape(z, factor, y, factor, x, factor).mean(axis=(1, 3, 5))


def upsample_nearest(small: np.ndarray, shape: Sequence[int], factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of ``small`` by ``factor`` cropped to ``shape``."""
    if factor == 1:
        return small
    index = [np.arange(n) // factor for n in shape]
    return small[index[0][:, None, None], index[1][None, :, None], index[2][None, None, :]]


def slic_working_grid(
    image: np.ndarray,
    voxel_size: Sequence[float],
    supervoxel_nm: float,
    compactness: float,
    max_slic_voxels: int,
    max_num_iter: int = 5,
) -> tuple[np.ndarray, np.ndarray, int]:
    """SLIC on the working grid: ``(labels, downsampled image, factor)``, both arrays of the small grid.

    SLIC runs on a grid downsampled so that it has at most ``max_slic_voxels`` voxels
    (skimage's SLIC costs ~1 µs per voxel and iteration). ``voxel_size`` (nm, z y x) makes the
    supervoxels roughly ``supervoxel_nm`` wide in physical space on anisotropic data;
    ``compactness`` is relative to intensities scaled to 0..1.
    """
    from skimage.segmentation import slic

    factor = working_factor(image.shape, max_slic_voxels)
    small = downsample_mean(image, factor)
    spacing = np.asarray(voxel_size, dtype=np.float64) * factor
    n_segments = max(2, int(np.prod(small.shape) * np.prod(spacing) / supervoxel_nm**3))
    lo, hi = float(small.min()), float(small.max())
    scaled = (small - lo) / max(hi - lo, 1e-6)  # compactness is relative to intensities in 0..1
    labels = slic(scaled, n_segments=n_segments, compactness=compactness, channel_axis=None,
                  spacing=spacing / spacing.min(), max_num_iter=max_num_iter,
                  enforce_connectivity=False, start_label=0, sigma=0)
    labels = np.unique(labels, return_inverse=True)[1].reshape(small.shape).astype(np.int32)
    return labels, small, factor


def adjacency(labels: np.ndarray, voxel_size: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges between face-adjacent labels: ``(i, j, contact_area_nm2)`` with ``i < j``.

    Vectorised over the three axes; the contact area counts touching voxel faces times
    the face area (nm²) of that axis, so anisotropic voxels are weighted correctly.
    """
    n = int(labels.max()) + 1
    keys, areas = [], []
    vz, vy, vx = (float(v) for v in voxel_size)
    face_area = (vy * vx, vz * vx, vz * vy)
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)[:-1]
        b = np.moveaxis(labels, axis, 0)[1:]
        differ = a != b
        lo = np.minimum(a[differ], b[differ]).astype(np.int64)
        hi = np.maximum(a[differ], b[differ]).astype(np.int64)
        key, count = np.unique(lo * n + hi, return_counts=True)
        keys.append(key)
        areas.append(count * face_area[axis])
    key, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    area = np.bincount(inverse, weights=np.concatenate(areas))
    return (key // n).astype(np.int64), (key % n).astype(np.int64), area
