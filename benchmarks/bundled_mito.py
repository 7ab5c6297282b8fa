"""Scores of the bundled mito model (or any checkpoint) on the held-out Lucchi slices z 132–164,
at the data's 5 nm, through `emseg.predict` as a user runs it.

    python benchmarks/bundled_mito.py [--model mito] [--data ../shared/data] [--json scores.json]

Rows: (1) the input confined to the held-out slices (an in-memory crop, so no training slice
is even seen as context); (2) the threshold chosen on z 132–147 (by every-voxel F1) and scored on
z 148–164 only (free of the threshold choice); (3) `predict` on the whole volume (neighbouring raw slices give
context; their labels are never used); (4) that, post-processed with `emseg.postprocess`
(components < 20,000 voxels = 2.5·10⁶ nm³ removed). Each row is scored on every voxel and with
ASEM's mito boundary exclusion (voxels within 4 voxels = 20 nm of a labelled boundary are not
scored: the labels here were traced from contours and differ from the official masks by about a
pixel along boundaries). The model's threshold and checkpoint were chosen on this same ROI
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

from _common import DEFAULT_DATA, lucchi_volumes  # noqa: E402

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
    volumes = lucchi_volumes(args.data)
    if volumes is None:
        return 0
    image, labels_volume = volumes
    from emseg.postprocess.pipeline import PostprocessConfig, postprocess

    loaded = load(args.model)
    threshold = loaded.threshold
    truth_all = labels_volume[:, :, :] > 0
    truth = truth_all[HELD_OUT]
    metric = boundary_exclusion_mask(truth.astype(np.uint8), 4) > 0  # ASEM's mito width, at 5 nm: 20 nm
    half = 16

    def score(pred: np.ndarray, part: slice = slice(None)) -> dict:
        """Scores on every voxel, and (``asem_*``) outside ASEM's 4-voxel boundary exclusion."""
        every = voxel_scores(pred, truth[part])
        asem = voxel_scores(pred, truth[part], metric[part])
        return every | {f"asem_{k}": v for k, v in asem.items()}

    rows, start = {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        crop = probabilities(args.model, array_volume(image[HELD_OUT], image.voxel_size), tmp / "crop.zarr",
                             args.tta)
        seconds_crop = time.perf_counter() - start
        rows["held-out slices only"] = score(crop >= threshold)
        chosen = max(THRESHOLDS, key=lambda t: voxel_scores(crop[:half] >= t, truth[:half])["f1"])
        rows[f"z 148–164, threshold {chosen:g} chosen on z 132–147 (every-voxel F1)"] = score(crop[half:] >= chosen,
                                                                            slice(half, None))
        start_whole = time.perf_counter()
        whole = probabilities(args.model, image, tmp / "whole.zarr", args.tta)
        seconds_whole = time.perf_counter() - start_whole
        rows["whole volume through predict"] = score(whole[HELD_OUT] >= threshold)
        postprocess(tmp / "whole.zarr", tmp / "labels.zarr",
                    PostprocessConfig(threshold=threshold, min_size_nm3=20_000 * float(np.prod(image.voxel_size))),
                    overwrite=True)
        labels = np.asarray(open_volume(tmp / "labels.zarr")[HELD_OUT, :, :])
        rows["whole volume, components < 20,000 voxels removed"] = score(labels > 0)
    print(f"model {args.model}{' with flip TTA' if args.tta else ''}: voxel size {loaded.voxel_size} nm, "
          f"threshold {threshold}; "
          f"Lucchi z 132–164 at {image.voxel_size} nm; prediction {seconds_crop:.0f} s for the held-out crop, "
          f"{seconds_whole:.0f} s for the whole {image.shape} volume\n")
    print("| input, setting | F1 | IoU | precision | recall | F1, ASEM exclusion | IoU, ASEM exclusion |")
    print("|---|---|---|---|---|---|---|")
    for name, s in rows.items():
        print(f"| {name} | {s['f1']:.4f} | {s['iou']:.4f} | {s['precision']:.4f} | {s['recall']:.4f} "
              f"| {s['asem_f1']:.4f} | {s['asem_iou']:.4f} |")
    print(f"\nASEM exclusion: voxels within 4 voxels (20 nm) of a labelled boundary are not scored "
          f"({100 * (1 - metric.mean()):.1f} % of the held-out voxels)")
    if args.json:
        args.json.write_text(json.dumps({"threshold": threshold, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
