"""Throughput (MVox/s) and peak memory of `emseg prepare` steps on the Lucchi volume.

    nice -n 5 python benchmarks/prepare_throughput.py [--data ../shared/data] [--quick]

Every measurement runs in its own subprocess (peak RSS = that process's ru_maxrss) and
includes reading the TIFF and writing the OME-Zarr (with its pyramid), as the CLI does.
Tables:
1. blockwise steps at two volume sizes (z-slabs of Lucchi, full y/x): seconds, MVox/s,
   peak RSS — memory vs volume size;
2. blockwise vs the whole-volume in-memory equivalent (skimage equalize_adapthist /
   match_histograms, scipy/cc3d on the whole array, masks.boundary_exclusion_mask on the
   whole array) on the same ROI, with ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def crop(volume, shape):
    """The volume's corner region of ``shape`` (a lazy Volume; regions keep their coordinates)."""
    return dataclasses.replace(volume, shape=tuple(min(a, b) for a, b in zip(shape, volume.shape)))


def run_step(step: str, mode: str, shape: tuple[int, int, int], data: Path, out: Path, budget: int) -> dict:
    """Run one step (in this process) and return its figures."""
    import numpy as np

    from emseg.io import open_volume, write_ome_zarr
    from emseg.prepare.clahe import clahe
    from emseg.prepare.exclusion import exclusion_mask
    from emseg.prepare.histogram import match_histogram
    from emseg.prepare.sample_mask import SampleMaskConfig, clean, sample_mask, threshold_and_smooth

    image = crop(open_volume(str(data / "lucchi" / "train_image.tif")), shape)
    labels = crop(open_volume(str(data / "lucchi" / "train_mito.tif")), shape)
    reference = open_volume(str(data / "isbi2012" / "train_image.tif"))
    source = labels if step == "exclusion-mask" else image
    start = time.perf_counter()
    kind = "labels" if step in ("sample-mask", "exclusion-mask") else "image"
    if mode == "blockwise":
        result = {
            "clahe": lambda: clahe(image),
            "sample-mask": lambda: sample_mask(image, SampleMaskConfig(max_voxels_in_memory=budget)),
            "exclusion-mask": lambda: exclusion_mask(labels, 4),
            "match-histogram": lambda: match_histogram(image, reference),
        }[step]()
    else:  # whole volume in memory
        from skimage.exposure import equalize_adapthist, match_histograms

        from emseg.masks import boundary_exclusion_mask

        array = source[:, :, :]
        if step == "clahe":
            result = np.rint(equalize_adapthist(array, kernel_size=128, clip_limit=0.02, nbins=256) * 255)
        elif step == "sample-mask":
            result = clean(threshold_and_smooth(array, SampleMaskConfig()), 100_000, 100_000)
        elif step == "exclusion-mask":
            result = boundary_exclusion_mask(array, 4)
        else:
            result = np.rint(match_histograms(array, reference[:, :, :]))
        result = result.astype(np.uint8)
    write_ome_zarr(result, out, image.voxel_size, kind=kind, overwrite=True)
    seconds = time.perf_counter() - start
    voxels = int(np.prod(source.shape))
    return {"step": step, "mode": mode, "shape": list(source.shape), "seconds": seconds,
            "mvox_s": voxels / seconds / 1e6, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(step: str, mode: str, shape, data: Path, tmp: Path, budget: int = 2**27) -> dict:
    """Run ``step`` in a fresh subprocess and parse its JSON line."""
    out = tmp / f"{step}-{mode}-{'x'.join(map(str, shape))}.ome.zarr"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, __file__, "--worker", step, mode, ",".join(map(str, shape)), str(budget),
           "--data", str(data), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        step, mode, shape, budget = args.worker
        shape = tuple(int(v) for v in shape.split(","))
        print(json.dumps(run_step(step, mode, shape, args.data, args.out, int(budget))))
        return 0
    if not (args.data / "lucchi" / "train_image.tif").exists():
        print(f"skipped: Lucchi data not found under {args.data} (pass --data DIR)")
        return 0
    full = (165, 768, 1024)
    z_sizes = {"clahe": (41, 165), "sample-mask": (41, 165), "match-histogram": (41, 165),
               "exclusion-mask": (20, 41)}  # exclusion: scipy rank filters are slow, keep it short
    roi = (128, 256, 256)
    if args.quick:
        z_sizes = {k: (8, 16) for k in z_sizes}
        roi = (32, 128, 128)
    print(f"CPU: {os.cpu_count()} cores, shared with other jobs while measuring (load {os.getloadavg()[0]:.1f})")
    with tempfile.TemporaryDirectory(prefix="emseg-prepare-bench-") as tmp:
        tmp = Path(tmp)
        print("\n1. blockwise, Lucchi z-slabs (full y/x): time includes TIFF read + OME-Zarr write with pyramid")
        print(f"{'step':<34} {'shape (z,y,x)':>16} {'MVox':>7} {'s':>7} {'MVox/s':>7} {'peak RSS MB':>12}")
        rows = [(step, (z, *full[1:]), 2**27) for step, zs in z_sizes.items() for z in zs]
        if not args.quick:
            rows.append(("sample-mask", full, 2**25))  # coarse cleaning (f = 2) at full size
        for step, shape, budget in rows:
            r = measure(step, "blockwise", shape, args.data, tmp, budget)
            label = step + (" (budget 2^25 vox, f=2)" if budget != 2**27 else "")
            mvox = r["shape"][0] * r["shape"][1] * r["shape"][2] / 1e6
            print(f"{label:<34} {str(tuple(r['shape'])):>16} {mvox:7.1f} {r['seconds']:7.1f} {r['mvox_s']:7.2f} "
                  f"{r['peak_rss_mb']:12.0f}", flush=True)
        print(f"\n2. blockwise vs whole-volume in memory, ROI {roi} (both write OME-Zarr)")
        print(f"{'step':<18} {'blockwise MVox/s':>17} {'whole MVox/s':>13} {'speed ratio':>12} "
              f"{'blockwise MB':>13} {'whole MB':>9} {'memory ratio':>13}")
        for step in z_sizes:
            b = measure(step, "blockwise", roi, args.data, tmp)
            w = measure(step, "whole", roi, args.data, tmp)
            print(f"{step:<18} {b['mvox_s']:17.2f} {w['mvox_s']:13.2f} {b['mvox_s'] / w['mvox_s']:12.2f} "
                  f"{b['peak_rss_mb']:13.0f} {w['peak_rss_mb']:9.0f} {b['peak_rss_mb'] / w['peak_rss_mb']:13.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
