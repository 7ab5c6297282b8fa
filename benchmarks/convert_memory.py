"""Peak memory of `emseg convert` on a 2 GB volume (goal: peak RSS < 600 MB).

Writes a realistic 2 GiB uint8 multipage TIFF (synthetic EM texture, 512 × 2048 × 2048),
converts it to OME-Zarr with a full pyramid in a child process, and reports that process's
peak RSS. Baseline in the same run: the naive route (tifffile.imread the whole stack, then
write one zarr array). Usage::

    python benchmarks/convert_memory.py [--size-gb 2] [--workdir bench_out/convert]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, run_measured  # noqa: E402

NAIVE = (
    "import sys, tifffile, zarr\n"
    "data = tifffile.imread(sys.argv[1])\n"
    "arr = zarr.create_array(sys.argv[2], shape=data.shape, chunks=(64, 64, 64), dtype=data.dtype, zarr_format=2)\n"
    "arr[:] = data\n"
)


def make_input(path: Path, size_gb: float) -> tuple[int, int, int]:
    """A multipage TIFF of about ``size_gb`` GiB built from a synthetic EM tile."""
    import tifffile

    from emseg.synth import make_volume

    edge = 2048
    depth = max(1, int(round(size_gb * 2**30 / edge**2)))
    tile = make_volume((32, 256, 256), (5.0, 5.0, 5.0), seed=1).raw
    rng = np.random.default_rng(0)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for z in range(depth):
            plane = np.tile(tile[z % tile.shape[0]], (edge // 256, edge // 256))
            noise = rng.integers(-8, 9, plane.shape, dtype=np.int16)
            tif.write(np.clip(plane + noise, 0, 255).astype(np.uint8), contiguous=True,
                      resolution=(1 / 0.005, 1 / 0.005), metadata=None)
    return depth, edge, edge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--workdir", type=Path, default=Path("bench_out/convert"))
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive whole-volume baseline")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    source = args.workdir / "input.tif"
    shape = make_input(source, args.size_gb)
    size_mb = source.stat().st_size / 2**20
    rows = []
    out = args.workdir / "out.ome.zarr"
    wall, peak = run_measured([sys.executable, "-m", "emseg", "convert", str(source), str(out),
                               "--voxel-size", "5", "5", "5", "--chunks", "64"])
    rows.append(["emseg convert (pyramid)", f"{size_mb:.0f}", f"{wall:.1f}", f"{size_mb / wall:.0f}", f"{peak:.0f}"])
    if not args.no_baseline:
        wall_b, peak_b = run_measured([sys.executable, "-c", NAIVE, str(source), str(args.workdir / "naive.zarr")])
        rows.append(["naive imread + zarr (no pyramid)", f"{size_mb:.0f}", f"{wall_b:.1f}", f"{size_mb / wall_b:.0f}",
                     f"{peak_b:.0f}"])
    print(f"input: {source} shape {shape} uint8")
    print_table(["route", "input MB", "wall s", "MB/s", "peak RSS MB"], rows)
    if not args.no_baseline:
        print(f"emseg peak RSS = {peak / peak_b:.2f} × naive; goal < 600 MB: {'met' if peak < 600 else 'NOT met'}")
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
