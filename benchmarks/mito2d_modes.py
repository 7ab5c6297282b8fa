"""The 2D mitochondria model under the Lucchi protocol: inference modes, threshold, and the 2D + 3D
ensemble, through `emseg predict` as a user runs it (issue #22 items 2 and 3).

    python benchmarks/mito2d_modes.py --model runs/mito2d.pt [--data ../shared/data] [--json out.json]

1. Validation (z 105–129; choices are made here): every-voxel IoU by threshold (0.30–0.80) for stack
   and stack + flips on the whole part; stack, orthoplane and orthoplane + flips on a crop
   (y 256–511, x 384–639: orthoplane runs the net on three planes of cubic blocks, about 10× the
   work of stack). The best mode and threshold are printed.
2. Test (z 135–164; scored only to report): stack and the best-validated mode's row on the whole test
   block at the validated threshold; orthoplane on the crop; then `mito`, this model, and their
   ensemble (`emseg predict mito,MODEL`: probabilities averaged on the 5 nm grid, threshold the mean
   of the members') on the whole test block.
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
sys.path.insert(0, str(Path(__file__).parent))

from _common import DEFAULT_DATA, lucchi_volumes  # noqa: E402

from emseg.evaluate.protocol import LUCCHI  # noqa: E402
from emseg.metrics import voxel_scores  # noqa: E402
from emseg.models import load  # noqa: E402
from emseg.predict import predict  # noqa: E402

THRESHOLDS = np.round(np.arange(0.30, 0.81, 0.05), 2)
CROP = (slice(256, 512), slice(384, 640))


def probabilities(model: str, image, z: slice, yx=(slice(None), slice(None)), **options) -> tuple[np.ndarray, float]:
    """Float probabilities of ``model`` on the ROI (z, *yx) and the seconds it took."""
    import zarr

    ny, nx = image.shape[1:]
    roi = [[z.start, z.stop], [yx[0].start or 0, yx[0].stop or ny], [yx[1].start or 0, yx[1].stop or nx]]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*resampling the input")
        start = time.perf_counter()
        predict(model, image, Path(tmp) / "p.zarr", roi=roi, dtype="float32", allow_resample=True, **options)
        seconds = time.perf_counter() - start
        data = np.asarray(zarr.open_group(str(Path(tmp) / "p.zarr"))["0"][z, yx[0], yx[1]])
    return data, seconds


def sweep(prob: np.ndarray, truth: np.ndarray) -> dict[float, float]:
    return {float(t): voxel_scores(prob >= t, truth)["iou"] for t in THRESHOLDS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    volumes = lucchi_volumes(args.data)
    if volumes is None:
        return 0
    image, labels = volumes
    val, test = LUCCHI.slices("validation"), LUCCHI.slices("test")
    truth = {part: np.asarray(labels[z]) > 0 for part, z in (("validation", val), ("test", test))}
    modes = {"stack": {"mode": "stack", "tta": False}, "stack + flips": {"mode": "stack", "tta": True},
             "orthoplane": {"mode": "orthoplane", "tta": False},
             "orthoplane + flips": {"mode": "orthoplane", "tta": True}}
    out: dict = {"model": args.model, "validation": {}, "validation_crop": {}, "test": {}}
    for name in ("stack", "stack + flips"):
        prob, seconds = probabilities(args.model, image, val, **modes[name])
        out["validation"][name] = {"sweep": sweep(prob, truth["validation"]), "seconds": seconds}
        if name == "stack":
            stack_val = prob
    crop_truth = truth["validation"][:, CROP[0], CROP[1]]
    out["validation_crop"]["stack"] = {"sweep": sweep(stack_val[:, CROP[0], CROP[1]], crop_truth)}
    for name in ("orthoplane", "orthoplane + flips"):
        prob, seconds = probabilities(args.model, image, val, CROP, **modes[name])
        out["validation_crop"][name] = {"sweep": sweep(prob, crop_truth), "seconds": seconds}
    for part in ("validation", "validation_crop"):
        for name, row in out[part].items():
            best = max(row["sweep"], key=row["sweep"].get)
            row.update(best_threshold=best, best_iou=row["sweep"][best])
            print(f"{part:16s} {name:20s} best IoU {row['best_iou']:.4f} at {best:.2f}"
                  + (f"  ({row['seconds']:.0f} s)" if "seconds" in row else ""))
    # the choice: whole-part rows decide between stack and stack + flips; the crop decides whether
    # orthoplane beats stack
    whole = out["validation"]
    best_stack = max(whole, key=lambda n: whole[n]["best_iou"])
    crop = out["validation_crop"]
    best_crop = max(crop, key=lambda n: crop[n]["best_iou"])
    chosen = best_crop if best_crop.startswith("orthoplane") else best_stack
    threshold = (crop if chosen.startswith("orthoplane") else whole)[chosen]["best_threshold"]
    out["chosen"] = {"mode": chosen, "threshold": threshold}
    print(f"chosen on validation: {chosen} at threshold {threshold:.2f}")

    loaded_mito = load("mito")
    test_rows = {}
    prob2d, s2d = probabilities(args.model, image, test, **modes["stack"])
    test_rows["mito2d stack"] = voxel_scores(prob2d >= whole["stack"]["best_threshold"], truth["test"]) | {"seconds": s2d}
    if chosen != "stack":
        if chosen.startswith("orthoplane"):
            prob, seconds = probabilities(args.model, image, test, CROP, **modes[chosen])
            test_rows[f"mito2d {chosen}, crop"] = voxel_scores(prob >= threshold, truth["test"][:, CROP[0], CROP[1]])
            test_rows["mito2d stack, crop"] = voxel_scores(prob2d[:, CROP[0], CROP[1]] >= whole["stack"]["best_threshold"],
                                                           truth["test"][:, CROP[0], CROP[1]])
        else:
            prob, seconds = probabilities(args.model, image, test, **modes[chosen])
            test_rows[f"mito2d {chosen}"] = voxel_scores(prob >= threshold, truth["test"]) | {"seconds": seconds}
    prob3d, s3d = probabilities("mito", image, test)
    test_rows["mito (3D)"] = voxel_scores(prob3d >= loaded_mito.threshold, truth["test"]) | {"seconds": s3d}
    ens, sens = probabilities(f"mito,{args.model}", image, test)
    ens_threshold = (loaded_mito.threshold + threshold) / 2
    test_rows["ensemble mito + mito2d"] = voxel_scores(ens >= ens_threshold, truth["test"]) | {"seconds": sens}
    out["test"] = test_rows
    print(f"\n| test z {test.start}–{test.stop - 1} | IoU | F1 | precision | recall |\n|---|---|---|---|---|")
    for name, s in test_rows.items():
        print(f"| {name} | **{s['iou']:.4f}** | {s['f1']:.4f} | {s['precision']:.4f} | {s['recall']:.4f} |")
    print(f"(ensemble threshold {ens_threshold:.3f} = mean of the members' {loaded_mito.threshold} and {threshold})")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
