"""Graph-cut annotation benchmark: simulated strokes on k planes → IoU vs ground truth, run time,
against skimage's random walker on the same strokes (same run).

    python benchmarks/graphcut.py [--data ../shared/data] [--planes 1,2,3,5] [--axes z,y]

Strokes are drawn from the Lucchi ground truth by `emseg.annotate.simulate_strokes` (object
centre lines inside eroded sections, background centre lines away from objects). Timing runs:
the largest Lucchi ROI (165 × 256 × 256) and a 256³ ROI (the 165 planes mirrored to 256).
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

from emseg.annotate import graph_cut, simulate_strokes  # noqa: E402
from emseg.io import open_volume  # noqa: E402

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


def parse_box(text: str):
    return tuple(slice(int(a), int(b)) for a, b in (part.split(":") for part in text.split(",")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--roi", default="0:64,200:360,300:460", help="sweep ROI z0:z1,y0:y1,x0:x1")
    parser.add_argument("--planes", default="1,2,3,5")
    parser.add_argument("--axes", default="z,y")
    parser.add_argument("--rw-planes", default="1,2,3,5", help="k values that also run the random walker ('' = none; "
                        "it takes minutes per run on a shared 2-core CPU)")
    parser.add_argument("--no-timing", action="store_true", help="skip the 256³ timing runs")
    args = parser.parse_args()
    image_path = args.data / "lucchi" / "train_image.tif"
    if not image_path.exists():
        print(f"skipped: Lucchi data not found at {image_path} (pass --data DIR)")
        return 0
    image = open_volume(image_path)
    labels = open_volume(args.data / "lucchi" / "train_mito.tif")
    voxel_size = image.voxel_size
    box = parse_box(args.roi)
    raw, truth = image[box], labels[box] > 0
    print(f"Lucchi ROI {args.roi} {raw.shape} at {voxel_size} nm, {truth.mean():.1%} mitochondria; "
          f"CPU: {os.cpu_count()} cores shared with other jobs (load {os.getloadavg()[0]:.1f})")
    header = f"{'axis':>4} {'k':>2} {'obj/bg stroke vox':>17} | {'GC IoU':>6} {'wall s':>6} {'cpu s':>6}"
    rw_planes = {int(v) for v in args.rw_planes.split(",") if v}
    if rw_planes:
        header += f" | {'RW IoU':>6} {'wall s':>6} {'cpu s':>6} | {'ΔIoU':>6} {'speed-up':>8}"
    print(header)
    print("-" * len(header))
    for axis_name in args.axes.split(","):
        axis = "zyx".index(axis_name)
        for k in (int(v) for v in args.planes.split(",")):
            strokes = simulate_strokes(truth, k, axis=axis)
            if not (strokes == 1).any():
                print(f"{axis_name:>4} {k:>2} {'no object stroke':>17} | (no mitochondrion large enough on these planes)")
                continue
            result, wall, cpu = timed(lambda: graph_cut(raw, strokes, voxel_size))
            gc_iou = iou(result.mask, truth)
            assert (result.mask[strokes == 1] == 1).all() and (result.mask[strokes == 2] == 0).all()
            row = (f"{axis_name:>4} {k:>2} {f'{(strokes == 1).sum()}/{(strokes == 2).sum()}':>17} | "
                   f"{gc_iou:6.3f} {wall:6.1f} {cpu:6.1f}")
            if k in rw_planes:
                rw, rw_wall, rw_cpu = timed(lambda: random_walker_mask(raw, strokes, voxel_size))
                rw_iou = iou(rw, truth)
                row += f" | {rw_iou:6.3f} {rw_wall:6.1f} {rw_cpu:6.1f} | {gc_iou - rw_iou:+6.3f} {rw_wall / wall:7.1f}×"
            print(row, flush=True)
    if args.no_timing:
        return 0
    print("\ntiming (graph cut, 3 z-planes of strokes)")
    big = (slice(0, image.shape[0]), slice(256, 512), slice(384, 640))
    raw, truth = image[big], labels[big] > 0
    mirrored = (np.concatenate([raw, raw[::-1]])[:256], np.concatenate([truth, truth[::-1]])[:256])
    for name, (vol, gt) in (("165×256×256", (raw, truth)), ("256×256×256 (z mirrored)", mirrored)):
        strokes = simulate_strokes(gt, 3, axis=0)
        result, wall, cpu = timed(lambda: graph_cut(vol, strokes, voxel_size))
        steps = ", ".join(f"{key} {value:.1f}" for key, value in result.timings.items())
        print(f"{name:>26}: IoU {iou(result.mask, gt):.3f}, wall {wall:.1f} s, cpu {cpu:.1f} s "
              f"({result.n_supervoxels} supervoxels; wall per step: {steps}); load {os.getloadavg()[0]:.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
