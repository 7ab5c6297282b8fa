"""Scores of the bundled mito model (or any checkpoint) under the Lucchi protocol, at the data's 5 nm,
through `emseg predict` as a user runs it (the default command: whatever it does by default counts).

    python benchmarks/bundled_mito.py [--model mito] [--data ../shared/data] [--tta] [--json scores.json]

The protocol (`emseg.evaluate.protocol.LUCCHI`): train z 0–99, validation z 105–129 (checkpoint,
threshold and recipe were chosen there), test z 135–164 (scored only to report). The whole
165-slice volume is predicted once, as `emseg predict` would on a user's volume: raw slices next
to a part serve as context, their labels are never used. Every row is scored on every voxel first
(the benchmark's convention), then outside ASEM's mito boundary exclusion (voxels within 4 voxels =
20 nm of a labelled boundary are not scored: the labels were traced from contours and may be a
pixel off along boundaries). The test block is small (about 13 mitochondria), so the spread of the
per-slice IoU is printed with it.

A model whose training saw any of z 105–164 (the bundled v3: trained on z 0–131, its threshold
chosen on z 132–164) is not scored honestly here; its rows are printed for comparison only.
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

from _common import DEFAULT_DATA, lucchi_volumes  # noqa: E402

from emseg.evaluate.protocol import LUCCHI  # noqa: E402
from emseg.io import open_volume  # noqa: E402
from emseg.masks import boundary_exclusion_mask  # noqa: E402
from emseg.metrics import voxel_scores  # noqa: E402
from emseg.models import load  # noqa: E402
from emseg.predict import predict  # noqa: E402

THRESHOLDS = np.round(np.arange(0.30, 0.71, 0.05), 2)
MIN_SIZE_VOXELS = 20_000  # the post-processing row: components smaller than this are removed


def probabilities(model: str, volume, out: Path, tta: bool = False) -> np.ndarray:
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*resampling the input")
        predict(model, volume, out, dtype="float32", allow_resample=True, overwrite=True, tta=tta)
    return np.asarray(zarr.open_group(str(out))["0"])


def part_scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Every-voxel scores, ASEM-exclusion scores (``asem_*``) and the per-slice IoU spread."""
    metric = boundary_exclusion_mask(truth.astype(np.uint8), 4) > 0  # ASEM's mito width at 5 nm
    every = voxel_scores(pred, truth)
    asem = voxel_scores(pred, truth, metric)
    per_slice = [voxel_scores(p, t)["iou"] for p, t in zip(pred, truth) if t.any() or p.any()]
    spread = {"slice_iou_min": float(np.min(per_slice)), "slice_iou_median": float(np.median(per_slice)),
              "slice_iou_max": float(np.max(per_slice))}
    return every | {f"asem_{k}": v for k, v in asem.items()} | spread | {"excluded": float(1 - metric.mean())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mito", help="bundled name or checkpoint path")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path, help="also write the scores here")
    parser.add_argument("--tta", action="store_true", help="predict with flip test-time augmentation")
    parser.add_argument("--sweep", action="store_true",
                        help="also print every-voxel IoU on the validation part for thresholds 0.30-0.70 "
                             "(the choice of the stored threshold; the test part is not looked at)")
    args = parser.parse_args()
    volumes = lucchi_volumes(args.data)
    if volumes is None:
        return 0
    image, labels_volume = volumes
    from emseg.postprocess.pipeline import PostprocessConfig, postprocess

    loaded = load(args.model)
    threshold = loaded.threshold
    truth = labels_volume[:, :, :] > 0
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        whole = probabilities(args.model, image, tmp / "whole.zarr", args.tta)
        seconds = time.perf_counter() - start
        if args.sweep:
            z = LUCCHI.slices("validation")
            sweep = {float(t): voxel_scores(whole[z] >= t, truth[z])["iou"] for t in THRESHOLDS}
            print("validation every-voxel IoU by threshold: "
                  + ", ".join(f"{t:.2f}: {v:.4f}" for t, v in sweep.items())
                  + f"; best {max(sweep, key=sweep.get):.2f}")
        for part in ("test", "validation"):
            z = LUCCHI.slices(part)
            rows[f"{part} z {z.start}–{z.stop - 1}"] = part_scores(whole[z] >= threshold, truth[z])
        postprocess(tmp / "whole.zarr", tmp / "labels.zarr",
                    PostprocessConfig(threshold=threshold,
                                      min_size_nm3=MIN_SIZE_VOXELS * float(np.prod(image.voxel_size))),
                    overwrite=True)
        labels = np.asarray(open_volume(tmp / "labels.zarr")[:, :, :]) > 0
        z = LUCCHI.slices("test")
        rows[f"test z {z.start}–{z.stop - 1}, components < {MIN_SIZE_VOXELS:,} voxels removed"] = \
            part_scores(labels[z], truth[z])
    mvox = float(np.prod(image.shape)) / 1e6
    print(f"model {args.model}{' with flip TTA' if args.tta else ''}: voxel size {loaded.voxel_size} nm, "
          f"threshold {threshold}; Lucchi {tuple(image.shape)} at {tuple(image.voxel_size)} nm predicted in "
          f"{seconds:.0f} s ({mvox / seconds:.2f} MVox/s)\n")
    print("| part | IoU | F1 | precision | recall | IoU, ASEM excl. | F1, ASEM excl. | slice IoU min / median / max |")
    print("|---|---|---|---|---|---|---|---|")
    for name, s in rows.items():
        print(f"| {name} | **{s['iou']:.4f}** | {s['f1']:.4f} | {s['precision']:.4f} | {s['recall']:.4f} "
              f"| {s['asem_iou']:.4f} | {s['asem_f1']:.4f} "
              f"| {s['slice_iou_min']:.3f} / {s['slice_iou_median']:.3f} / {s['slice_iou_max']:.3f} |")
    print(f"\nASEM exclusion: voxels within 4 voxels (20 nm) of a labelled boundary are not scored "
          f"({100 * next(iter(rows.values()))['excluded']:.1f} % of the test voxels)")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "threshold": threshold, "seconds": seconds,
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
