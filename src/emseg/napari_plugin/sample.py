"""File > Open Sample: a small synthetic EM volume with its mitochondria ground truth."""

from __future__ import annotations

SAMPLE_SHAPE = (64, 128, 128)
SAMPLE_VOXEL_SIZE = (5.0, 5.0, 5.0)  # the bundled mito model's voxel size


def synthetic_em(shape=SAMPLE_SHAPE, voxel_size=SAMPLE_VOXEL_SIZE, seed: int = 0, mito_density: float = 2.0) -> list[tuple]:
    """Layer data tuples: the raw EM image and its mitochondria instances (world units: nm)."""
    from emseg.synth import make_volume

    volume = make_volume(shape, voxel_size, seed=seed, mito_density=mito_density)
    scale = tuple(float(v) for v in volume.voxel_size)
    return [
        (volume.raw, {"name": "synthetic EM", "scale": scale, "metadata": {"voxel_size": scale}}, "image"),
        (volume.mito_instances, {"name": "mito ground truth", "scale": scale, "opacity": 0.4,
                                 "visible": False}, "labels"),
    ]
