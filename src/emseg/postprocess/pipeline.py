"""`postprocess`: a probability map → OME-Zarr instance labels, blockwise through Dask (class maps: `classes`)."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, Field, field_validator

from emseg.errors import ShapeMismatchError

OUT_CHUNK = 64  # zarr chunk edge of written labels; processing blocks are multiples of it


class PostprocessConfig(BaseModel):
    """Settings of one post-processing run (saved in the output's metadata)."""

    threshold: Optional[float] = Field(
        None, description="probability threshold in [0, 1]; None: the one stored with the model that made "
                          "the map (chosen by validation F1 when it was trained with `threshold: auto`), else 0.5")
    connectivity: int = Field(26, description="6, 18 or 26")
    min_size_nm3: float = Field(0.0, ge=0, description="drop objects smaller than this (nm³)")
    fill_holes: bool = False
    opening_vox: int = Field(0, ge=0)
    closing_vox: int = Field(0, ge=0)
    block: tuple[int, int, int] = (128, 256, 256)
    instances: Literal["components", "watershed"] = Field(
        "components", description="components: connected components of the mask; watershed: seeded watershed "
                                  "of its distance transform (touching objects split), blockwise with a halo")
    h_nm: float = Field(20.0, gt=0, description="watershed: a seed is a maximum of the distance to the background "
                                                "with a dynamic of at least this (nm)")
    seed_distance_nm: float = Field(0.0, ge=0, description="watershed: seeds of one object closer than this (nm) "
                                                           "are merged; 0: off")
    halo_nm: float = Field(400.0, gt=0, description="watershed: context read around each block (nm); objects "
                                                    "shorter than this along every axis equal a whole-volume run")
    input: Literal["auto", "probability", "labels"] = Field(
        "auto", description="auto: floats and emseg uint8 images are probabilities, other integers labels")

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: float | None) -> float | None:
        from emseg.postprocess.ops import check_threshold

        return None if v is None else check_threshold(v)

    @field_validator("connectivity")
    @classmethod
    def _connectivity(cls, v: int) -> int:
        from emseg.postprocess.components import check_connectivity

        return check_connectivity(v)


def processing_chunks(shape: Sequence[int], block: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(processing block, zarr chunk): the block is a multiple of the chunk so that parallel
    writes never share a chunk."""
    out_chunks = tuple(max(1, min(OUT_CHUNK, int(b), int(s))) for b, s in zip(block, shape))
    blocks = tuple(min(int(s), max(c, (int(b) // c) * c)) for b, c, s in zip(block, out_chunks, shape))
    return blocks, out_chunks


def open_input(source, voxel_size=None):
    from emseg.io import Volume, array_volume, open_volume

    if isinstance(source, Volume):
        return source.with_voxel_size(voxel_size) if voxel_size else source
    if isinstance(source, np.ndarray):
        return array_volume(source, voxel_size or (1.0, 1.0, 1.0))
    return open_volume(str(source), voxel_size)


def min_size_voxels(min_size_nm3: float, voxel_size: Sequence[float]) -> int:
    return int(math.ceil(min_size_nm3 / float(np.prod(voxel_size)) - 1e-9)) if min_size_nm3 > 0 else 0


def instance_labels(mask, config: PostprocessConfig, voxel_size: Sequence[float], progress: bool = False,
                    workdir: str | os.PathLike | None = None):
    """Lazy instance labels of a boolean dask array after opening/closing, hole filling,
    connected components or the seeded watershed, and the size filter. Returns (labels,
    number of objects). ``workdir``: where the watershed keeps its blocks' labels between its
    two passes (must outlive the labels; None: it segments every block twice)."""
    from emseg.postprocess.components import connected_components
    from emseg.postprocess.ops import fill_holes, open_close

    mask = open_close(mask, config.opening_vox, config.closing_vox)
    if config.fill_holes:
        mask = fill_holes(mask, config.connectivity, progress)
    min_size_vox = min_size_voxels(config.min_size_nm3, voxel_size)
    if config.instances == "watershed":
        from emseg.postprocess.watershed import DistanceSeeds, halo_voxels, watershed_instances

        seeds = DistanceSeeds(tuple(float(v) for v in voxel_size), config.h_nm, config.seed_distance_nm,
                              config.connectivity)
        return watershed_instances(mask, seeds, halo_voxels(config.halo_nm, voxel_size), config.connectivity,
                                   min_size_vox, progress, workdir=workdir)
    return connected_components(mask, config.connectivity, min_size_vox, progress)


def postprocess(
    source,
    output: str | os.PathLike,
    config: PostprocessConfig | None = None,
    voxel_size: Sequence[float] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    levels: int | None = 1,
    allow_incomplete: bool = False,
) -> dict:
    """Threshold a probability map (float, or uint8/uint16 scaled to [0, 1]) or take the
    foreground of a label volume, then write instance labels (uint32, uint64 if needed).
    An incomplete prediction is refused unless ``allow_incomplete``."""
    from emseg.io import write_ome_zarr
    from emseg.postprocess.ops import foreground, threshold_mask

    config = config or PostprocessConfig()
    volume = open_input(source, voxel_size)
    require_complete(volume, allow_incomplete)
    if config.threshold is None:
        config = config.model_copy(update={"threshold": model_threshold(volume)})
    blocks, out_chunks = processing_chunks(volume.shape, config.block)
    data = volume.to_dask(blocks)
    probability = is_probability(volume) if config.input == "auto" else config.input == "probability"
    mask = threshold_mask(data, config.threshold) if probability else foreground(data)
    with tempfile.TemporaryDirectory(prefix="emseg-postprocess-") as workdir:
        labels, n = instance_labels(mask, config, volume.voxel_size, progress, workdir)
        write_ome_zarr(labels, output, volume.voxel_size, chunks=out_chunks, levels=levels, kind="labels",
                       overwrite=overwrite,
                       progress=progress, attrs={"postprocess": config.model_dump(mode="json"), "objects": n})
    return {"output": str(output), "objects": n, "shape": volume.shape, "voxel_size": volume.voxel_size,
            "dtype": str(labels.dtype)}


def is_probability(volume) -> bool:
    """Float volumes are probabilities; uint8 ones (0..255) only when emseg wrote them as an
    image or as probabilities (`emseg predict` output); every other integer volume, e.g. a 0/1 mask TIFF, is a label
    volume (foreground = non-zero)."""
    if np.dtype(volume.dtype).kind == "f":
        return True
    return np.dtype(volume.dtype) == np.uint8 and stored_kind(volume) in ("image", "probabilities")


def stored_attrs(volume) -> dict:
    """The ``emseg`` attributes that emseg's OME-Zarr writer stored beside the array ({} if none)."""
    import json

    group = Path(str(volume.path)).parent
    for name, inner in ((".zattrs", lambda a: a), ("zarr.json", lambda a: a.get("attributes", {}))):
        try:
            return dict(inner(json.loads((group / name).read_text())).get("emseg", {}))
        except (OSError, ValueError, AttributeError):
            continue
    return {}


def require_complete(volume, allow_incomplete: bool = False) -> None:
    """Refuse an emseg output marked incomplete (a killed or failed `emseg predict`): its
    missing blocks read as zeros. With ``allow_incomplete`` only warn."""
    import warnings

    from emseg.blocks import Ledger
    from emseg.errors import IncompleteInputError

    if stored_attrs(volume).get("complete", True) is not False:
        return
    group = Path(str(volume.path)).parent
    what = f"{group}: incomplete {stored_kind(volume) or 'output'} ({len(Ledger(group).done())} blocks done)"
    if allow_incomplete:
        warnings.warn(f"{what}; used as it is (--allow-incomplete): missing blocks read as zeros", stacklevel=2)
        return
    raise IncompleteInputError(f"{what}: its run was killed or failed; run the same command again to finish it, "
                               "or pass --allow-incomplete to use it as it is")


def stored_kind(volume) -> str:
    """``kind`` that emseg's OME-Zarr writer stored beside the array ("" if none)."""
    return str(stored_attrs(volume).get("kind", ""))


def stored_model_threshold(source) -> float | None:
    """The threshold stored with the model that predicted ``source`` (chosen by validation F1
    when it was trained with ``threshold: auto``), None if there is none."""
    threshold = stored_attrs(open_input(source)).get("model", {}).get("threshold")
    return float(threshold) if isinstance(threshold, (int, float)) else None


def model_threshold(source, default: float = 0.5) -> float:
    """`stored_model_threshold`, else ``default``."""
    threshold = stored_model_threshold(source)
    return default if threshold is None else threshold


def check_same_grid(reference, other, role: str, reference_role: str) -> None:
    """Same shape and voxel size, or an error that names both files and both values."""
    from emseg.errors import InvalidVoxelSizeError

    if tuple(other.shape) != tuple(reference.shape):
        raise ShapeMismatchError(f"{role} {other.path} has shape {tuple(other.shape)} but {reference_role} "
                                 f"{reference.path} has shape {tuple(reference.shape)}")
    if not np.allclose(other.voxel_size, reference.voxel_size, rtol=1e-3):
        raise InvalidVoxelSizeError(f"{role} {other.path} has voxel size {other.voxel_size} nm but {reference_role} "
                                    f"{reference.path} has {reference.voxel_size} nm")


def as_instances(volume, chunks, workdir: str | os.PathLike, mask=None, connectivity: int = 26,
                 progress: bool = False, name: str = "instances"):
    """An instance label Volume: ``volume`` itself when it holds instance ids (max > 1), else
    connected components of ``mask`` (default: its non-zero voxels) written under ``workdir``."""
    import dask.array as da

    from emseg.io import open_volume, write_ome_zarr
    from emseg.postprocess.components import connected_components
    from emseg.postprocess.ops import foreground

    data = volume.to_dask(chunks)
    if mask is None:
        if int(da.max(data).compute(scheduler="threads")) > 1:
            return volume
        mask = foreground(data)
    labels, _ = connected_components(mask, connectivity, progress=progress)
    path = Path(workdir) / f"{name}.ome.zarr"
    write_ome_zarr(labels, path, volume.voxel_size, chunks=[c[0] for c in data.chunks], levels=1, kind="labels",
                   progress=progress)
    return open_volume(str(path))
