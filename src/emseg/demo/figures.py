"""Overlay PNGs: raw with the truth and each model's instances on a few xy slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emseg.demo.data import Box


def slice_positions(depth: int, blocks: list[Box]) -> list[int]:
    """Three z positions: a quarter, the middle of the annotated blocks, three quarters."""
    middle = (blocks[0][0].start + blocks[0][0].stop) // 2
    return sorted({depth // 4, middle, (3 * depth) // 4})


def outline(ax, box: Box, z: int, color: str, label: str) -> None:
    from matplotlib.patches import Rectangle

    if box[0].start <= z < box[0].stop:
        (y0, y1), (x0, x1) = (box[1].start, box[1].stop), (box[2].start, box[2].stop)
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=color, lw=1.2, ls="--"))
        ax.text(x0 + 1, y0 + 5, label, color=color, fontsize=6)


def overlay(ax, raw: np.ndarray, labels: np.ndarray | None, truth: np.ndarray, title: str) -> None:
    """Raw in grey, ``labels`` as a translucent colour per object, the truth's outline in green."""
    from matplotlib import colormaps

    ax.imshow(raw, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if labels is not None and labels.any():
        hues = (labels.astype(np.float64) * 0.618034) % 1.0  # golden-ratio hues: neighbours differ, never grey
        colours = colormaps["hsv"](hues)
        colours[..., 3] = np.where(labels > 0, 0.45, 0.0)
        ax.imshow(colours, interpolation="nearest")
    if truth.any():
        ax.contour(truth > 0, levels=[0.5], colors="lime", linewidths=0.7)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def write_overlays(folder: Path, raw, truth, predictions: dict[str, object], train_blocks: list[Box],
                   validation_block: Box) -> list[Path]:
    """One PNG per slice: raw | truth | each model's instances; blocks outlined (training yellow,
    validation cyan). ``raw``/``truth``/predictions: `Volume`s or arrays of the same shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for z in slice_positions(raw.shape[0], train_blocks):
        raw_z, truth_z = np.asarray(raw[z]), np.asarray(truth[z])
        panels = [("raw", None), ("truth (instances)", truth_z)]
        panels += [(name, np.asarray(volume[z])) for name, volume in predictions.items()]
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5), dpi=110)
        for ax, (title, labels) in zip(axes, panels):
            overlay(ax, raw_z, labels, truth_z if title != "raw" else np.zeros_like(truth_z), title)
            for i, box in enumerate(train_blocks):
                outline(ax, box, z, "yellow", f"train {i + 1}")
            outline(ax, validation_block, z, "cyan", "validation")
        fig.suptitle(f"z = {z}: green outline = synthetic truth; colours = objects", fontsize=9)
        fig.tight_layout()
        path = folder / f"overlay_z{z:03d}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
