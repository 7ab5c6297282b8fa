"""Scores of the bundled mito model (or any checkpoint) on the held-out Lucchi slices z 132–164,
at the data's 5 nm, through `emseg.predict` as a user runs it.

    python benchmarks/bundled_mito.py [--model mito] [--data ../shared/data] [--json scores.json]

Rows: (1) the input confined to the held-out slices (an in-memory crop, so no training slice
is even seen as context); (2) the same with ASEM's 4-voxel boundary exclusion; (3) the
threshold chosen on z 132–147 and scored on z 148–164 only (free of the threshold choice);
(4) `predict` on the whole volume (neighbouring raw slices give context; their labels are
never used); (5) that, post-processed with `emseg.postprocess` (components < 20,000 voxels
= 2.5·10⁶ nm³ removed). The model's threshold and checkpoint were chosen on this same ROI
during training, so these are validation figures (the Lucchi test volume is not available).
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

from _common import DEFAULT_DATA, lucchi_paths  # noqa: E402

from emseg.io import array_volume, open_volume  # noqa: E402
from emseg.masks import boundary_exclusion_mask  # noqa: E402
from emseg.metrics import voxel_scores  # noqa: E402
from emseg.models import load  # noqa: E402
from emseg.predict import predict  # noqa: E402

HELD_OUT = slice(132, 165)
THRESHOLDS = np.round(np.arange(0.30, 0.91, 0.05), 2)


def probabilities(model: str, volume, out: Path, tta: bool = False) -> np.ndarray:
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*resampling the input")
        predict(model, volume, out, dtype="float32", allow_resample=True, overwrite=True, tta=tta)
    return np.asarray(zarr.open_group(str(out))["0"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mito", help="bundled name or checkpoint path")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path, help="also write the scores here")
    parser.add_argument("--tta", action="store_true", help="predict with flip test-time augmentation")
    args = parser.parse_args()
    paths = lucchi_paths(args.data)
    if paths is None:
        return 0
    image_path, labels_path = paths
    from emseg.postprocess.pipeline import PostprocessConfig, postprocess

    loaded = load(args.model)
    threshold = loaded.threshold
    image = open_volume(image_path)
    truth_all = open_volume(labels_path)[:, :, :] > 0
    truth = truth_all[HELD_OUT]
    rows, start = {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        crop = probabilities(args.model, array_volume(image[HELD_OUT], image.voxel_size), tmp / "crop.zarr",
                             args.tta)
        seconds_crop = time.perf_counter() - start
        rows["held-out slices only"] = voxel_scores(crop >= threshold, truth)
        rows["held-out slices only, ASEM 4-voxel boundary exclusion"] = voxel_scores(
            crop >= threshold, truth, boundary_exclusion_mask(truth.astype(np.uint8), 4) > 0)
        half = 16
        chosen = max(THRESHOLDS, key=lambda t: voxel_scores(crop[:half] >= t, truth[:half])["f1"])
        rows[f"z 148–164, threshold {chosen:g} chosen on z 132–147"] = voxel_scores(crop[half:] >= chosen,
                                                                                    truth[half:])
        start_whole = time.perf_counter()
        whole = probabilities(args.model, image, tmp / "whole.zarr", args.tta)
        seconds_whole = time.perf_counter() - start_whole
        rows["whole volume through predict"] = voxel_scores(whole[HELD_OUT] >= threshold, truth)
        postprocess(tmp / "whole.zarr", tmp / "labels.zarr",
                    PostprocessConfig(threshold=threshold, min_size_nm3=20_000 * float(np.prod(image.voxel_size))),
                    overwrite=True)
        labels = np.asarray(open_volume(tmp / "labels.zarr")[HELD_OUT, :, :])
        rows["whole volume, components < 20,000 voxels removed"] = voxel_scores(labels > 0, truth)
    print(f"model {args.model}{' with flip TTA' if args.tta else ''}: voxel size {loaded.voxel_size} nm, "
          f"threshold {threshold}; "
          f"Lucchi z 132–164 at {image.voxel_size} nm; prediction {seconds_crop:.0f} s for the held-out crop, "
          f"{seconds_whole:.0f} s for the whole {image.shape} volume")
    header = f"{'':58} {'F1':>6} {'IoU':>6} {'prec':>6} {'recall':>6}"
    print(header)
    for name, s in rows.items():
        print(f"{name:58} {s['f1']:6.4f} {s['iou']:6.4f} {s['precision']:6.4f} {s['recall']:6.4f}")
    if args.json:
        args.json.write_text(json.dumps({"threshold": threshold, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
