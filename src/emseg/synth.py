"""Synthetic EM-like volumes with ground truth, for tests, demos and sample data.

The geometry lives in nanometres, so anisotropic voxel sizes give the same cells sampled
differently. A volume holds cells (Voronoi regions) with dark plasma membranes, ellipsoidal
mitochondria with a dark double membrane and cristae stripes, small vesicles with dark
rims, a textured cytoplasm, then blur and shot noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from emseg.io.volume import VoxelSize, check_voxel_size


@dataclass
class SynthVolume:
    """A synthetic volume and its ground truth, all (z, y, x)."""

    raw: np.ndarray  #: uint8 EM-like intensities (membranes dark)
    mito: np.ndarray  #: uint8 0/1 mitochondria (including their membranes)
    mito_instances: np.ndarray  #: uint32 one id per mitochondrion
    membranes: np.ndarray  #: uint8 0/1 plasma membranes
    voxel_size: VoxelSize


def grid_nm(shape: Sequence[int], voxel_size: VoxelSize, box: tuple[slice, ...] | None = None):
    """Voxel-centre coordinates (nm) of the box, as three broadcastable arrays."""
    box = box or tuple(slice(0, s) for s in shape)
    return [
        ((np.arange(b.start, b.stop) + 0.5) * v).reshape([-1 if i == a else 1 for i in range(3)])
        for a, (b, v) in enumerate(zip(box, voxel_size))
    ]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ])


def smooth_noise(shape: Sequence[int], sigma_vox: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma_vox)
    return noise / (noise.std() + 1e-6)


def make_volume(
    shape: Sequence[int] = (64, 128, 128),
    voxel_size: Sequence[float] | float = (8.0, 8.0, 8.0),
    seed: int = 0,
    cell_size_nm: float = 900.0,
    mito_density: float = 1.0,
    noise: float = 1.0,
) -> SynthVolume:
    """Make an EM-like uint8 volume with mitochondria and membrane labels.

    shape: (z, y, x) voxels. voxel_size: nm (z, y, x). seed: all randomness.
    cell_size_nm: typical cell diameter. mito_density: scales the number of mitochondria.
    noise: scales the shot noise (0 = none).
    """
    voxel_size = check_voxel_size(voxel_size, "make_volume")
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(seed)
    extent = np.array(shape) * np.array(voxel_size)
    zz, yy, xx = grid_nm(shape, voxel_size)

    # cells: Voronoi regions of jittered seeds; membranes where the two nearest seeds tie
    n_cells = max(2, int(np.prod(extent) / cell_size_nm**3 * 1.5))
    seeds = rng.uniform(-0.1, 1.1, size=(n_cells, 3)) * extent
    d1 = np.full(shape, np.inf, np.float32)
    d2 = np.full(shape, np.inf, np.float32)
    owner = np.zeros(shape, np.int32)
    for i, (sz, sy, sx) in enumerate(seeds):
        d = np.sqrt((zz - sz) ** 2 + (yy - sy) ** 2 + (xx - sx) ** 2).astype(np.float32)
        closer = d < d1
        d2 = np.where(closer, d1, np.minimum(d2, d))
        owner = np.where(closer, i, owner)
        d1 = np.where(closer, d, d1)
    membrane_gap = (d2 - d1) / 2  # distance to the Voronoi face, in nm
    membranes = membrane_gap < 9.0

    intensity = 0.62 + 0.05 * smooth_noise(shape, [30.0 / v for v in voxel_size], rng)
    intensity += 0.03 * smooth_noise(shape, [6.0 / v for v in voxel_size], rng)
    intensity = np.where(membranes, 0.22, intensity)

    mito_instances = np.zeros(shape, np.uint32)
    n_mito = int(mito_density * np.prod(extent) / 5.0e7)
    placed, tries = 0, 0
    while placed < n_mito and tries < 8 * max(n_mito, 1):
        tries += 1
        semi = np.array([rng.uniform(70, 130), rng.uniform(70, 130), rng.uniform(160, 450)])
        rot = random_rotation(rng)
        centre = rng.uniform(0, 1, 3) * extent
        c_vox = tuple(min(s - 1, int(c / v)) for c, v, s in zip(centre, voxel_size, shape))
        if mito_instances[c_vox] or membrane_gap[c_vox] < semi.min() + 25:
            continue  # cheap rejection before building the ellipsoid
        reach = semi.max() + 20
        box = tuple(
            slice(max(0, int((c - reach) / v)), min(s, int(np.ceil((c + reach) / v)) + 1))
            for c, v, s in zip(centre, voxel_size, shape)
        )
        if any(b.stop - b.start < 2 for b in box):
            continue
        lz, ly, lx = grid_nm(shape, voxel_size, box)
        offsets = np.stack(np.broadcast_arrays(lz - centre[0], ly - centre[1], lx - centre[2]), -1)
        local = offsets.astype(np.float32) @ rot.astype(np.float32)  # coordinates in the mitochondrion's frame
        radius = np.sqrt(((local / semi) ** 2).sum(-1))
        inside = radius <= 1.0
        if not inside.any() or mito_instances[box][inside].any():
            continue
        if (membrane_gap[box][inside] < 25).any():  # keep clear of the plasma membrane
            continue
        placed += 1
        mito_instances[box][inside] = placed
        depth = (1.0 - radius) * semi.min()  # approx. nm from the outer surface
        cristae = np.cos(local[..., 2] * 2 * np.pi / 70.0) > 0.55
        region = intensity[box]
        mito_value = 0.46 + 0.04 * region
        mito_value = np.where(cristae & (depth > 22), 0.30, mito_value)
        envelope = (depth < 7) | ((depth > 11) & (depth < 17))  # outer + inner membrane
        mito_value = np.where(envelope, 0.18, mito_value)
        region[inside] = mito_value[inside]

    n_ves = int(np.prod(extent) / 4.0e6)
    for _ in range(n_ves):
        r = rng.uniform(18, 35)
        centre = rng.uniform(0, 1, 3) * extent
        box = tuple(
            slice(max(0, int((c - r - 6) / v)), min(s, int(np.ceil((c + r + 6) / v)) + 1))
            for c, v, s in zip(centre, voxel_size, shape)
        )
        if any(b.stop - b.start < 1 for b in box):
            continue
        lz, ly, lx = grid_nm(shape, voxel_size, box)
        if mito_instances[tuple(min(s - 1, int(c / v)) for c, v, s in zip(centre, voxel_size, shape))]:
            continue
        d = np.sqrt((lz - centre[0]) ** 2 + (ly - centre[1]) ** 2 + (lx - centre[2]) ** 2)
        free = (mito_instances[box] == 0) & ~membranes[box]
        rim = (np.abs(d - r) < 5) & free
        lumen = (d < r - 5) & free
        intensity[box][rim] = 0.3
        intensity[box][lumen] = 0.7

    blurred = ndimage.gaussian_filter(intensity, [4.0 / v for v in voxel_size])
    photons = 60.0 / max(noise, 1e-6) ** 2
    noisy = rng.poisson(np.clip(blurred, 0, 1) * photons) / photons if noise > 0 else blurred
    raw = np.clip(noisy * 255, 0, 255).astype(np.uint8)
    return SynthVolume(
        raw=raw,
        mito=(mito_instances > 0).astype(np.uint8),
        mito_instances=mito_instances,
        membranes=membranes.astype(np.uint8),
        voxel_size=voxel_size,
    )
