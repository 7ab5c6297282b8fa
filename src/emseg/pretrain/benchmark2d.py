"""`emseg benchmark2d`: the shape of the CEM500K transfer table on the data we have.

1. Patch store: a plain 224-px grid over the *training* slices of every task (Lucchi z 0–131,
   ISBI 2012 slices 0–23) plus one synthetic volume (`emseg.synth`), in the `emseg curate`
   store layout (no dedup/filter: a stand-in for curation).
2. MoCoV2 pretraining of a ResNet-18 for a wall-time budget (or ``encoder=`` existing weights).
3. For each task × label regime (all training slices; ``few`` evenly spaced slices) × init
   (random, all layers trained; pretrained + frozen encoder; pretrained + fine-tuned; extra
   local encoders, frozen), `train2d` with the same iterations → volume IoU on the validation
   slices.

Outputs under OUT: ``table.csv`` (one row per task, regime, init), ``table.md``, ``table.png``,
``summary.json`` (settings, pretraining throughput, wall time of every run), ``patches.zarr``,
``moco_resnet18.pt`` and the checkpoints of every run under ``runs/``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from emseg.config_base import StrictConfig
from emseg.errors import ConfigError, CorruptFileError, VolumeNotFoundError

# task name → (image, labels) relative to the data folder (layout of ../shared/data)
TASK_FILES: dict[str, tuple[str, str]] = {
    "lucchi_mito": ("lucchi/train_image.tif", "lucchi/train_mito.tif"),
    "isbi_membrane": ("isbi2012/train_image.tif", "isbi2012/train_membrane.tif"),
}


PROBE_STEPS = 6  # MoCoV2 steps timed before sizing the pretraining to its budget


class TaskSpec(StrictConfig):
    """One downstream task: training slices ``train`` = [start, stop) and validation slices of one volume."""

    renamed_keys = {"val_roi": "validation_roi"}

    name: str
    raw: str
    labels: str
    train: tuple[int, int]
    validation: list[int]
    validation_roi: tuple[int, int, int, int] | None = Field(
        None, description="y0, y1, x0, x1 crop of the validation slices")


class Benchmark2DConfig(StrictConfig):
    """Settings of one benchmark run (defaults: CPU-sized ResNet-18, the issue's splits)."""

    pretrain_minutes: float = Field(4.0, gt=0, description="MoCoV2 wall-time budget")
    encoder: str | None = Field(None, description="existing MoCoV2 weights instead of pretraining here")
    inits: dict[str, str] = Field(default_factory=dict, description="extra encoders NAME → PATH (frozen)")
    tasks: list[str] | None = None
    regimes: list[Literal["full", "few"]] = ["full", "few"]
    few: int = Field(8, ge=1, description="labelled slices in the few-label regime")
    iterations: int = Field(100, ge=1, description="train2d iterations, the same for every run")
    width: int = Field(32, ge=4, description="ResNet-18 base width (64 = standard)")
    pretrain_batch: int = Field(32, ge=2)
    pretrain_size: int = Field(96, ge=32, description="MoCoV2 view size")
    queue_size: int = Field(4096, ge=1)
    batch_size: int = Field(8, ge=1)
    patch_size: int = Field(96, ge=32)
    synth_shape: tuple[int, int, int] | None = (32, 448, 448)
    min_patch: int = Field(112, ge=8, description="grid tiles smaller than this (at a border) are skipped")
    threads: int | None = Field(1, ge=1, description="torch threads (None: leave as is)")
    seed: int = 0


def default_tasks(data: str | os.PathLike, validation_stride: int = 3,
                  lucchi_validation_roi: tuple[int, int, int, int] | None = (128, 640, 256, 768)) -> list[TaskSpec]:
    """Lucchi mitochondria (train z 0–131, validate every ``validation_stride``-th of z 132–164 in a crop)
    and ISBI membranes (train 0–23, validate 24–29) in ``data``; clear error if files are missing."""
    data = Path(data)
    missing = [rel for pair in TASK_FILES.values() for rel in pair if not (data / rel).is_file()]
    if missing:
        raise VolumeNotFoundError(f"{data}: not a benchmark data folder, missing {', '.join(missing)} "
                                  "(expected the layout of ../shared/data: lucchi/ and isbi2012/)")
    paths = {name: (str(data / img), str(data / lab)) for name, (img, lab) in TASK_FILES.items()}
    return [
        TaskSpec(name="lucchi_mito", raw=paths["lucchi_mito"][0], labels=paths["lucchi_mito"][1], train=(0, 132),
                 validation=list(range(132, 165, validation_stride)),
                 validation_roi=lucchi_validation_roi),
        TaskSpec(name="isbi_membrane", raw=paths["isbi_membrane"][0], labels=paths["isbi_membrane"][1],
                 train=(0, 24), validation=list(range(24, 30))),
    ]


def evenly(start: int, stop: int, count: int) -> list[int]:
    """``count`` evenly spaced slices of [start, stop)."""
    return sorted({int(round(v)) for v in np.linspace(start, stop - 1, count)})


def grid_tiles(volume: np.ndarray, size: int, min_size: int):
    """(z, y, x, tile) for a ``size`` grid over every slice; border tiles under ``min_size`` skipped."""
    for z in range(volume.shape[0]):
        for y in range(0, volume.shape[1], size):
            for x in range(0, volume.shape[2], size):
                tile = volume[z, y:y + size, x:x + size]
                if min(tile.shape) >= min_size:
                    yield z, y, x, tile


def grid_patch_store(path: str | os.PathLike, sources: list[tuple[str, np.ndarray]], min_size: int = 112) -> int:
    """Write a complete patch store (`emseg curate` layout, every tile kept) from uint8 volumes."""
    from emseg.curate.store import PATCH, PatchStore

    store = PatchStore.create(path)
    for ds, (_name, volume) in enumerate(sources):
        tiles = list(grid_tiles(volume, PATCH, min_size))
        if not tiles:
            continue
        patches = np.zeros((len(tiles), PATCH, PATCH), np.uint8)
        for i, (*_, tile) in enumerate(tiles):
            patches[i, :tile.shape[0], :tile.shape[1]] = tile
        columns = {"dataset": np.full(len(tiles), ds), "slice": [t[0] for t in tiles], "y": [t[1] for t in tiles],
                   "x": [t[2] for t in tiles], "height": [t[3].shape[0] for t in tiles],
                   "width": [t[3].shape[1] for t in tiles], "score": np.ones(len(tiles)),
                   "kept": np.ones(len(tiles), bool)}
        start, stop = store.append(patches, columns)
        store.write_column("exemplar", start, np.arange(start, stop))
    store.update_meta(complete=True, datasets=[name for name, _ in sources])
    return len(store)


def pretraining_sources(tasks: list[TaskSpec], config: Benchmark2DConfig) -> list[tuple[str, np.ndarray]]:
    """The training slices of every task (never validation slices) and a synthetic volume."""
    from emseg.io import open_volume, to_uint8

    sources = []
    for task in tasks:
        z0, z1 = task.train
        volume = np.asarray(open_volume(task.raw)[z0:z1])
        sources.append((f"{task.name}_train_z{z0}-{z1 - 1}", volume if volume.dtype == np.uint8 else to_uint8(volume)))
    if config.synth_shape:
        from emseg.synth import make_volume

        sources.append(("synthetic", make_volume(config.synth_shape, (5.0, 5.0, 5.0), seed=config.seed).raw))
    return sources


def pretrain_for_budget(store: Path, output: Path, config: Benchmark2DConfig, n_patches: int,
                        progress: bool = True) -> dict:
    """MoCoV2 sized to ``pretrain_minutes``: a short probe measures the step time and the fixed
    costs, then as many steps as fit, in ≥ 4 epochs (if that many steps fit) of ≤ 1 pass each (cosine lr).
    Returns the pretrain summary plus images seen, steps and wall time."""
    from emseg.pretrain.run import PretrainConfig, pretrain

    tic = time.perf_counter()
    probe = PretrainConfig(arch="resnet18", width=config.width, epochs=1, batch_size=config.pretrain_batch,
                           image_size=config.pretrain_size, queue_size=config.queue_size, steps_per_epoch=PROBE_STEPS,
                           device="cpu", schedule="cosine", seed=config.seed)
    speed = pretrain(store, output, probe, overwrite=True, progress=False)["images_per_s"]
    probe_wall = time.perf_counter() - tic
    step_s = config.pretrain_batch / speed  # training-step time (incl. warm-up: a little pessimistic)
    setup_s = max(0.0, probe_wall - PROBE_STEPS * step_s)  # opening the store, norms, saving: paid again
    left = config.pretrain_minutes * 60 - probe_wall - setup_s
    steps = max(1, int(left / (1.05 * step_s)))  # 5 % for reading batches
    per_pass = max(1, n_patches // config.pretrain_batch)  # an epoch is at most one pass over the patches
    epochs = max(min(4, steps), math.ceil(steps / per_pass))
    run = probe.model_copy(update={"epochs": epochs, "steps_per_epoch": max(1, steps // epochs)})
    summary = pretrain(store, output, run, overwrite=True, progress=progress)
    wall = time.perf_counter() - tic
    seen = epochs * run.steps_per_epoch * config.pretrain_batch
    return {**summary, "images_seen": seen, "wall_s": wall, "steps": epochs * run.steps_per_epoch}


def run_inits(encoder: str, config: Benchmark2DConfig) -> list[tuple[str, str, bool]]:
    """(column name, init, frozen) for every init compared."""
    inits = [("random", "random", False), ("emseg-MoCoV2 frozen", encoder, True),
             ("emseg-MoCoV2 fine-tuned", encoder, False)]
    for name, path in config.inits.items():
        if not Path(path).is_file():
            raise VolumeNotFoundError(f"{path}: encoder file for --init {name} not found")
        inits.append((f"{name} frozen", str(path), True))
    return inits


def run_benchmark(data: str | os.PathLike | None, out: str | os.PathLike, config: Benchmark2DConfig,
                  tasks: list[TaskSpec] | None = None, progress: bool = True) -> dict:
    """Build the patch store, pretrain, train2d every (task, regime, init) and write the outputs.

    ``tasks`` replaces the default Lucchi/ISBI tasks of ``data`` (e.g. small volumes in tests).
    Returns the summary written to ``summary.json``.
    """
    import torch
    from tqdm import tqdm

    from emseg.train.transfer2d import SliceSet, Transfer2DConfig, train2d

    start = time.perf_counter()
    if tasks is None:
        tasks = default_tasks(data)
    if config.tasks is not None:
        unknown = sorted(set(config.tasks) - {t.name for t in tasks})
        if unknown:
            raise ConfigError(f"unknown task(s) {unknown}; choose from {[t.name for t in tasks]}")
        tasks = [t for t in tasks if t.name in config.tasks]
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    encoder = Path(config.encoder) if config.encoder else out / "moco_resnet18.pt"
    inits = run_inits(str(encoder), config)  # checks the extra encoders before the long pretraining
    plan = []
    for task in tasks:
        z0, z1 = task.train
        regimes = {"full": list(range(z0, z1)), "few": evenly(z0, z1, config.few)}
        plan += [(task, regime, regimes[regime], init) for regime in config.regimes for init in inits]
    if not plan:
        raise ConfigError("benchmark2d: no task × regime to run")

    if config.encoder:
        if not encoder.is_file():
            raise VolumeNotFoundError(f"{encoder}: encoder file not found")
        from emseg.models.checkpoint import safe_torch_load

        payload = safe_torch_load(encoder, "encoder weights file")
        if not isinstance(payload, dict):
            raise CorruptFileError(f"{encoder}: expected a dict of weights, got {type(payload).__name__}")
        history = payload.get("history") or [{"loss": float("nan"), "acc": float("nan")}]
        pre = {"images_per_s": float("nan"), "history": history, "images_seen": None, "patches": None}
    else:
        tic = time.perf_counter()
        store = out / "patches.zarr"
        n = grid_patch_store(store, pretraining_sources(tasks, config), config.min_patch)
        timings["patch_store"] = time.perf_counter() - tic
        pre = pretrain_for_budget(store, encoder, config, n, progress)
        pre["patches"] = n
        timings["pretrain"] = pre["wall_s"]
        if progress:
            tqdm.write(f"pretrain: {pre['images_seen']} images ({pre['images_seen'] / n:.2f} passes over {n} "
                       f"patches) in {pre['wall_s']:.0f} s, {pre['images_per_s']:.1f} images/s, final loss "
                       f"{pre['history'][-1]['loss']:.3f}, positive-key accuracy {pre['history'][-1]['acc']:.2f}")

    zoom = (config.patch_size / 224) ** 2  # the recipe's zoom range (scale 0.08–1 at 224 px) at this patch size
    (out / "runs").mkdir(exist_ok=True)
    rows = []
    for task, regime, slices, (init_name, init, frozen) in tqdm(plan, desc="benchmark2d runs", disable=not progress):
        cfg = Transfer2DConfig(
            train=SliceSet(image=task.raw, labels=task.labels, slices=slices),
            validation=SliceSet(image=task.raw, labels=task.labels, slices=task.validation, roi=task.validation_roi),
            init=init, freeze_encoder=frozen, arch="resnet18", width=config.width, iterations=config.iterations,
            batch_size=config.batch_size, patch_size=config.patch_size, scale=(0.08 * zoom, 1.0 * zoom),
            device="cpu", seed=config.seed)
        name = f"{task.name}_{regime}_{init_name.replace(' ', '_')}"
        result = train2d(cfg, out / "runs" / f"{name}.pt", progress=False)
        rows.append({"task": task.name, "regime": regime, "labelled_slices": len(slices), "init": init_name,
                     "iou": result["iou"], "iou_per_image": result["iou_per_image_mean"],
                     "train_loss": result["final_loss"], "iterations": config.iterations, "wall_s": result["wall_s"]})
        if progress:
            tqdm.write(f"{task.name:14s} {regime:4s} ({len(slices):3d} slices) {init_name:26s} IoU {result['iou']:.3f} "
                       f"(loss {result['final_loss']:.3f}, {result['wall_s']:.0f} s)")
        timings["transfer_runs"] = sum(r["wall_s"] for r in rows)
        timings["total"] = time.perf_counter() - start
        summary = {
            "config": config.model_dump(), "tasks": [t.model_dump() for t in tasks], "encoder": str(encoder),
            "patches": pre.get("patches"), "pretrain_images_seen": pre.get("images_seen"),
            "pretrain_images_per_s": pre["images_per_s"],
            "pretrain_images_per_s_wall": (pre["images_seen"] / pre["wall_s"]) if pre.get("images_seen") else None,
            "pretrain_final_loss": pre["history"][-1]["loss"], "pretrain_final_acc": pre["history"][-1]["acc"],
            "timings_s": timings, "complete": len(rows) == len(plan), "runs": rows,
        }
        # tables after every run (a long run that is stopped leaves a partial table), the chart at the end
        write_outputs(rows, summary, out, plot=len(rows) == len(plan))
    return summary


def markdown_table(frame) -> str:
    """Validation IoU per (task, regime) row and init column, with the ratio to random init."""
    frame = frame.assign(row=[f"{r} ({n} slices)" if r == "few" else r
                              for r, n in zip(frame["regime"], frame["labelled_slices"])])
    pivot = frame.pivot_table(index=["task", "row"], columns="init", values="iou", sort=False)
    lines = ["| task | regime | " + " | ".join(pivot.columns) + " |", "|---" * (2 + len(pivot.columns)) + "|"]
    for (task, regime), values in pivot.iterrows():
        base = values.get("random", np.nan)
        cells = ["–" if np.isnan(v)  # not run (yet)
                 else f"{v:.3f}" + ("" if name == "random" or not base > 0 else f" ({v / base:.2f}×)")
                 for name, v in values.items()]
        lines.append(f"| {task} | {regime} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(rows: list[dict], summary: dict, out: Path, plot: bool = True) -> None:
    """table.csv, table.md, summary.json and (``plot``) table.png under ``out``."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.to_csv(out / "table.csv", index=False)
    table = markdown_table(frame)
    walls = "\n".join(f"| {r['task']} | {r['regime']} | {r['init']} | {r['wall_s']:.0f} |" for r in rows)
    seen, speed = summary["pretrain_images_seen"], summary["pretrain_images_per_s"]
    pre = (f"MoCoV2: {seen} images seen ({summary['patches']} patches), {speed:.1f} images/s "
           f"(training steps only), final loss {summary['pretrain_final_loss']:.3f}" if seen
           else f"MoCoV2: encoder {summary['encoder']} (not pretrained in this run)")
    (out / "table.md").write_text(
        f"Validation IoU (volume), {summary['config']['iterations']} train2d iterations per run.\n\n{table}\n{pre}\n\n"
        f"| task | regime | init | wall s |\n|---|---|---|---|\n{walls}\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    if plot:
        plot_table(frame, out / "table.png")


def plot_table(frame, path: Path) -> None:
    """Bar chart of validation IoU per (task, regime), one bar per init."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pivot = frame.pivot_table(index=["task", "regime"], columns="init", values="iou", sort=False)
    ax = pivot.plot.bar(figsize=(8, 4), rot=0)
    ax.set(ylabel="validation IoU", ylim=(0, 1), title="U-Net-ResNet-18: random vs MoCoV2-pretrained init")
    ax.set_xticklabels([f"{t}\n{r}" for t, r in pivot.index], fontsize=8)
    ax.legend(fontsize=8)
    plt.tight_layout()
    plt.savefig(path, dpi=100)
    plt.close(ax.figure)
