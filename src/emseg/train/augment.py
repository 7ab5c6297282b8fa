"""Joint spatial and intensity augmentation of one training block (numpy, pickle-safe).

Spatial: rotation about z and elastic deformation (random displacements on a coarse grid of
control points, smoothly interpolated) in one ``map_coordinates`` pass — raw linear, labels
and masks nearest — then mirrors and transposes (only between axes of equal voxel size).
Intensity: scale and shift (±15 % by default), optional Gaussian noise and blur.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from emseg.models.normalization import unit_scale
from emseg.train.config import Augment


def displacement_field(shape, spacing: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(3, *shape) smooth random displacements: N(0, sigma) at control points every ``spacing``
    voxels, interpolated trilinearly between them."""
    import torch
    import torch.nn.functional as F

    coarse = [max(2, math.ceil(n / spacing) + 1) for n in shape]
    field = torch.from_numpy(rng.normal(0.0, sigma, size=(1, 3, *coarse)).astype(np.float32))
    return F.interpolate(field, size=tuple(shape), mode="trilinear", align_corners=True)[0].numpy()


def warp_coordinates(shape, margin, cfg: Augment, rotate: bool, rng: np.random.Generator) -> np.ndarray:
    """Sampling coordinates (in the enlarged read box) for an output grid of ``shape``."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) - (n - 1) / 2 for n in shape], indexing="ij"))
    if rotate:
        theta = rng.uniform(0, 2 * np.pi)
        c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
        y, x = grid[1].copy(), grid[2].copy()
        grid[1], grid[2] = c * y - s * x, s * y + c * x
    grid += displacement_field(shape, cfg.control_point_spacing, cfg.jitter_sigma, rng)
    for axis, n in enumerate(shape):
        grid[axis] += (n - 1) / 2 + margin[axis]
    return grid


def augment_block(source, out_start, input_shape, output_shape, cfg: Augment, rng: np.random.Generator):
    """Read and augment one block; returns unit-scaled float raw (input_shape), target and
    mask (output_shape)."""
    context = [(i - o) // 2 for i, o in zip(input_shape, output_shape)]
    in_start = [s - c for s, c in zip(out_start, context)]
    vz, vy, vx = source.voxel_size
    elastic = rng.random() < cfg.elastic_probability
    rotate = elastic and cfg.rotate and math.isclose(vy, vx)
    margin = [0, 0, 0]
    if elastic:
        jitter = int(math.ceil(4 * cfg.jitter_sigma))
        extra = int(math.ceil(max(input_shape[1:]) * (math.sqrt(2) - 1) / 2)) if rotate else 0
        margin = [jitter, jitter + extra, jitter + extra]
    read_start = tuple(s - m for s, m in zip(in_start, margin))
    read_shape = tuple(n + 2 * m for n, m in zip(input_shape, margin))
    raw = unit_scale(source.raw.read(read_start, read_shape))
    target = source.target.read(read_start, read_shape)
    mask = (source.sample_mask.read(read_start, read_shape) > 0).astype(np.uint8) \
        if source.sample_mask is not None else np.ones(read_shape, np.uint8)
    crop = tuple(slice(c, c + o) for c, o in zip(context, output_shape))
    if elastic:
        coords = warp_coordinates(input_shape, margin, cfg, rotate, rng)
        raw = ndimage.map_coordinates(raw, coords, order=1, mode="mirror", output=np.float32)
        out_coords = coords[(slice(None), *crop)]  # target and mask are only needed on the output block
        target = ndimage.map_coordinates(target, out_coords, order=0, mode="mirror")
        mask = ndimage.map_coordinates(mask, out_coords, order=0, mode="constant", cval=0)
    else:
        target, mask = target[crop], mask[crop]
    if cfg.mirror:
        for axis in range(3):
            if rng.random() < 0.5:
                raw, target, mask = (np.flip(a, axis) for a in (raw, target, mask))
    if cfg.transpose:
        raw, target, mask = random_transpose((raw, target, mask), source.voxel_size, rng)
    raw = raw * np.float32(1 + rng.uniform(-cfg.intensity_scale, cfg.intensity_scale)) \
        + np.float32(rng.uniform(-cfg.intensity_shift, cfg.intensity_shift))
    if rng.random() < cfg.blur_probability:
        raw = ndimage.gaussian_filter(raw, rng.uniform(0.5, 1.5))
    if rng.random() < cfg.noise_probability:
        raw = raw + rng.normal(0, rng.uniform(0.01, 0.05), raw.shape).astype(np.float32)
    return raw.astype(np.float32, copy=False), target, mask


def random_transpose(arrays, voxel_size, rng: np.random.Generator):
    """Permute the axes that have equal voxel sizes and equal lengths in every array
    (with three axes there is at most one such group)."""

    def equivalent(a: int, b: int) -> bool:
        return math.isclose(voxel_size[a], voxel_size[b]) and all(x.shape[a] == x.shape[b] for x in arrays)

    group = [a for a in range(3) if any(equivalent(a, b) for b in range(3) if b != a)]
    if len(group) < 2:
        return arrays
    order = list(range(3))
    for a, b in zip(group, rng.permutation(group)):
        order[a] = int(b)
    return tuple(np.transpose(x, order) for x in arrays)
