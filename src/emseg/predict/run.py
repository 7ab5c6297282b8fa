"""`predict`: model + Volume → probability OME-Zarr, blockwise, resumable, on Dask if asked.

The output (``<output>/0``, uint8 0–255 or float16) carries the voxel size, the model's
metadata and the prediction settings in ``attrs["emseg"]``; its ledger
(``<output>/.emseg_ledger``) lists finished blocks; ``attrs["emseg"]["complete"]`` becomes
true only when every planned block is done. Running the same command again resumes;
running it with another model or other settings refuses unless ``overwrite``.

Several models (a list, or a comma-separated string) make an ensemble: see `emseg.predict.ensemble`.

When the model works at another voxel size (``allow_resample``), the network runs on a lazy
resampled view into ``<output>/model_scale`` (its own ledger) and the probabilities are then
interpolated back onto the input's grid, so ``<output>/0`` always matches the input.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emseg.blocks import BlockPlan, Ledger, RunReport, block_shape_for, plan_blocks, run_blocks
from emseg.errors import ConfigError, EmsegError, OutputExistsError
from emseg.io.outputs import check_output
from emseg.io.roi import parse_roi
from emseg.predict.engine import Mode, PredictJob, geometry, is_valid_conv

MODEL_SCALE = "model_scale"  # sub-image holding the prediction at the model's voxel size, when resampled


class BlocksFailedError(EmsegError):
    """Some blocks failed after retries; they are not in the ledger (rerun to retry them)."""

    def __init__(self, message: str, report: RunReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class PredictResult:
    """Where the output is, the plan that was run, and what this run did."""

    output: Path
    plan: BlockPlan
    report: RunReport
    complete: bool
    members: list[PredictResult] = field(default_factory=list)  # an ensemble's member runs


def model_fingerprint(model) -> str:
    """sha1 of the network's weights (identifies the model whatever its file name)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _as_loaded(model, volume, device):
    from torch import nn

    from emseg.models import LoadedModel, load

    if isinstance(model, (str, os.PathLike)):
        return load(str(model), device=str(device)), str(model)
    if isinstance(model, nn.Module):
        model = LoadedModel(model=model.eval(), architecture=type(model).__name__,
                            model_config=dict(getattr(model, "config", {})), voxel_size=volume.voxel_size)
    return model, None


def inference_mode(loaded, mode: str, tta: bool | None, name: str) -> tuple[str, bool]:
    """The mode and flip TTA to run: the caller's, else the checkpoint's stored ``inference``
    settings, else the defaults (3D nets ``3d``, 2D nets ``stack``; no TTA)."""
    stored = dict(getattr(loaded, "inference", {}) or {})
    spatial = getattr(loaded.model, "spatial_dims", 3)
    if mode == "auto":
        mode = stored.get("mode") or ("3d" if spatial == 3 else "stack")
        origin = " (stored in the checkpoint)" if "mode" in stored else ""
    else:
        origin = ""
    if mode not in ("3d", "stack", "orthoplane") or (mode == "3d") != (spatial == 3):
        raise ConfigError(f"{name}: mode {mode!r}{origin} does not fit a {spatial}D model "
                          "(3D: '3d'; 2D: 'stack' or 'orthoplane')")
    return mode, bool(stored.get("tta", False)) if tta is None else bool(tta)


def output_chunks(chunks, shape: Sequence[int]) -> tuple[int, ...]:
    """The output's chunk shape: ``chunks`` (an int or three) clipped to ``shape``."""
    return tuple(min(int(c), n) for c, n in zip((chunks,) * 3 if np.isscalar(chunks) else chunks, shape))


def settings_fingerprint(settings: dict) -> str:
    """sha1 of the prediction settings (an existing output with another one is not resumed)."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def model_metadata(loaded, source_path: str | None) -> dict:
    """What the output records about the model that made it."""
    return {"source": source_path or loaded.path or "<in-memory model>", "architecture": loaded.architecture,
            "model_config": loaded.model_config, "voxel_size": list(loaded.voxel_size),
            "normalization": dict(loaded.normalization), "organelle": loaded.organelle,
            "threshold": loaded.threshold, "inference": dict(getattr(loaded, "inference", {}) or {})}


def refuse_assumed_voxel_size(volume, why: str = "was assumed (the file has no voxel size)",
                              remedy: str = "resampling needs the real one: pass --voxel-size Z Y X (nm)") -> None:
    """Refuse to resample a volume whose voxel size emseg assumed instead of reading it (the CLI's
    1 nm default, the napari dock's unscaled layer): the model would see a wrong scale."""
    if getattr(volume, "voxel_size_assumed", False):
        size = " × ".join(f"{float(v):g}" for v in volume.voxel_size)
        raise ConfigError(f"{volume.path}: voxel size {size} nm {why}; {remedy}")


def check_voxel_sizes(volume, model_voxel_size, allow_resample: bool, model_name: str):
    """Refuse (or, with ``allow_resample``, warn and resample) when the model was trained at
    another voxel size than the volume's; an assumed voxel size is never resampled."""
    from emseg.predict.resample import resampled, same_voxel_size

    vol_vs = tuple(float(v) for v in volume.voxel_size)
    mod_vs = tuple(float(v) for v in model_voxel_size)
    if same_voxel_size(vol_vs, mod_vs):
        return volume
    refuse_assumed_voxel_size(volume)
    message = f"{volume.path}: voxel size {vol_vs} nm differs from the model's {mod_vs} nm ({model_name})"
    if not allow_resample:
        raise ConfigError(message + "; pass --allow-resample to resample the input to the model's voxel size, "
                          "or --voxel-size if the file's metadata is wrong")
    warnings.warn(message + "; resampling the input to the model's voxel size and the prediction back", stacklevel=3)
    return resampled(volume, mod_vs)


def _mask_filter(mask, plan: BlockPlan):
    """Keep blocks whose write region holds any mask voxel (mask may be at a coarser scale)."""
    scale = [m / v for m, v in zip(mask.shape, plan.volume_shape)]
    keep = []
    for block in plan.blocks:
        region = tuple(slice(int(np.floor(s.start * f)), max(int(np.floor(s.start * f)) + 1, int(np.ceil(s.stop * f))))
                       for s, f in zip(block.write, scale))
        if np.any(mask[region]):
            keep.append(block)
    return keep


def _prepare_output(output: Path, settings: dict, overwrite: bool, create) -> None:
    """Create the output, or check that an existing one was made by the same model and settings."""
    import zarr

    if output.exists():
        if overwrite:
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        else:
            try:
                attrs = dict(zarr.open_group(str(output), mode="r").attrs).get("emseg", {})
            except Exception:  # noqa: BLE001 - anything unreadable is "another output"
                attrs = {}
            previous = attrs.get("predict", {}).get("fingerprint")
            if previous is None:
                raise OutputExistsError(f"{output}: exists and is not an emseg prediction; "
                                        "pass --overwrite to replace it")
            if previous != settings["fingerprint"]:
                raise OutputExistsError(f"{output}: exists from another model or other settings "
                                        f"(model {attrs.get('model', {}).get('source')}); pass --overwrite to replace it")
            return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        create()
    except PermissionError as exc:
        raise EmsegError(f"{output}: cannot write the output ({exc.strerror or exc})") from None
    except OSError as exc:
        raise EmsegError(f"{output}: cannot write the output ({exc.strerror or exc})") from None


def default_block_shape(net: Any, mode: str, axis: int = 0) -> tuple[int, int, int]:
    """Write blocks large against what each read adds around them, so most of the computed
    pixels are written: valid-conv 3D nets, twice the context (≥ 64); 2D nets in stack mode,
    32 slices of 256 × 256 (a 64-px halo makes the read 384 × 384: 2.25× the written pixels,
    against 9× for 64 × 64 blocks); orthoplane and same-padded 3D nets, 128³."""
    if mode == "3d" and is_valid_conv(net):
        return tuple(max(64, 2 * int(c)) for c in net.context)  # type: ignore[return-value]
    if mode == "stack":
        return tuple(32 if a == axis else 256 for a in range(3))  # type: ignore[return-value]
    return (128, 128, 128)


def predict(
    model: Any,
    volume: Any,
    output: str | os.PathLike,
    *,
    roi: str | Sequence[Sequence[int]] | None = None,
    mask: Any = None,
    mode: Mode | str = "auto",
    axis: int = 0,
    tta: bool | None = None,
    halo: int | None = None,
    block_shape: Sequence[int] | int | None = None,
    chunks: Sequence[int] | int = 64,
    dtype: str = "uint8",
    device: str = "auto",
    amp: bool = False,
    batch_size: int = 1,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    overwrite: bool = False,
    allow_resample: bool = False,
    weights: Sequence[float] | str | None = None,
    retries: int = 1,
    io_threads: int = 2,
    progress: bool = False,
) -> PredictResult:
    """Predict ``model`` (bundled name, checkpoint path, `LoadedModel` or nn.Module; several of
    them, as a list or ``"a.pt,mito"``, are an ensemble averaged with ``weights``, default equal)
    on ``volume`` (path or `Volume`) into the OME-Zarr ``output``; see the module docstring.

    mode: ``auto`` (the checkpoint's stored mode, else 3D nets: ``3d``, 2D nets: ``stack``),
    ``stack`` (2D net slice by slice along ``axis``) or ``orthoplane``. tta: flip TTA; None: the
    checkpoint's stored choice, else off. roi: ``"z0:z1,y0:y1,x0:x1"`` in voxels. mask: a
    volume (path or `Volume`, any scale) — only blocks holding mask voxels are computed.
    workers: start a LocalCluster with that many worker processes; scheduler: address of
    an existing ``distributed`` scheduler; client: a ready ``distributed.Client``.
    """
    call = dict(locals())
    from emseg.device import pick_device
    from emseg.io import open_volume
    from emseg.io.ome_zarr import create_ome_zarr
    from emseg.predict.ensemble import predict_ensemble, split_models

    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if dtype not in ("uint8", "float16", "float32"):
        raise ConfigError(f"dtype must be 'uint8' or 'float16' (float32 for checks), got {dtype!r}")
    members = split_models(model)
    if len(members) > 1 or weights is not None:
        return predict_ensemble(members, call)
    model = members[0]
    output = Path(output)
    check_output(output, [volume, mask, model if isinstance(model, (str, os.PathLike)) else None], overwrite,
                 resume=True)
    volume = open_volume(volume) if not hasattr(volume, "reader") else volume
    torch_device = pick_device(device)
    loaded, source_path = _as_loaded(model, volume, torch_device)
    net = loaded.model
    name = source_path or loaded.path or loaded.architecture
    mode, tta = inference_mode(loaded, mode, tta, name)
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0 (z), 1 (y) or 2 (x), got {axis}")
    native = volume
    volume = check_voxel_sizes(volume, loaded.voxel_size, allow_resample, name)
    roi_slices = parse_roi(roi, native.shape, native.path)
    if volume is not native:
        return _predict_at_model_scale(call, native, volume, output, roi_slices, loaded, source_path, overwrite,
                                       io_threads, progress)

    chunk_shape = output_chunks(chunks, volume.shape)
    wanted = (block_shape,) * 3 if np.isscalar(block_shape) else (block_shape or default_block_shape(net, mode, axis))
    grid = geometry(net, (1, 1, 1), mode, halo, axis).grid if is_valid_conv(net) and mode == "3d" else (1, 1, 1)
    wanted = [min(int(w), n) for w, n in zip(wanted, volume.shape)]
    geo = geometry(net, block_shape_for(chunk_shape, wanted, grid), mode, halo, axis)
    if tta and is_valid_conv(net) and any(c % 2 for c in net.context):
        raise ConfigError(f"{name}: flip TTA needs a symmetric context; this net's context is {net.context}")
    plan = plan_blocks(volume.shape, geo.block_shape, geo.read_shape, geo.context_lo, chunk_shape, roi_slices,
                       geo.grid)
    blocks = list(plan.blocks)
    mask_path = None
    if mask is not None:
        mask_vol = open_volume(mask) if not hasattr(mask, "reader") else mask
        mask_path = str(mask_vol.path)
        blocks = _mask_filter(mask_vol, plan)

    fp_model = model_fingerprint(net)
    settings = {"mode": mode, "axis": axis, "tta": tta, "halo": halo if mode != "3d" else None,
                "dtype": dtype, "block_shape": list(geo.block_shape), "chunks": list(chunk_shape),
                "roi": [[s.start, s.stop] for s in roi_slices], "mask": mask_path,
                "normalization": dict(loaded.normalization), "shape": list(volume.shape),
                "model_fingerprint": fp_model}
    settings["fingerprint"] = settings_fingerprint(settings)
    model_meta = model_metadata(loaded, source_path)
    attrs = {"kind": "probabilities", "complete": False, "source": str(volume.path),
             "model": model_meta, "predict": settings}
    _prepare_output(output, settings, overwrite,
                    lambda: create_ome_zarr(output, volume.shape, np.dtype(dtype), volume.voxel_size,
                                            chunk_shape, levels=1, name=output.name, attrs=attrs))

    ledger = Ledger(output)
    job = PredictJob(volume=volume, model_source=source_path or loaded, output=str(output.resolve()),
                     geometry=geo, mode=mode, axis=axis, tta=tta, dtype=dtype,
                     device=device if (workers or scheduler or client) else str(torch_device), amp=amp,
                     normalization=dict(loaded.normalization), token=settings["fingerprint"])
    from emseg.predict import engine

    if not (workers or scheduler or client):  # in process: reuse the model loaded above
        engine._CACHE[f"model:{job.token}:{job.device}"] = (net.eval().to(torch_device), torch_device)

    try:
        result_report = _run(job, blocks, ledger, batch_size, retries, io_threads, workers, scheduler, client,
                             progress)
    finally:
        engine._CACHE.pop(f"model:{job.token}:{job.device}", None)
        engine._CACHE.pop(f"out:{job.output}", None)
    done = ledger.done()
    complete = all(b.key in done for b in blocks)
    if complete:
        import zarr

        group = zarr.open_group(str(output), mode="r+")
        group.attrs["emseg"] = {**dict(group.attrs["emseg"]), "complete": True,
                                "blocks": len(blocks), "blocks_skipped_by_mask": len(plan.blocks) - len(blocks)}
    raise_failed(output, result_report, retries)
    return PredictResult(output, plan, result_report, complete)


def raise_failed(output: Path, report: RunReport, retries: int) -> None:
    """`BlocksFailedError` when blocks of ``output`` failed (they are not in its ledger)."""
    if report.failed:
        first = next(iter(report.failed.items()))
        raise BlocksFailedError(f"{output}: {len(report.failed)} block(s) failed after {retries} retr"
                                f"{'y' if retries == 1 else 'ies'} (first: block {first[0]}: {first[1]}); "
                                "they are not marked done — run the same command again to retry them", report)


def _predict_at_model_scale(call: dict, native, volume, output: Path, roi_slices, loaded, source_path,
                            overwrite: bool, io_threads: int, progress: bool) -> PredictResult:
    """Predict the resampled ``volume`` into ``<output>/model_scale``, then interpolate the
    probabilities back onto the input's grid in ``<output>/0`` (ROI only)."""
    import zarr

    from emseg.io import open_volume
    from emseg.io.ome_zarr import create_ome_zarr
    from emseg.predict.resample import resampled

    factor = [m / n for m, n in zip(volume.voxel_size, native.voxel_size)]
    model_roi = tuple(slice(max(0, int(np.floor(r.start / f)) - 1), min(n, int(np.ceil(r.stop / f)) + 1))
                      for r, f, n in zip(roi_slices, factor, volume.shape))
    chunk_shape = output_chunks(call["chunks"], native.shape)
    settings = {"resampled_to": list(volume.voxel_size), "shape": list(native.shape), "dtype": call["dtype"],
                "chunks": list(chunk_shape), "roi": [[r.start, r.stop] for r in roi_slices],
                "model_fingerprint": model_fingerprint(loaded.model)}
    settings["fingerprint"] = settings_fingerprint(settings)
    attrs = {"kind": "probabilities", "complete": False, "source": str(native.path),
             "model": model_metadata(loaded, source_path),
             "predict": settings, "model_scale": MODEL_SCALE}
    _prepare_output(output, settings, overwrite,
                    lambda: create_ome_zarr(output, native.shape, np.dtype(call["dtype"]), native.voxel_size,
                                            chunk_shape, levels=1, name=output.name, attrs=attrs))
    inner = predict(**{**call, "volume": volume, "output": output / MODEL_SCALE, "allow_resample": False,
                       "overwrite": False, "roi": [[r.start, r.stop] for r in model_roi]})
    coarse = open_volume(output / MODEL_SCALE)
    fine = resampled(coarse, native.voxel_size, shape=native.shape)
    target = zarr.open_group(str(output), mode="r+")["0"]
    regions = chunk_regions(roi_slices, chunk_shape)

    def write(region):
        target[region] = fine.read(region)

    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max(1, io_threads)) as pool:
        for _ in tqdm(pool.map(write, regions), total=len(regions), desc="upsample", unit="chunk",
                      disable=not progress, dynamic_ncols=True):
            pass
    group = zarr.open_group(str(output), mode="r+")
    group.attrs["emseg"] = {**dict(group.attrs["emseg"]), "complete": inner.complete}
    return PredictResult(output, inner.plan, inner.report, inner.complete)


def chunk_regions(roi: Sequence[slice], chunks: Sequence[int]) -> list[tuple[slice, ...]]:
    """The chunk-aligned pieces of ``roi`` (each inside one chunk)."""
    import itertools

    axes = [[slice(max(r.start, c), min(r.stop, c + k)) for c in range(r.start - r.start % k, r.stop, k)]
            for r, k in zip(roi, chunks)]
    return list(itertools.product(*axes))


def _run(job, blocks, ledger, batch_size, retries, io_threads, workers, scheduler, client, progress,
         desc: str = "predict"):
    from tqdm.auto import tqdm

    voxels = {b.key: int(np.prod(b.write_shape)) for b in blocks}
    done_before = ledger.done()
    bar = tqdm(total=len(blocks), initial=sum(b.key in done_before for b in blocks), unit="block",
               desc=desc, disable=not progress, dynamic_ncols=True)
    start, counted = time.perf_counter(), [0]
    mean_block = float(np.mean(list(voxels.values()))) if voxels else 0.0

    def on_progress(block, n):
        counted[0] += voxels[block.key] if block is not None else n * mean_block
        bar.update(n)
        bar.set_postfix_str(f"{counted[0] / 1e6 / max(time.perf_counter() - start, 1e-9):.2f} MVox/s")

    own_cluster = own_client = None
    try:
        if client is None and (workers or scheduler):
            from distributed import Client, LocalCluster

            if workers:
                threads = max(1, (os.cpu_count() or 1) // int(workers))
                job.torch_threads = threads
                own_cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                           dashboard_address=None)
                client = own_client = Client(own_cluster)
            else:
                try:
                    client = own_client = Client(scheduler, timeout=30)
                except OSError as exc:
                    raise EmsegError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        return run_blocks(job, blocks, ledger, batch_size=batch_size, retries=retries, io_threads=io_threads,
                          client=client, progress=on_progress)
    finally:
        bar.close()
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
