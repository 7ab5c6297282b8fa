"""Ensembles: several models, each predicted into its own sub-image, averaged on the output grid.

``emseg predict a.pt,mito IMG OUT`` (library: ``predict(["a.pt", "mito"], ...)``) writes

- ``OUT/member_<i>``: member i's prediction, a complete `predict` output of its own (its ledger,
  and its ``model_scale`` working copy when it runs at another voxel size), on the input's grid;
  so 2D and 3D members and members at different voxel sizes go through the same engine;
- ``OUT/0``: the weighted mean of the members' probabilities (equal weights by default), written
  blockwise inside the ROI with ``OUT/.emseg_ledger``.

``attrs["emseg"]["complete"]`` becomes true only when every member and every averaging block
is done; running the same command again resumes whatever is missing. ``attrs["emseg"]`` also
holds ``ensemble`` (per member: path, source, fingerprint, architecture, mode, tta, voxel size,
weight, threshold, organelle) and ``model.threshold``, the weighted mean of the members' stored
thresholds (the plain mean with equal weights), which post-processing uses by default.

An explicit ``mode`` applies to the members whose dimension it fits (``3d``: 3D nets; ``stack``
and ``orthoplane``: 2D nets); the others, and every member with ``auto``, run in their
checkpoint's stored mode, else the default. ``tta`` applies to every member when given.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emseg.blocks import Block, Ledger, RunReport, block_shape_for, plan_blocks
from emseg.errors import ConfigError
from emseg.io.roi import parse_roi
from emseg.predict.engine import to_output_dtype
from emseg.predict.run import (
    PredictResult,
    _as_loaded,
    _prepare_output,
    _run,
    check_voxel_sizes,
    inference_mode,
    model_fingerprint,
    output_chunks,
    predict,
    raise_failed,
    settings_fingerprint,
)

MEMBER = "member_{}"  # sub-image of member i
AVERAGE_BLOCK = 128  # edge of the averaging blocks (rounded to whole chunks)


def split_models(model: Any) -> list:
    """The models ``model`` names: a list or tuple as it is; a string holding commas (and not
    an existing path) split on them; anything else one model."""
    if isinstance(model, (list, tuple)):
        members = list(model)
    elif isinstance(model, (str, os.PathLike)) and "," in str(model) and not Path(model).exists():
        members = [part.strip() for part in str(model).split(",")]
        if not all(members):
            raise ConfigError(f"{model!s}: an empty name in the list of models (write a.pt,b.pt)")
    else:
        members = [model]
    if not members:
        raise ConfigError("no model given")
    return members


def member_weights(weights: Sequence[float] | str | None, n: int) -> list[float]:
    """``weights`` (a sequence or ``"2,1"``) normalised to sum 1; None: equal weights."""
    if weights is None:
        return [1.0 / n] * n
    if n < 2:
        raise ConfigError("weights need an ensemble of two or more models")
    if isinstance(weights, str):
        try:
            weights = [float(w) for w in weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights must be numbers separated by commas, got {weights!r}") from None
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise ConfigError(f"{len(weights)} weight(s) for {n} models; give one per model")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"weights must be non-negative numbers with a positive sum, got {weights}")
    return [w / sum(weights) for w in weights]


def member_mode(mode: str, loaded) -> str:
    """``mode`` if it fits the member's dimension, else ``auto`` (its own stored or default mode)."""
    spatial = getattr(loaded.model, "spatial_dims", 3)
    return mode if mode == "auto" or (mode == "3d") == (spatial == 3) else "auto"


@dataclass
class Member:
    """One model of an ensemble, loaded, with what the output records about it."""

    loaded: Any
    label: str
    weight: float
    mode: str  # passed to predict (may be auto)
    record: dict = field(default_factory=dict)


def load_members(specs: list, weights: list[float], call: dict, volume, device) -> list[Member]:
    """Load every member and refuse, before any work, what would fail later (mode, voxel size)."""
    if call["mode"] not in ("auto", "3d", "stack", "orthoplane"):
        raise ConfigError(f"mode must be auto, 3d, stack or orthoplane, got {call['mode']!r}")
    members = []
    for i, (spec, weight) in enumerate(zip(specs, weights)):
        loaded, source = _as_loaded(spec, volume, device)
        label = source or loaded.path or f"<in-memory model {i}>"
        if any(label == m.label for m in members):
            raise ConfigError(f"{label}: listed twice in the ensemble; use weights to weight a member")
        mode = member_mode(call["mode"], loaded)
        run_mode, tta = inference_mode(loaded, mode, call["tta"], label)
        with warnings.catch_warnings():  # the member's own run warns about resampling
            warnings.simplefilter("ignore")
            check_voxel_sizes(volume, loaded.voxel_size, call["allow_resample"], label)
        record = {"path": MEMBER.format(i), "source": label, "fingerprint": model_fingerprint(loaded.model),
                  "architecture": loaded.architecture, "mode": run_mode, "tta": tta,
                  "voxel_size": [float(v) for v in loaded.voxel_size], "weight": weight,
                  "threshold": float(loaded.threshold), "organelle": loaded.organelle}
        members.append(Member(loaded, label, weight, mode, record))
    if call["mode"] != "auto" and all(m.mode == "auto" for m in members):
        raise ConfigError(f"mode {call['mode']!r} fits none of the ensemble's models "
                          f"({', '.join(m.label for m in members)})")
    return members


def ensemble_model(members: list[Member]) -> dict:
    """``attrs["emseg"]["model"]`` of the averaged output: threshold = weighted mean of the members'."""
    organelles = sorted({m.loaded.organelle for m in members})
    if len(organelles) > 1:
        warnings.warn(f"ensemble members predict different organelles ({', '.join(organelles)}); "
                      "averaging them anyway", stacklevel=4)
    return {"source": ",".join(m.label for m in members), "architecture": "ensemble",
            "organelle": "+".join(organelles), "members": len(members),
            "threshold": float(sum(m.weight * m.loaded.threshold for m in members))}


@dataclass
class AverageJob:
    """Blockwise weighted mean of the members' outputs (a job for `emseg.blocks.run_blocks`)."""

    output: Path
    members: list[Path]
    weights: list[float]
    roi: tuple[slice, ...]
    dtype: str
    _arrays: dict = field(default_factory=dict)

    def array(self, path: Path, mode: str = "r"):
        if path not in self._arrays:
            import zarr

            self._arrays[path] = zarr.open_array(str(path / "0"), mode=mode)
        return self._arrays[path]

    def region(self, block: Block) -> tuple[slice, ...]:
        return tuple(slice(max(w.start, r.start), min(w.stop, r.stop)) for w, r in zip(block.write, self.roi))

    def read(self, block: Block) -> np.ndarray:
        region = self.region(block)
        data = np.stack([np.asarray(self.array(m)[region]) for m in self.members])
        return data.astype(np.float32) / 255.0 if data.dtype == np.uint8 else data.astype(np.float32)

    def compute(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        w = np.asarray(self.weights, np.float32)
        return [np.tensordot(w, x, axes=1) for x in inputs]

    def write(self, block: Block, mean: np.ndarray) -> None:
        self.array(self.output, "r+")[self.region(block)] = to_output_dtype(mean, self.dtype)


def predict_ensemble(specs: list, call: dict) -> PredictResult:
    """`predict` for several models (``call``: predict's arguments); see the module docstring."""
    import zarr

    from emseg.device import pick_device
    from emseg.io import open_volume
    from emseg.io.ome_zarr import create_ome_zarr
    from emseg.io.outputs import check_output

    output = Path(call["output"])
    weights = member_weights(call["weights"], len(specs))
    check_output(output, [call["volume"], call["mask"], *[s for s in specs if isinstance(s, (str, os.PathLike))]],
                 call["overwrite"], resume=True)
    volume = open_volume(call["volume"]) if not hasattr(call["volume"], "reader") else call["volume"]
    mask = open_volume(call["mask"]) if isinstance(call["mask"], (str, os.PathLike)) else call["mask"]
    members = load_members(specs, weights, call, volume, pick_device(call["device"]))
    roi = parse_roi(call["roi"], volume.shape, volume.path)
    chunks = output_chunks(call["chunks"], volume.shape)
    settings = ensemble_settings(members, call, volume.shape, roi, chunks, mask)
    attrs = {"kind": "probabilities", "complete": False, "source": str(volume.path), "model": ensemble_model(members),
             "ensemble": [m.record for m in members], "predict": settings}
    _prepare_output(output, settings, call["overwrite"],
                    lambda: create_ome_zarr(output, volume.shape, np.dtype(call["dtype"]), volume.voxel_size,
                                            chunks, levels=1, name=output.name, attrs=attrs))
    results = [predict(**{**call, "model": m.loaded, "weights": None, "volume": volume, "mask": mask,
                          "output": output / m.record["path"], "mode": m.mode, "overwrite": False})
               for m in members]
    average_block = block_shape_for(chunks, [min(AVERAGE_BLOCK, n) for n in volume.shape])
    plan = plan_blocks(volume.shape, average_block, average_block, (0, 0, 0), chunks, roi)
    job = AverageJob(output, [output / m.record["path"] for m in members], weights, roi, call["dtype"])
    ledger = Ledger(output)
    report = _run(job, list(plan.blocks), ledger, 1, call["retries"], call["io_threads"], None, None, None,
                  call["progress"], desc="average")
    done = ledger.done()
    complete = all(r.complete for r in results) and all(b.key in done for b in plan.blocks)
    if complete:
        group = zarr.open_group(str(output), mode="r+")
        group.attrs["emseg"] = {**dict(group.attrs["emseg"]), "complete": True}
    raise_failed(output, report, call["retries"])
    return PredictResult(output, plan, combined_report(members, results, report), complete, results)


def ensemble_settings(members: list[Member], call: dict, shape, roi, chunks, mask) -> dict:
    """The ensemble's ``predict`` settings and their fingerprint (another one is not resumed)."""
    block = call["block_shape"]
    settings = {"ensemble": [{k: m.record[k] for k in ("source", "fingerprint", "weight", "mode", "tta")}
                             for m in members],
                "axis": call["axis"], "halo": call["halo"], "dtype": call["dtype"], "chunks": list(chunks),
                "member_block_shape": list(np.broadcast_to(block, 3).tolist()) if block is not None else None,
                "roi": [[r.start, r.stop] for r in roi], "mask": str(mask.path) if mask is not None else None,
                "shape": list(shape)}
    return {**settings, "fingerprint": settings_fingerprint(settings)}


def combined_report(members: list[Member], results: list[PredictResult], average: RunReport) -> RunReport:
    """One report for the whole run: block keys prefixed by ``member_<i>/`` or ``average/``."""
    return RunReport(done=[f"{m.record['path']}/{k}" for m, r in zip(members, results) for k in r.report.done]
                     + [f"average/{k}" for k in average.done],
                     skipped=sum(r.report.skipped for r in results) + average.skipped,
                     seconds=sum(r.report.seconds for r in results) + average.seconds)
