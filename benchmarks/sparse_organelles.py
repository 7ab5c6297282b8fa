"""Scores of the sparse-slice organelle models (bundled vesicles, psd, membranes, or any checkpoint)
on the Lucchi sparse markup, through `emseg predict` as a user runs it.

    python benchmarks/sparse_organelles.py [--models vesicles,psd,membranes] [--data ../shared/data]
                                           [--sweep] [--json scores.json]

The split (`emseg.evaluate.protocol.LUCCHI_SPARSE`): of the 27 annotated slices, z 0–105 train,
118 and 135 validate (checkpoint, threshold, recipe), 161–164 test (scored only to report). Each
annotated slice is predicted as a one-slice ROI of the whole volume (a 3D model reads its context
from the unannotated slices around it), then F1 and IoU are computed on every pixel of the
annotated slices: every voxel first, then outside a 1-pixel band
along labelled boundaries (the markup was drawn by other hands: edges may be a pixel off). The 95 %
interval of the test F1 is a bootstrap over 128 × 128-pixel tiles (each tile holding its 4 test
slices, since neighbouring slices are not independent), 2,000 resamples.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _common import DEFAULT_DATA  # noqa: E402

from emseg.evaluate.protocol import LUCCHI_SPARSE  # noqa: E402
from emseg.io import open_volume  # noqa: E402
from emseg.masks import boundary_exclusion_mask  # noqa: E402
from emseg.metrics import confusion_counts, scores_from_counts  # noqa: E402
from emseg.models import load  # noqa: E402
from emseg.predict import predict  # noqa: E402

THRESHOLDS = np.round(np.arange(0.10, 0.91, 0.05), 2)
TILE = 128


def annotated_slices(mask_volume, part: str) -> list[int]:
    z = LUCCHI_SPARSE.slices(part)
    return [int(i) for i in range(z.start, z.stop) if np.asarray(mask_volume[i:i + 1]).any()]


def slice_probabilities(model: str, image, z: int, tta: bool | None = None) -> np.ndarray:
    """Foreground probability of slice ``z``, through `emseg predict` with a one-slice ROI."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*resampling the input")
        roi = [[z, z + 1], [0, image.shape[1]], [0, image.shape[2]]]
        predict(model, image, Path(tmp) / "p.zarr", roi=roi, dtype="float32", allow_resample=True,
                chunks=(1, 256, 256), block_shape=(1, 256, 256), tta=tta)  # a 2D net computes only this slice
        return np.asarray(open_volume(Path(tmp) / "p.zarr")[z])


def bootstrap_f1(pred: np.ndarray, truth: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of F1 over resampled tile columns (z, TILE, TILE)."""
    ny, nx = truth.shape[1] // TILE, truth.shape[2] // TILE
    counts = np.zeros((ny * nx, 3))
    for i in range(ny):
        for j in range(nx):
            box = (slice(None), slice(i * TILE, (i + 1) * TILE), slice(j * TILE, (j + 1) * TILE))
            p, t = pred[box], truth[box]
            counts[i * nx + j] = [np.sum(p & t), np.sum(p & ~t), np.sum(~p & t)]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(counts), (resamples, len(counts)))
    tp, fp, fn = (counts[picks].sum(1)).T
    f1 = tp / np.maximum(tp + (fp + fn) / 2, 1)
    return float(np.percentile(f1, 2.5)), float(np.percentile(f1, 97.5))


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    edge = boundary_exclusion_mask(truth.astype(np.uint8), 1) > 0
    every = scores_from_counts(confusion_counts(pred, truth))
    inner = scores_from_counts(confusion_counts(pred, truth, edge))
    return {**{k: every[k] for k in ("f1", "iou", "precision", "recall")},
            "f1_excl": inner["f1"], "iou_excl": inner["iou"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vesicles,psd,membranes", help="bundled names or checkpoint paths")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sweep", action="store_true",
                        help="only print the validation F1 by threshold (to choose the stored threshold; the test "
                             "slices are not scored)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="flip test-time augmentation on/off (default: what the checkpoint stores)")
    args = parser.parse_args()
    lucchi = args.data / "lucchi"
    if not (lucchi / "train_sparse_annotated.tif").exists():
        print(f"skipped: Lucchi sparse markup not found in {lucchi} (pass --data DIR)")
        return 0
    image = open_volume(lucchi / "train_image.tif")
    annotated = open_volume(lucchi / "train_sparse_annotated.tif")
    parts = {part: annotated_slices(annotated, part) for part in ("validation", "test")}
    results = []
    for model in args.models.split(","):
        loaded = load(model)
        truth_volume = open_volume(lucchi / f"train_sparse_{loaded.organelle}.tif")
        wanted = parts["validation"] if args.sweep else parts["validation"] + parts["test"]
        start = time.perf_counter()
        prob = {z: slice_probabilities(model, image, z, args.tta) for z in wanted}
        seconds = time.perf_counter() - start
        row = {"model": model, "organelle": loaded.organelle, "architecture": loaded.architecture,
               "voxel_size": list(loaded.voxel_size), "threshold": loaded.threshold, "predict_s": seconds}
        for part, zs in ((p, parts[p]) for p in (("validation",) if args.sweep else ("validation", "test"))):
            truth = np.stack([np.asarray(truth_volume[z:z + 1])[0] > 0 for z in zs])
            p = np.stack([prob[z] for z in zs])
            if part == "validation" and args.sweep:
                sweep = {float(t): scores_from_counts(confusion_counts(p >= t, truth))["f1"] for t in THRESHOLDS}
                row["validation_sweep"] = sweep
                print(f"{model}: validation F1 by threshold: " + ", ".join(f"{t:.2f}: {v:.4f}" for t, v in sweep.items())
                      + f"; best {max(sweep, key=sweep.get):.2f}")
                continue
            row[part] = scores(p >= loaded.threshold, truth)
            if part == "test":
                row[part]["f1_interval"] = bootstrap_f1(p >= loaded.threshold, truth)
        results.append(row)
    if args.sweep:
        return 0
    print("\n| model | organelle | net | threshold | test F1 (95 % interval) | test IoU | test F1 / IoU, 1-px edge excl. "
          "| validation F1 / IoU |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        t, v = r["test"], r["validation"]
        lo, hi = t["f1_interval"]
        print(f"| {r['model']} | {r['organelle']} | {r['architecture']} at {r['voxel_size']} nm | {r['threshold']:.2f} "
              f"| **{t['f1']:.3f}** ({lo:.3f}–{hi:.3f}) | {t['iou']:.3f} | {t['f1_excl']:.3f} / {t['iou_excl']:.3f} "
              f"| {v['f1']:.3f} / {v['iou']:.3f} |")
    print(f"\nvalidation slices {parts['validation']}, test slices {parts['test']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
