"""Strokes correcting a model: graph cut with the bundled mito model's probabilities as a prior
(`graph_cut(..., prior=p)`, `emseg annotate --prior`) vs strokes alone vs the model alone.

    python benchmarks/graphcut_prior.py [--data ../shared/data] [--weights 1,3]

ROIs: the 33 × 256 × 256 tiles of Lucchi z 132–164 (a grid from y, x = 0) holding ≥ 4 %
mitochondria. The model never trained on these slices (it trained on z 0–131; z 132–164 chose
its threshold). Probabilities come from `emseg predict` on the whole volume (neighbouring raw
slices as context), as a user would run it; "model alone" is thresholded at the model's stored
threshold, as `emseg postprocess` does. Strokes: `simulate_strokes` on k planes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import DEFAULT_DATA, lucchi_volumes  # noqa: E402
from bundled_mito import probabilities  # noqa: E402
from graphcut import iou  # noqa: E402

from emseg.annotate import graph_cut, simulate_strokes  # noqa: E402
from emseg.models import load  # noqa: E402

HELD_OUT = slice(132, 165)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--weights", default="1,3", help="prior weights to score")
    parser.add_argument("--planes", default="1,3")
    args = parser.parse_args()
    volumes = lucchi_volumes(args.data)
    if volumes is None:
        return 0
    image, labels = volumes
    threshold = load("mito").threshold  # the model alone: as `emseg postprocess` thresholds it
    with tempfile.TemporaryDirectory() as tmp:
        prob = probabilities("mito", image, Path(tmp) / "mito.zarr")[HELD_OUT]
    raw_all = np.asarray(image[HELD_OUT])
    truth_all = np.asarray(labels[HELD_OUT]) > 0
    weights = [float(w) for w in args.weights.split(",")]
    tiles = [(y, x) for y in range(0, 768 - 255, 256) for x in range(0, 1024 - 255, 256)
             if truth_all[:, y:y + 256, x:x + 256].mean() >= 0.04]
    print(f"ROIs (z 132:165, 256 × 256 from y, x): {tiles}; model threshold {threshold}")
    priors = " | ".join(f"strokes + prior (w {w:g})" for w in weights)
    header = f"| ROI y,x | axis | k | model alone | strokes alone | {priors} |"
    print(header + "\n" + "|---" * (header.count("|") - 1) + "|")
    scores: dict[tuple, list[float]] = {}
    for y, x in tiles:
        box = (slice(None), slice(y, y + 256), slice(x, x + 256))
        raw, truth, p = raw_all[box], truth_all[box], prob[box]
        model = iou(p >= threshold, truth)
        for axis_name in ("z", "y"):
            for k in (int(v) for v in args.planes.split(",")):
                strokes = simulate_strokes(truth, k, axis="zyx".index(axis_name))
                if not (strokes == 1).any() or not (strokes == 2).any():
                    continue
                row = [model, iou(graph_cut(raw, strokes, image.voxel_size).mask, truth)]
                row += [iou(graph_cut(raw, strokes, image.voxel_size, prior=p, prior_weight=w,
                                      prior_threshold=threshold).mask, truth)
                        for w in weights]
                scores.setdefault((axis_name, k), []).append(row)
                print(f"| {y},{x} | {axis_name} | {k} | " + " | ".join(f"{v:.3f}" for v in row) + " |", flush=True)
    print("\nmean IoU over the ROIs\n")
    print(header.replace("ROI y,x | ", "") + "\n" + "|---" * (header.count("|") - 2) + "|")
    for (axis_name, k), rows in scores.items():
        mean = np.mean(rows, axis=0)
        print(f"| {axis_name} | {k} | " + " | ".join(f"{v:.3f}" for v in mean) + f" |  (n = {len(rows)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
