"""Synthetic EM-like volumes with ground truth, for tests, demos and sample data.

The geometry lives in nanometres, so anisotropic voxel sizes give the same cells sampled
differently. A volume holds cells (Voronoi regions) with dark plasma membranes, ellipsoidal
mitochondria with a dark double membrane and cristae stripes, small vesicles with dark
rims, a textured cytoplasm, then blur and shot noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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
    touching_pairs: list[tuple[int, int]] = field(default_factory=list)  #: instance ids placed in contact


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


CONTACT_NM = 24.0  #: how far a touching partner reaches into its neighbour's ellipsoid (nm)


def random_semi_axes(rng: np.random.Generator) -> np.ndarray:
    """Semi-axes (nm) of a mitochondrion: two short ones and a long one."""
    return np.array([rng.uniform(70, 130), rng.uniform(70, 130), rng.uniform(160, 450)])


@dataclass
class Ellipsoid:
    """One mitochondrion sampled on the voxel grid: its box and, inside the box, its frame."""

    centre: np.ndarray  #: nm
    semi: np.ndarray  #: semi-axes (nm) in its own frame
    rot: np.ndarray  #: columns: its axes in volume coordinates
    box: tuple[slice, ...]
    local: np.ndarray  #: (*box shape, 3) voxel-centre coordinates in its frame (nm)
    radius: np.ndarray  #: 1 on the surface
    inside: np.ndarray  #: radius <= 1 (and not given to an earlier neighbour, see `paint`)

    @classmethod
    def build(cls, centre, semi, rot, shape, voxel_size) -> Ellipsoid | None:
        """Sample it; None when it has (almost) nothing inside the volume."""
        reach = semi.max() + 20
        box = tuple(
            slice(max(0, int((c - reach) / v)), min(s, int(np.ceil((c + reach) / v)) + 1))
            for c, v, s in zip(centre, voxel_size, shape)
        )
        if any(b.stop - b.start < 2 for b in box):
            return None
        lz, ly, lx = grid_nm(shape, voxel_size, box)
        offsets = np.stack(np.broadcast_arrays(lz - centre[0], ly - centre[1], lx - centre[2]), -1)
        local = offsets.astype(np.float32) @ rot.astype(np.float32)  # coordinates in the mitochondrion's frame
        radius = np.sqrt(((local / semi) ** 2).sum(-1))
        inside = radius <= 1.0
        return cls(np.asarray(centre), semi, rot, box, local, radius, inside) if inside.any() else None

    def paint(self, instances: np.ndarray, intensity: np.ndarray, label: int) -> None:
        """Write ``label`` and the EM appearance (double membrane, cristae) of its voxels."""
        instances[self.box][self.inside] = label
        depth = (1.0 - self.radius) * self.semi.min()  # approx. nm from the outer surface
        cristae = np.cos(self.local[..., 2] * 2 * np.pi / 70.0) > 0.55
        region = intensity[self.box]
        mito_value = 0.46 + 0.04 * region
        mito_value = np.where(cristae & (depth > 22), 0.30, mito_value)
        envelope = (depth < 7) | ((depth > 11) & (depth < 17))  # outer + inner membrane
        mito_value = np.where(envelope, 0.18, mito_value)
        region[self.inside] = mito_value[self.inside]


def surface_reach(semi: np.ndarray, rot: np.ndarray, direction: np.ndarray) -> float:
    """Distance (nm) from an ellipsoid's centre to its surface along the unit vector ``direction``."""
    return float(1.0 / np.linalg.norm((direction @ rot) / semi))


def touching_partner(first: Ellipsoid, instances: np.ndarray, membrane_gap: np.ndarray, rng: np.random.Generator,
                     shape, voxel_size, tries: int = 8) -> Ellipsoid | None:
    """A second mitochondrion in contact with ``first``: its centre lies along a random
    direction so that the two surfaces overlap by `CONTACT_NM` there; the overlap stays with
    ``first``. It must keep clear of the plasma membrane and of every other mitochondrion."""
    label = instances[first.box][first.inside][0]
    for _ in range(tries):
        semi, rot = random_semi_axes(rng), random_rotation(rng)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        distance = surface_reach(first.semi, first.rot, direction) + surface_reach(semi, rot, -direction) - CONTACT_NM
        partner = Ellipsoid.build(first.centre + distance * direction, semi, rot, shape, voxel_size)
        if partner is None:
            continue
        owner = instances[partner.box][partner.inside]
        if not (owner == label).any():
            continue  # the contact lies outside the volume
        if ((owner > 0) & (owner != label)).any():
            continue  # it would cut into a third mitochondrion
        partner.inside &= instances[partner.box] == 0
        if not partner.inside.any() or (membrane_gap[partner.box][partner.inside] < 25).any():
            continue
        return partner
    return None


def make_volume(
    shape: Sequence[int] = (64, 128, 128),
    voxel_size: Sequence[float] | float = (8.0, 8.0, 8.0),
    seed: int = 0,
    cell_size_nm: float = 900.0,
    mito_density: float = 1.0,
    noise: float = 1.0,
    touching: float = 0.0,
) -> SynthVolume:
    """Make an EM-like uint8 volume with mitochondria and membrane labels.

    shape: (z, y, x) voxels. voxel_size: nm (z, y, x). seed: all randomness.
    cell_size_nm: typical cell diameter. mito_density: scales the number of mitochondria.
    noise: scales the shot noise (0 = none). touching: chance in [0, 1] that a placed
    mitochondrion gets a partner in contact with it (`touching_partner`; the pair is one
    object in ``mito`` and two in ``mito_instances``); 0 (default) draws nothing extra, so
    the volume is the same as without the option.
    """
    if not 0.0 <= touching <= 1.0:
        raise ValueError(f"make_volume: touching must be in [0, 1], got {touching}")
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
    pairs: list[tuple[int, int]] = []
    n_mito = int(mito_density * np.prod(extent) / 5.0e7)
    placed, tries = 0, 0
    while placed < n_mito and tries < 8 * max(n_mito, 1):
        tries += 1
        semi = random_semi_axes(rng)
        rot = random_rotation(rng)
        centre = rng.uniform(0, 1, 3) * extent
        c_vox = tuple(min(s - 1, int(c / v)) for c, v, s in zip(centre, voxel_size, shape))
        if mito_instances[c_vox] or membrane_gap[c_vox] < semi.min() + 25:
            continue  # cheap rejection before building the ellipsoid
        body = Ellipsoid.build(centre, semi, rot, shape, voxel_size)
        if body is None or mito_instances[body.box][body.inside].any():
            continue
        if (membrane_gap[body.box][body.inside] < 25).any():  # keep clear of the plasma membrane
            continue
        placed += 1
        body.paint(mito_instances, intensity, placed)
        if touching > 0 and placed < n_mito and rng.random() < touching:
            partner = touching_partner(body, mito_instances, membrane_gap, rng, shape, voxel_size)
            if partner is not None:
                placed += 1
                partner.paint(mito_instances, intensity, placed)
                pairs.append((placed - 1, placed))

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
        touching_pairs=pairs,
    )
