"""Demo data: the synthetic volume on disk, the choice of annotated blocks, simulated loose
annotation (strokes → graph cut, as a user would do it) and the training YAML."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emseg.demo.settings import DemoSettings
from emseg.errors import ConfigError

Box = tuple[slice, slice, slice]


@dataclass
class DemoData:
    """Paths of the demo's inputs and the blocks used for training and validation."""

    raw: Path
    truth: Path
    labels: Path
    sample_mask: Path
    eval_mask: Path
    train_blocks: list[Box]
    validation_block: Box
    annotation_dice: list[float]  #: graph-cut annotation vs truth, per training block
    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]


def box_list(box: Box) -> list[list[int]]:
    """``[[z0, z1], [y0, y1], [x0, x1]]`` as the training YAML's ``roi`` takes it."""
    return [[int(s.start), int(s.stop)] for s in box]


def rank_blocks(truth: np.ndarray, block: int) -> list[Box]:
    """Cubes of edge ``block`` on a grid in the middle z layer that hold some mitochondria (> 2 %),
    those whose mitochondria fraction is closest to 20 % first (some object, some background)."""
    z0 = (truth.shape[0] - block) // 2
    candidates = []
    for y in range(0, truth.shape[1] - block + 1, block):
        for x in range(0, truth.shape[2] - block + 1, block):
            box = (slice(z0, z0 + block), slice(y, y + block), slice(x, x + block))
            fraction = float(np.count_nonzero(truth[box])) / block**3
            if fraction > 0.02:
                candidates.append((abs(fraction - 0.2), y, x, box))
    return [c[3] for c in sorted(candidates, key=lambda c: c[:3])]


def simulate_strokes_in(truth: np.ndarray, box: Box, settings: DemoSettings, seed: int) -> np.ndarray | None:
    """Strokes on a few xy planes of the block, drawn from the truth as a user would; None when
    they lack object or background strokes (a user would pick another block)."""
    from emseg.annotate import simulate_strokes
    from emseg.annotate.strokes import BACKGROUND, OBJECT

    strokes = simulate_strokes(truth[box], planes=settings.stroke_planes, axis=0, seed=seed)
    return strokes if (strokes == OBJECT).any() and (strokes == BACKGROUND).any() else None


def annotate_blocks(raw: np.ndarray, truth: np.ndarray, settings: DemoSettings):
    """Training blocks with their graph-cut masks (strokes → dense, imperfect mask), and the
    validation block: the next suitable block, never annotated or trained on."""
    from emseg.annotate import graph_cut

    ranked = rank_blocks(truth, settings.block)
    annotated: list[tuple[Box, np.ndarray]] = []
    for i, box in enumerate(ranked):
        if len(annotated) == settings.train_blocks:
            return annotated, box
        strokes = simulate_strokes_in(truth, box, settings, settings.seed + i)
        if strokes is not None:
            mask = graph_cut(raw[box], strokes, (settings.voxel_size,) * 3).mask.astype(np.uint8)
            annotated.append((box, mask))
    raise ConfigError(f"the synthetic volume {truth.shape} has too few blocks of {settings.block}³ voxels with "
                      f"mitochondria for {settings.train_blocks} training blocks and a validation block: raise "
                      "--mito-density, the --shape or change the --seed")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = int(a.sum() + b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def prepare_data(out: Path, settings: DemoSettings, log=print) -> DemoData:
    """Make the volume, write raw/truth/annotation/masks as OME-Zarr under ``out/data``."""
    from emseg.io import write_ome_zarr
    from emseg.synth import make_volume

    voxel_size = (settings.voxel_size,) * 3
    synth = make_volume(settings.shape, voxel_size, seed=settings.seed, mito_density=settings.mito_density)
    log(f"  synthetic volume {synth.raw.shape} at {settings.voxel_size:g} nm: "
        f"{int(synth.mito_instances.max())} mitochondria, {100 * synth.mito.mean():.1f} % of voxels")
    folder = out.resolve() / "data"
    raw = write_ome_zarr(synth.raw, folder / "raw.ome.zarr", voxel_size, overwrite=True)
    truth = write_ome_zarr(synth.mito_instances, folder / "mito_truth.ome.zarr", voxel_size, kind="labels",
                           overwrite=True)
    annotated, validation_block = annotate_blocks(synth.raw, synth.mito, settings)
    labels = np.zeros(synth.raw.shape, np.uint8)
    sample = np.zeros(synth.raw.shape, np.uint8)
    scores = []
    for i, (box, mask) in enumerate(annotated):
        labels[box], sample[box] = mask, 1
        scores.append(dice(mask, synth.mito[box]))
        log(f"  block {i + 1} {box_list(box)}: strokes on {settings.stroke_planes} planes → graph cut, "
            f"Dice vs truth {scores[-1]:.3f}")
    train_blocks = [box for box, _ in annotated]
    labels_path = write_ome_zarr(labels, folder / "annotation.ome.zarr", voxel_size, kind="labels", overwrite=True)
    sample_path = write_ome_zarr(sample, folder / "sample_mask.ome.zarr", voxel_size, kind="labels", overwrite=True)
    eval_mask = write_ome_zarr((1 - sample).astype(np.uint8), folder / "eval_mask.ome.zarr", voxel_size,
                               kind="labels", overwrite=True)
    return DemoData(raw, truth, labels_path, sample_path, eval_mask, train_blocks, validation_block, scores,
                    tuple(synth.raw.shape), voxel_size)


def training_config(data: DemoData, settings: DemoSettings, output_dir: Path) -> dict:
    """A training YAML (the schema `emseg train` reads): one source per annotated block, whose
    ROI adds the network's context around the block (the loss counts only in the sample
    mask), and the held-out validation block scored against the truth."""
    from emseg.models import build

    model = {"architecture": "unet3d", "fmaps": settings.fmaps, "fmap_inc_factor": 2,
             "downsample_factors": [[2, 2, 2], [2, 2, 2]], "upsample": "nearest"}
    context = build("unet3d", **{k: v for k, v in model.items() if k != "architecture"}).context
    train = []
    for i, box in enumerate(data.train_blocks):
        roi = [[max(0, s.start - c // 2), min(n, s.stop + c // 2)] for s, c, n in zip(box, context, data.shape)]
        train.append({"name": f"block{i + 1}", "raw": str(data.raw), "labels": str(data.labels),
                      "sample_mask": str(data.sample_mask), "roi": roi})
    validation = [{"name": "validation", "raw": str(data.raw), "labels": str(data.truth),
                   "roi": box_list(data.validation_block)}]
    return {
        "organelle": "mito", "model": model, "output_shape": [settings.output_shape] * 3,
        "train": train, "validation": validation,
        "iterations": settings.iterations, "max_minutes": settings.max_minutes, "batch_size": 1,
        "learning_rate": settings.learning_rate, "loss": "bce+dice",
        "validate_every": settings.validate_every, "checkpoint_every": 100, "num_workers": settings.num_workers,
        "augment": {"elastic_probability": 0.3},
        "output_dir": str(Path(output_dir).resolve()), "seed": settings.seed, "device": settings.device,
    }


def write_training_yaml(config: dict, path: Path) -> Path:
    import yaml

    header = ("# Written by `emseg demo`: train the same model with `emseg train " + path.name + "`.\n"
              "# Loose annotation: graph cut from simulated strokes on a few blocks; validation on a held-out block.\n")
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path
