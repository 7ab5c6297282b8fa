"""Graph-cut annotation benchmark: simulated strokes on k planes → IoU vs ground truth, run time,
against the old unaries (intensity histogram + stroke distance) and skimage's random walker on
the same strokes (same run).

    python benchmarks/graphcut.py [--data ../shared/data] [--planes 1,2,3,5] [--axes z,y]

Strokes are drawn from the Lucchi ground truth by `emseg.annotate.simulate_strokes` (object
centre lines inside eroded sections, background centre lines away from objects). The default
weights were tuned on Lucchi ROIs inside z 0–131 (``TUNING_ROIS``); the scored ROIs lie in
z 132–164 (held out). ``ceiling`` is the best IoU any labelling of the supervoxels could reach
(each supervoxel given its majority ground-truth label). ``--rois wide`` scores 11 full-depth
ROIs (165 × 160 × 160) that overlap no tuning ROI in y/x instead: a steadier figure. Timing runs: the largest Lucchi ROI
(165 × 256 × 256) and a 256³ ROI (the 165 planes mirrored to 256).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _common import DEFAULT_DATA, lucchi_volumes  # noqa: E402

from emseg.annotate import graph_cut, simulate_strokes  # noqa: E402

warnings.filterwarnings("ignore", message="The probability range is outside")


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    mask, truth = mask.astype(bool), truth.astype(bool)
    return float((mask & truth).sum() / max((mask | truth).sum(), 1))


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def random_walker_mask(raw: np.ndarray, strokes: np.ndarray, voxel_size) -> np.ndarray:
    from skimage.segmentation import random_walker

    data = raw.astype(np.float32)
    data = (data - data.mean()) / (data.std() + 1e-6)
    spacing = np.asarray(voxel_size, float) / min(voxel_size)
    labels = random_walker(data, strokes.astype(np.int32), beta=130, mode="cg_j", tol=1e-3, spacing=spacing)
    return labels == 1


TUNING_ROIS = "0:64,200:360,300:460;64:128,160:320,640:800;0:64,320:480,480:640;64:128,320:480,480:640"
TEST_ROIS = "132:165,200:360,300:460;132:165,320:480,0:160"
# Full-depth held-out ROIs, chosen by a rule fixed before scoring: the 160 × 160 (y, x) tiles of a
# grid from (0, 0) that overlap no tuning ROI in y/x and hold ≥ 4 % mitochondria, all 165 z-planes.
WIDE_ROIS = ";".join(f"0:165,{y}:{y + 160},{x}:{x + 160}" for y, x in (
    (0, 160), (0, 320), (0, 640), (0, 800), (160, 480), (160, 800), (320, 0), (320, 640), (320, 800),
    (480, 480), (480, 800)))
OLD = dict(learned_weight=0.0, hist_weight=1.0, dist_weight=1.0, smoothness=0.5, compactness=0.1)  # before


def ceiling_iou(supervoxels: np.ndarray, truth: np.ndarray) -> float:
    """IoU of the best supervoxel labelling: every supervoxel takes its majority ground-truth label."""
    n = int(supervoxels.max()) + 1
    count = np.bincount(supervoxels.ravel(), minlength=n)
    inside = np.bincount(supervoxels.ravel(), weights=truth.ravel(), minlength=n)
    return iou((2 * inside > count)[supervoxels], truth)


def parse_box(text: str):
    return tuple(slice(int(a), int(b)) for a, b in (part.split(":") for part in text.split(",")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rois", default=TEST_ROIS, help="scored ROIs z0:z1,y0:y1,x0:x1 separated by ';', "
                        "or 'wide' for the 11 full-depth held-out ROIs (default: held-out ROIs in z 132-164)")
    parser.add_argument("--tuning", action="store_true", help="score the tuning ROIs (z 0-131) instead")
    parser.add_argument("--planes", default="1,2,3,5")
    parser.add_argument("--axes", default="z,y")
    parser.add_argument("--rw-rois", type=int, default=1, help="run the random walker on the first N ROIs "
                        "(it takes 1-2 min per run on a shared 2-core CPU)")
    parser.add_argument("--no-timing", action="store_true", help="skip the 256³ timing runs")
    args = parser.parse_args()
    volumes = lucchi_volumes(args.data)
    if volumes is None:
        return 0
    image, labels = volumes
    voxel_size = image.voxel_size
    rois = (TUNING_ROIS if args.tuning else WIDE_ROIS if args.rois == "wide" else args.rois).split(";")
    print(f"Lucchi at {voxel_size} nm; {'TUNING' if args.tuning else 'scored'} ROIs {rois}; defaults tuned on "
          f"z 0-131 ({TUNING_ROIS}); CPU: {os.cpu_count()} cores shared with other jobs "
          f"(load {os.getloadavg()[0]:.1f})")
    header = (f"{'ROI':>23} {'axis':>4} {'k':>2} {'obj/bg vox':>10} | {'old IoU':>7} {'s':>5} | {'new IoU':>7} {'s':>5} "
              f"{'ceiling':>7} | {'RW IoU':>6} {'s':>6}")
    print(header)
    print("-" * len(header))
    scores: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for n_roi, roi in enumerate(rois):
        box = parse_box(roi)
        raw, truth = image[box], labels[box] > 0
        for axis_name in args.axes.split(","):
            axis = "zyx".index(axis_name)
            for k in (int(v) for v in args.planes.split(",")):
                strokes = simulate_strokes(truth, k, axis=axis)
                head = f"{roi:>23} {axis_name:>4} {k:>2}"
                if not (strokes == 1).any():
                    print(f"{head} (no mitochondrion large enough on these planes)")
                    continue
                old, old_wall, _ = timed(lambda: graph_cut(raw, strokes, voxel_size, **OLD))  # noqa: B023 (called at once)
                new, new_wall, _ = timed(lambda: graph_cut(raw, strokes, voxel_size, keep_supervoxels=True))  # noqa: B023 (called at once)
                assert (new.mask[strokes == 1] == 1).all() and (new.mask[strokes == 2] == 0).all()
                old_iou, new_iou = iou(old.mask, truth), iou(new.mask, truth)
                ceiling = ceiling_iou(new.supervoxels, truth)
                scores.setdefault((axis_name, k), []).append((old_iou, new_iou, ceiling))
                row = (f"{head} {f'{(strokes == 1).sum()}/{(strokes == 2).sum()}':>10} | {old_iou:7.3f} {old_wall:5.1f} | "
                       f"{new_iou:7.3f} {new_wall:5.1f} {ceiling:7.3f} |")
                if n_roi < args.rw_rois:
                    rw, rw_wall, _ = timed(lambda: random_walker_mask(raw, strokes, voxel_size))  # noqa: B023 (called at once)
                    row += f" {iou(rw, truth):6.3f} {rw_wall:6.1f}"
                print(row, flush=True)
    print(f"\nmean over the {'tuning' if args.tuning else 'scored'} ROIs")
    print(f"{'axis':>4} {'k':>2} {'n':>2} | {'old IoU':>7} {'new IoU':>7} {'ceiling':>7}")
    for (axis_name, k), values in scores.items():
        old_iou, new_iou, ceiling = np.mean(values, axis=0)
        print(f"{axis_name:>4} {k:>2} {len(values):>2} | {old_iou:7.3f} {new_iou:7.3f} {ceiling:7.3f}")
    if args.no_timing:
        return 0
    print("\ntiming (graph cut, 3 z-planes of strokes)")
    big = (slice(0, image.shape[0]), slice(256, 512), slice(384, 640))
    raw, truth = image[big], labels[big] > 0
    mirrored = (np.concatenate([raw, raw[::-1]])[:256], np.concatenate([truth, truth[::-1]])[:256])
    for name, (vol, gt) in (("165×256×256", (raw, truth)), ("256×256×256 (z mirrored)", mirrored)):
        strokes = simulate_strokes(gt, 3, axis=0)
        result, wall, cpu = timed(lambda: graph_cut(vol, strokes, voxel_size))  # noqa: B023 (called at once)
        steps = ", ".join(f"{key} {value:.1f}" for key, value in result.timings.items())
        print(f"{name:>26}: IoU {iou(result.mask, gt):.3f}, wall {wall:.1f} s, cpu {cpu:.1f} s "
              f"({result.n_supervoxels} supervoxels; wall per step: {steps}); load {os.getloadavg()[0]:.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
