"""Boundary-exclusion ("metric") masks, blockwise over label volumes of any size.

The per-block work is `emseg.masks.boundary_exclusion_mask`; ``map_overlap`` gives each
block ``width`` voxels of context, which is all that a ball of radius ``width`` sees, so
the result equals the whole-volume mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emseg.errors import InvalidValuesError
from emseg.masks import boundary_exclusion_mask
from emseg.prepare.common import Source, as_volume, check_integer, check_same_shape, map_with_halo, to_dask

# ASEM's exclusion widths in voxels, per organelle
ORGANELLE_WIDTHS: dict[str, int] = {"mito": 4, "er": 2, "golgi": 2, "nuclear_pores": 1, "coated_pits": 2}


def exclusion_width(width: int | None = None, organelle: str | None = None) -> int:
    """The width to use: explicit, else the organelle's default; clear errors otherwise."""
    if width is None:
        if organelle is None:
            raise InvalidValuesError("give an exclusion width (--width N) or an organelle (--organelle mito)")
        if organelle not in ORGANELLE_WIDTHS:
            raise InvalidValuesError(f"unknown organelle {organelle!r}; known: {', '.join(ORGANELLE_WIDTHS)}")
        return ORGANELLE_WIDTHS[organelle]
    if int(width) != width or width < 0:
        raise InvalidValuesError(f"exclusion width must be a non-negative integer number of voxels, got {width}")
    return int(width)


def exclusion_mask(
    labels: Source,
    width: int,
    image: Source | None = None,
    voxel_size: Sequence[float] | None = None,
    chunks: int | Sequence[int] | None = None,
):
    """Lazy uint8 metric mask (1 = scored) of a label volume; ``image`` (optional) is the
    raw volume the labels belong to, checked for the same shape."""
    width = exclusion_width(width)
    volume = as_volume(labels, voxel_size, name="<labels>")
    check_integer(volume, "labels")
    if image is not None:
        check_same_shape(volume, as_volume(image, name="<image>"))
    data = to_dask(volume, chunks)
    return map_with_halo(data, boundary_exclusion_mask, width, np.uint8, width=width, name=str(volume.path))
