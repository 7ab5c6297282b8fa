"""Blockwise prediction throughput and memory: emseg.predict vs pure forward vs MONAI.

    nice -n 5 python benchmarks/predict_throughput.py [--repeats 3] [--threads 1]

1. end-to-end (zarr in → OME-Zarr out, through `emseg.predict.predict`) ÷ pure forward
   (the same model on the same blocks, inputs already in memory): goal ≥ 0.90;
2. vs `monai.inferers.sliding_window_inference` on the same network and volume (the
   valid-conv net's output is padded back to its window, the volume is mirror-padded by the
   context and the window step equals our block, so both do the same forward passes): time
   and peak RSS, each in a fresh process;
3. peak RSS of emseg.predict on a volume 8× larger (goal < 10 % growth);
4. with ``--big``, time and peak RSS of both on a 64× larger volume (MONAI holds it all in memory).
The CPU is shared with other jobs while this runs: figures are medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_net(fmaps: int, levels: int):
    import torch

    from emseg.models import UNet3D

    torch.manual_seed(0)
    return UNet3D(fmaps=fmaps, downsample_factors=((2, 2, 2),) * levels).eval()


def make_input(path: Path, shape) -> Path:
    from emseg.io import write_ome_zarr
    from emseg.synth import make_volume

    if not path.exists():
        raw = make_volume(tuple(shape), (8.0, 8.0, 8.0), seed=0).raw
        write_ome_zarr(raw, path, (8.0, 8.0, 8.0), chunks=64, levels=1)
    return path


def pure_forward(net, volume, block: int, batch: int) -> tuple[float, int]:
    """Seconds for the forward passes (+ probabilities) over the plan's blocks, inputs in memory."""
    import torch

    from emseg.blocks import plan_blocks, reflect_read
    from emseg.models import normalize
    from emseg.predict.engine import geometry

    geo = geometry(net, (block,) * 3, "3d")
    plan = plan_blocks(volume.shape, geo.block_shape, geo.read_shape, geo.context_lo, (block,) * 3,
                       grid=geo.grid)
    inputs = [torch.from_numpy(normalize(reflect_read(volume, b.read_start, geo.read_shape)))
              for b in plan.blocks]
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(inputs), batch):
            x = torch.stack(inputs[i:i + batch])[:, None]
            net.probabilities(net(x)).numpy()
    return time.perf_counter() - start, plan.n_voxels


def child(args) -> dict:
    """One measured run in this (fresh) process; prints JSON."""
    import torch

    torch.set_num_threads(args.threads)
    from emseg.io import open_volume

    net = make_net(args.fmaps, args.levels)
    volume = open_volume(args.input)
    geo_in = net.input_shape_for((args.block,) * 3)
    from monai.inferers import sliding_window_inference  # imports outside the timed part

    from emseg.models import normalize
    from emseg.predict import predict

    start = time.perf_counter()
    if args.child == "emseg":
        predict(net, volume, Path(args.out), chunks=args.block, block_shape=args.block, device="cpu",
                batch_size=args.batch, overwrite=True)
    elif args.child == "baseline":  # interpreter + torch + net + one forward pass: the fixed cost
        with torch.inference_mode():
            net(torch.zeros((args.batch, 1, *geo_in)))
    else:
        lo = net.context[0] // 2  # mirror-pad by the context so windows cover the volume as our blocks do
        x = torch.from_numpy(normalize(np.pad(volume[:, :, :], lo, mode="reflect")))[None, None]

        def predictor(t):
            p = net.probabilities(net(t))
            return torch.nn.functional.pad(p, (lo, lo) * 3)

        with torch.inference_mode():
            prob = sliding_window_inference(x, geo_in, args.batch, predictor,
                                            overlap=(net.context[0] - 0.5) / geo_in[0], mode="constant")
        np.rint(prob[0, 0, lo:-lo, lo:-lo, lo:-lo].numpy() * 255).astype(np.uint8)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "voxels": int(np.prod(volume.shape)), "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(kind: str, input_path: Path, out: Path, args, fmaps=None, levels=None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--input", str(input_path), "--out", str(out),
           "--fmaps", str(fmaps or args.fmaps), "--levels", str(levels or args.levels),
           "--block", str(args.block), "--batch", str(args.batch), "--threads", str(args.threads)]
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"{kind} child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy CPU)")
    parser.add_argument("--fmaps", type=int, default=4)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 128, 128))
    parser.add_argument("--big", action="store_true", help="also a 64x volume (4x per axis), one run each")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--child", choices=["emseg", "monai", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    import torch

    torch.set_num_threads(args.threads)
    from emseg.io import open_volume
    from emseg.predict import predict

    work = args.work or Path(tempfile.mkdtemp(prefix="emseg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    small = make_input(work / "small.ome.zarr", args.shape)
    large = make_input(work / "large.ome.zarr", [2 * s for s in args.shape])
    volume = open_volume(small)
    net = make_net(args.fmaps, args.levels)
    print(f"volume {tuple(args.shape)} (8x: {tuple(2 * s for s in args.shape)}), UNet3D fmaps={args.fmaps} "
          f"levels={args.levels}, block {args.block}^3 (input {net.input_shape_for((args.block,) * 3)}), "
          f"batch {args.batch}, torch threads {args.threads}, repeats {args.repeats}; CPU shared with other jobs")

    # 1. end-to-end vs pure forward, interleaved to share the noise
    fwd, e2e = [], []
    pure_forward(net, volume, args.block, args.batch)  # warm-up
    for _ in range(args.repeats):
        seconds, voxels = pure_forward(net, volume, args.block, args.batch)
        fwd.append(voxels / seconds / 1e6)
        start = time.perf_counter()
        predict(net, volume, work / "e2e.zarr", chunks=args.block, block_shape=args.block, device="cpu",
                batch_size=args.batch, overwrite=True)
        e2e.append(voxels / (time.perf_counter() - start) / 1e6)
    ratios = [e / f for e, f in zip(e2e, fwd)]
    print("\n| measure | median | runs |\n|---|---|---|")
    print(f"| pure forward MVox/s | {statistics.median(fwd):.3f} | {', '.join(f'{v:.3f}' for v in fwd)} |")
    print(f"| end-to-end MVox/s | {statistics.median(e2e):.3f} | {', '.join(f'{v:.3f}' for v in e2e)} |")
    print(f"| end-to-end / forward (goal >= 0.90) | {statistics.median(ratios):.3f} | "
          f"{', '.join(f'{v:.3f}' for v in ratios)} |")

    # 2. and 3. fresh processes: time and peak RSS, ours vs MONAI, alternating to share the noise
    rows = {}
    volumes = [("1x", small, args.repeats), ("8x", large, args.repeats)]
    if args.big:
        volumes.append(("64x", make_input(work / "big.ome.zarr", [4 * s for s in args.shape]), 1))
    for name, path, repeats in volumes:
        runs = {"emseg": [], "monai": []}
        for _ in range(repeats):
            for kind in runs:
                runs[kind].append(run_child(kind, path, work / f"{kind}-{name}.zarr", args))
        for kind, got in runs.items():
            rows[kind, name] = {"seconds": statistics.median(r["seconds"] for r in got),
                                "mvox_s": statistics.median(r["voxels"] / r["seconds"] / 1e6 for r in got),
                                "all": [r["voxels"] / r["seconds"] / 1e6 for r in got],
                                "rss": max(r["peak_rss_mb"] for r in got)}
    base = run_child("baseline", small, work / "baseline.zarr", args)["peak_rss_mb"]
    print(f"\nfixed cost (python + torch + net + one forward, fresh process): {base:.0f} MB peak RSS")
    print("\n| run (fresh process) | volume | seconds (median) | MVox/s (median) | MVox/s runs | peak RSS MB | "
          "above fixed cost MB |")
    print("|---|---|---|---|---|---|---|")
    for (kind, name), r in rows.items():
        print(f"| {kind} | {name} | {r['seconds']:.1f} | {r['mvox_s']:.3f} | {', '.join(f'{v:.3f}' for v in r['all'])} | "
              f"{r['rss']:.0f} | {r['rss'] - base:.0f} |")
    for name, _, _ in volumes:
        ours, theirs = rows["emseg", name], rows["monai", name]
        above = max(ours["rss"] - base, 1) / max(theirs["rss"] - base, 1)
        print(f"{name}: emseg / MONAI speed {ours['mvox_s'] / theirs['mvox_s']:.2f} (goal >= 1); peak RSS "
              f"{ours['rss'] / theirs['rss']:.2f} of MONAI's, {above:.2f} above the fixed cost (goal <= 0.25)")
    growth = rows["emseg", "8x"]["rss"] / rows["emseg", "1x"]["rss"] - 1
    print(f"emseg peak RSS growth for an 8x larger volume: {100 * growth:.1f} % (goal < 10 %)")


if __name__ == "__main__":
    main()
