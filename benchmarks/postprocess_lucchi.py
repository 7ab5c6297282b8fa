"""Blockwise post-processing, evaluation and measurement on a real label volume.

    python benchmarks/postprocess_lucchi.py [--data ../shared/data] [--block 64 256 256]

Reports (1) blockwise vs whole-volume agreement (connected components, voxel scores,
per-object measurements), (2) throughput in MVox/s against in-memory baselines measured in
the same run (cc3d on the whole array; skimage regionprops_table), and (3) peak memory
(RSS, each step in a fresh subprocess) against the volume's in-memory size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(step: str, zarr_path: str, out_dir: str, block: list[int]) -> dict:
    """One step in this (fresh) process; returns its time and peak RSS."""
    import dask

    dask.config.set(num_workers=2)
    from emseg.io import open_volume

    before = peak_rss_mb()
    start = time.perf_counter()
    if step == "postprocess":
        from emseg.postprocess.pipeline import PostprocessConfig, postprocess

        info = postprocess(zarr_path, Path(out_dir) / "labels.ome.zarr",
                           PostprocessConfig(block=tuple(block), min_size_nm3=0), overwrite=True)
        extra = {"objects": info["objects"]}
    elif step == "measure":
        from emseg.measure.objects import measure

        table = measure(str(Path(out_dir) / "labels.ome.zarr"), block=tuple(block))
        table.to_csv(Path(out_dir) / "table_blockwise.csv")
        extra = {"objects": len(table)}
    elif step == "whole_cc":
        import cc3d

        volume = open_volume(zarr_path)
        labels, n = cc3d.connected_components(volume[:, :, :] > 0, connectivity=26, return_N=True)
        extra = {"objects": int(n)}
    elif step == "whole_regionprops":
        import cc3d
        from skimage.measure import regionprops_table

        volume = open_volume(zarr_path)
        labels = cc3d.connected_components(volume[:, :, :] > 0, connectivity=26)
        start = time.perf_counter()  # time the measurement only (cc3d timed above)
        props = regionprops_table(labels, spacing=volume.voxel_size,
                                  properties=("label", "area", "centroid", "bbox", "axis_major_length"))
        extra = {"objects": len(props["label"])}
    else:
        raise SystemExit(f"unknown step {step}")
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before, **extra}


def run_child(step: str, zarr_path: Path, out_dir: Path, block) -> dict:
    cmd = [sys.executable, __file__, "--child", step, "--zarr", str(zarr_path), "--out", str(out_dir),
           "--block", *map(str, block)]
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def agreement(zarr_path: Path, out_dir: Path, block) -> list[str]:
    import cc3d
    import pandas as pd

    from emseg.evaluate.pipeline import evaluate
    from emseg.io import open_volume
    from emseg.masks import boundary_exclusion_mask
    from emseg.measure.objects import measure
    from emseg.metrics import voxel_scores

    truth = open_volume(str(zarr_path))[:, :, :]
    blockwise = open_volume(str(out_dir / "labels.ome.zarr"))[:, :, :]
    whole, n = cc3d.connected_components(truth > 0, connectivity=26, return_N=True)
    pairs = np.unique(np.stack([blockwise[whole > 0], whole[whole > 0]]), axis=1)
    same = (np.array_equal(blockwise > 0, whole > 0) and len(np.unique(pairs[0])) == pairs.shape[1]
            == len(np.unique(pairs[1])))
    lines = [f"connected components: blockwise {int(blockwise.max())} objects, whole-volume cc3d {n}; "
             f"identical up to renumbering: {same}"]
    # voxel scores of an eroded GT (a 'prediction' with errors) vs the whole-array metrics
    from scipy import ndimage

    pred = ndimage.binary_erosion(truth > 0, iterations=2).astype(np.uint8)
    result = evaluate(pred, truth, exclusion_width=2, voxel_size=(5, 5, 5), instances=False, block=block)["voxel"]
    reference = voxel_scores(pred, truth, boundary_exclusion_mask(truth, 2))
    diff = max(abs(result[k] - reference[k]) for k in ("precision", "recall", "f1", "iou"))
    lines.append(f"voxel scores (eroded GT, exclusion 2): F1 {result['f1']:.5f}, |blockwise - whole| max {diff:.2e}")
    blockwise_table = pd.read_csv(out_dir / "table_blockwise.csv", index_col="id")
    whole_table = measure(blockwise, voxel_size=(5, 5, 5), block=blockwise.shape)
    cols = [c for c in whole_table.columns if c != "touches_border"]
    rel = np.nanmax(np.abs(blockwise_table[cols].to_numpy(float) - whole_table[cols].to_numpy(float))
                    / np.maximum(np.abs(whole_table[cols].to_numpy(float)), 1e-9))
    lines.append(f"measurements ({len(cols)} columns x {len(whole_table)} objects): max relative "
                 f"|blockwise - one block| {rel:.2e}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--block", type=int, nargs=3, default=[64, 256, 256])
    parser.add_argument("--child")
    parser.add_argument("--zarr")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.zarr, args.out, args.block)))
        return
    source = args.data / "lucchi" / "train_mito.tif"
    if not source.exists():
        print(f"skipped: {source} not found (pass --data DIR)")
        return
    sys.path.insert(0, str(ROOT / "src"))
    from emseg.io import open_volume, write_ome_zarr

    volume = open_volume(str(source))
    mvox = volume.size / 1e6
    with tempfile.TemporaryDirectory(prefix="emseg-bench-") as tmp:
        tmp = Path(tmp)
        zarr_path = write_ome_zarr(volume, tmp / "mito.ome.zarr", chunks=64, levels=1, kind="labels")
        rows = {step: run_child(step, zarr_path, tmp, args.block)
                for step in ("postprocess", "measure", "whole_cc", "whole_regionprops")}
        lines = agreement(zarr_path, tmp, args.block)
    block_mb = np.prod(args.block) * 4 / 2**20
    print(f"lucchi train_mito: {volume.shape} = {mvox:.1f} MVox at {volume.voxel_size} nm; "
          f"block {tuple(args.block)} ({block_mb:.0f} MiB as uint32); whole labels in memory "
          f"{volume.size * 4 / 2**20:.0f} MiB (uint32)")
    print("\n## agreement")
    print("\n".join(lines))
    print("\n## throughput and peak memory (fresh process per step; 2 dask threads; CPU shared)")
    print(f"{'step':<34} {'objects':>7} {'s':>7} {'MVox/s':>7} {'peak RSS MiB':>12} {'above import':>12}")
    names = {"postprocess": "postprocess blockwise (zarr→zarr)", "whole_cc": "baseline cc3d whole array (+read)",
             "measure": "measure blockwise (+surfaces)", "whole_regionprops": "baseline regionprops_table"}
    for step, r in rows.items():
        print(f"{names[step]:<34} {r['objects']:>7} {r['seconds']:>7.2f} {mvox / r['seconds']:>7.1f} "
              f"{r['peak_rss_mb']:>12.0f} {r['peak_rss_mb'] - r['rss_before_mb']:>12.0f}")
    print(f"ratios: postprocess / cc3d time {rows['postprocess']['seconds'] / rows['whole_cc']['seconds']:.1f}x; "
          f"measure / regionprops time {rows['measure']['seconds'] / rows['whole_regionprops']['seconds']:.1f}x")


if __name__ == "__main__":
    main()
