"""Writing OME-Zarr (NGFF 0.4 on zarr v2 by default; 0.5 on zarr v3) block by block.

The level-0 copy and every pyramid level are computed blockwise through Dask, so memory
stays bounded by a few blocks whatever the volume's size. Outputs are written into a
temporary sibling folder and renamed into place only when complete: a failed or killed
conversion never leaves an output that looks finished.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emseg.errors import EmsegError
from emseg.io.outputs import check_output
from emseg.io.tempfiles import check_path_length, temp_output, temp_sibling
from emseg.io.volume import Volume, VoxelSize, array_volume, check_voxel_size

Kind = Literal["image", "labels"]
READ_BUDGET_BYTES = 32 * 2**20  # one dask task reads at most about this much


def default_chunks(shape: Sequence[int], chunks: int | Sequence[int] | None) -> tuple[int, int, int]:
    """Chunk shape clipped to the volume: an int means a cube."""
    if chunks is None:
        chunks = 64
    if isinstance(chunks, (int, np.integer)):
        chunks = (int(chunks),) * 3
    return tuple(max(1, min(int(c), int(s))) for c, s in zip(chunks, shape))  # type: ignore[return-value]


def pyramid_factors(voxel_size: VoxelSize) -> tuple[int, int, int]:
    """Per-axis downsampling factor for the next level: 2 where the axis is finer than
    1.5 × the finest axis, else 1 (so anisotropic z is kept until x/y catch up)."""
    finest = min(voxel_size)
    return tuple(2 if v < 1.5 * finest else 1 for v in voxel_size)  # type: ignore[return-value]


def plan_levels(shape: Sequence[int], voxel_size: VoxelSize, levels: int | None, min_size: int = 32):
    """List of (shape, voxel_size, factors) for each level; ``levels=None`` picks enough
    levels that the coarsest has an axis below ``min_size`` (at most 8)."""
    plan = [(tuple(int(s) for s in shape), tuple(voxel_size), (1, 1, 1))]
    while (levels is None and len(plan) < 8) or (levels is not None and len(plan) < levels):
        cur_shape, cur_vs, _ = plan[-1]
        if levels is None and max(cur_shape) <= 2 * min_size:
            break
        factors = pyramid_factors(cur_vs)
        new_shape = tuple(math.ceil(s / f) for s, f in zip(cur_shape, factors))
        if new_shape == cur_shape or min(new_shape) < 1:
            break
        plan.append((new_shape, tuple(v * f for v, f in zip(cur_vs, factors)), factors))
    return plan


def multiscales_metadata(name: str, plan: list, kind: Kind, version: str = "0.4") -> dict:
    """The NGFF ``multiscales`` entry for a pyramid plan."""
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    datasets = [
        {
            "path": str(i),
            "coordinateTransformations": [
                {"type": "scale", "scale": [float(v) for v in vs]},
                # a voxel's centre moves by half the coarsening, as NGFF viewers expect
                {"type": "translation", "translation": [(v - plan[0][1][a]) / 2 for a, v in enumerate(vs)]},
            ],
        }
        for i, (_, vs, _) in enumerate(plan)
    ]
    return {
        "version": version,
        "name": name,
        "axes": axes,
        "datasets": datasets,
        "type": "mean" if kind == "image" else "mode",
    }


def compressor(zarr_format: int) -> Any:
    import numcodecs

    if zarr_format == 2:
        return numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")


def create_ome_zarr(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype: Any,
    voxel_size: Sequence[float],
    chunks: int | Sequence[int] | None = None,
    levels: int | None = 1,
    kind: Kind = "image",
    name: str | None = None,
    attrs: dict | None = None,
    zarr_format: int = 2,
):
    """Create an empty OME-Zarr image (all levels allocated, fill 0) and return the group.

    Used by the converter and by every blockwise writer (prediction, post-processing).
    """
    import zarr

    voxel_size = check_voxel_size(voxel_size, str(path))
    chunk_shape = default_chunks(shape, chunks)
    plan = plan_levels(shape, voxel_size, levels)
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    version = "0.4" if zarr_format == 2 else "0.5"
    meta = multiscales_metadata(name or Path(str(path)).name, plan, kind, version)
    key_encoding = {"name": "v2", "separator": "/"} if zarr_format == 2 else {"name": "default", "separator": "/"}
    for i, (level_shape, _, _) in enumerate(plan):
        group.create_array(
            str(i),
            shape=level_shape,
            chunks=default_chunks(level_shape, chunk_shape),
            dtype=np.dtype(dtype),
            compressors=compressor(zarr_format),
            chunk_key_encoding=key_encoding,
            fill_value=0,
            dimension_names=("z", "y", "x") if zarr_format == 3 else None,
        )
    ngff: dict[str, Any] = {"multiscales": [meta]}
    if kind == "labels":
        ngff["image-label"] = {"version": version, "source": {"image": "../../"}}
    emseg_attrs = {"kind": kind, "voxel_size": list(voxel_size), **(attrs or {})}
    if zarr_format == 2:
        group.attrs.update({**ngff, "emseg": emseg_attrs})
    else:
        group.attrs.update({"ome": {"version": version, **ngff}, "emseg": emseg_attrs})
    return group


def level_factors(group) -> list[tuple[int, int, int]]:
    """Downsampling factor between consecutive levels, from the stored scales."""
    attrs = dict(group.attrs)
    ms = attrs.get("ome", attrs)["multiscales"][0]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    return [tuple(int(round(b / a)) for a, b in zip(s0, s1)) for s0, s1 in zip(scales, scales[1:])]


def read_chunks_for(shape: Sequence[int], out_chunks: Sequence[int], itemsize: int,
                    source_chunks: Sequence[int] | None = None) -> tuple[int, int, int]:
    """Dask chunks for reading: multiples of the output chunks (so writes never race),
    grown along x, then y (whole rows of a TIFF page are cheap), within the read budget."""
    block = list(out_chunks)
    for axis in (2, 1):
        while block[axis] < shape[axis]:
            grown = block.copy()
            grown[axis] = min(shape[axis], block[axis] + out_chunks[axis])
            if np.prod(grown) * itemsize > READ_BUDGET_BYTES:
                break
            block = grown
    return tuple(block)  # type: ignore[return-value]


def downsample_block(block: np.ndarray, factors: Sequence[int], kind: Kind) -> np.ndarray:
    """Downsample one block by integer factors: mean (rounded, same dtype) for images,
    the most frequent value (mode) for labels. Ragged edges are padded by edge values."""
    pads = [(0, (-s) % f) for s, f in zip(block.shape, factors)]
    if any(p[1] for p in pads):
        block = np.pad(block, pads, mode="edge")
    fz, fy, fx = factors
    z, y, x = (s // f for s, f in zip(block.shape, factors))
    windows = block.reshape(z, fz, y, fy, x, fx).transpose(0, 2, 4, 1, 3, 5).reshape(z, y, x, -1)
    if kind == "image":
        mean = windows.mean(axis=-1, dtype=np.float64)
        if block.dtype.kind in "ui":
            return np.rint(mean).astype(block.dtype)
        return mean.astype(block.dtype)
    counts = (windows[..., :, None] == windows[..., None, :]).sum(axis=-1)
    best = counts.argmax(axis=-1)
    return np.take_along_axis(windows, best[..., None], axis=-1)[..., 0]


def build_pyramid(group, kind: Kind, progress: bool = False, start_level: int = 1, pool=None) -> None:
    """Fill levels ``start_level``.. of an OME-Zarr group from the level before, blockwise."""
    import dask.array as da

    from emseg.io.progress import dask_progress

    factors_list = level_factors(group)
    for level in range(max(1, start_level), len(factors_list) + 1):
        src, dst = group[str(level - 1)], group[str(level)]
        factors = factors_list[level - 1]
        in_chunks = tuple(c * f for c, f in zip(dst.chunks, factors))
        source = da.from_array(src, chunks=in_chunks, asarray=True, lock=False)
        out = source.map_blocks(
            downsample_block, factors, kind, dtype=src.dtype,
            chunks=tuple(tuple(math.ceil(c / f) for c in cs) for cs, f in zip(source.chunks, factors)),
        )
        with dask_progress(f"level {level}", progress):
            da.store(out, dst, lock=False, scheduler="threads", pool=pool)


def replace_output(temp: Path, target: Path) -> None:
    """Rename the finished ``temp`` onto ``target``; an existing output goes to a trash sibling first."""
    if not target.exists():
        os.replace(temp, target)
        return
    trash = temp_sibling(target, "old")
    os.replace(target, trash)
    os.replace(temp, target)
    shutil.rmtree(trash, ignore_errors=True)


def write_ome_zarr(
    source: Volume | np.ndarray | Any | str | os.PathLike,
    path: str | os.PathLike,
    voxel_size: Sequence[float] | None = None,
    chunks: int | Sequence[int] | None = 64,
    levels: int | None = None,
    kind: Kind = "image",
    *,
    dtype: Any = None,
    overwrite: bool = False,
    progress: bool = False,
    attrs: dict | None = None,
    zarr_format: int = 2,
) -> Path:
    """Write ``source`` (a `Volume`, a numpy or dask array, or any path `open_volume` reads)
    as OME-Zarr. A dask array is computed block by block while it is written.

    voxel_size: (z, y, x) nm; defaults to the source's. chunks: int (cube) or (z, y, x).
    levels: number of pyramid levels (``None``: until the coarsest is small). kind:
    ``"image"`` (mean downsampling) or ``"labels"`` (mode downsampling).
    The output appears at ``path`` only once every level is written.
    """
    import dask.array as da

    from emseg.io.open import open_volume
    from emseg.io.progress import dask_progress

    lazy = None
    if isinstance(source, da.Array):  # a lazy pipeline (map_blocks / map_overlap) is written blockwise
        lazy = source
        source = array_volume(np.empty((0, 0, 0), dtype=source.dtype), voxel_size or (1.0, 1.0, 1.0))
        source = dataclasses.replace(source, shape=tuple(int(s) for s in lazy.shape), path="<dask array>")
    elif isinstance(source, (str, os.PathLike)):
        source = open_volume(source, voxel_size)
    elif not isinstance(source, Volume):
        source = array_volume(np.asarray(source), voxel_size or (1.0, 1.0, 1.0))
    voxel_size = check_voxel_size(voxel_size or source.voxel_size, str(path))
    if kind not in ("image", "labels"):
        raise EmsegError(f"{path}: kind must be 'image' or 'labels', got {kind!r}")
    target = check_output(path, [source], overwrite)
    out_dtype = np.dtype(dtype) if dtype is not None else source.dtype
    if kind == "labels" and out_dtype.kind not in "uib":
        raise EmsegError(f"{source.path}: labels must be integers, got dtype {out_dtype}")
    check_path_length(target)  # before creating its parent folders
    target.parent.mkdir(parents=True, exist_ok=True)
    with temp_output(target, "partial", replace=replace_output) as temp:
        # our own pool: on failure we wait for blocks still in flight before the temp folder is removed
        pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
        try:
            group = create_ome_zarr(temp, source.shape, out_dtype, voxel_size, chunks, levels, kind,
                                    name=target.name, attrs={"source": str(source.path), **(attrs or {})},
                                    zarr_format=zarr_format)
            level0 = group["0"]
            read_chunks = read_chunks_for(source.shape, level0.chunks, out_dtype.itemsize, source.chunks)
            if lazy is not None:
                data = lazy
            else:
                data = da.from_array(source, chunks=read_chunks, asarray=True, lock=False, fancy=False)
            if data.dtype != out_dtype:
                data = data.astype(out_dtype)
            with dask_progress("level 0", progress):
                da.store(data, level0, lock=False, scheduler="threads", pool=pool)
            build_pyramid(group, kind, progress, pool=pool)
            emseg_attrs = dict(group.attrs.get("emseg", {}))
            group.attrs["emseg"] = {**emseg_attrs, "complete": True}
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return target
