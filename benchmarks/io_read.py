"""Random-block read speed through `open_volume` for each on-disk format and zarr backend.

Writes one synthetic-EM uint8 volume (default 192 × 1024 × 1024, 64³ chunks where the
format has chunks) as zarr v2, zarr v3, HDF5, N5 and an uncompressed multipage TIFF,
then times random 132³ reads (the size of a training/prediction block) through emseg's
Volume API. Zarr is read both with zarr-python and with tensorstore: the faster one is
emseg's default backend. Page cache is warm (second pass); figures are MB/s of
decompressed voxels. Usage::

    python benchmarks/io_read.py [--reads 40] [--workdir bench_out/io]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

BLOCK = 132


def make_data(shape) -> np.ndarray:
    from emseg.synth import make_volume

    tile = make_volume((64, 256, 256), (5.0, 5.0, 5.0), seed=2).raw
    reps = [int(np.ceil(s / t)) for s, t in zip(shape, tile.shape)]
    return np.tile(tile, reps)[: shape[0], : shape[1], : shape[2]].copy()


def write_all(data: np.ndarray, workdir: Path) -> dict[str, str]:
    import h5py
    import tensorstore as ts
    import tifffile
    import zarr

    from emseg.io import write_ome_zarr

    paths = {}
    paths["zarr v2"] = str(write_ome_zarr(data, workdir / "v2.ome.zarr", (5, 5, 5), chunks=64, levels=1))
    paths["zarr v3"] = str(write_ome_zarr(data, workdir / "v3.ome.zarr", (5, 5, 5), chunks=64, levels=1,
                                          zarr_format=3))
    h5 = workdir / "vol.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("raw", data=data, chunks=(64, 64, 64), compression="gzip", compression_opts=1)
    paths["hdf5 (gzip)"] = f"{h5}:/raw"
    n5 = workdir / "vol.n5" / "raw"
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(n5)},
                     "metadata": {"dimensions": list(data.shape[::-1]), "blockSize": [64, 64, 64],
                                  "dataType": "uint8", "compression": {"type": "gzip", "level": 1}},
                     "create": True}).result()
    store.write(data.transpose(2, 1, 0)).result()
    paths["n5 (gzip)"] = str(n5)
    tif = workdir / "vol.tif"
    tifffile.imwrite(tif, data, contiguous=True)
    paths["tiff (raw pages)"] = str(tif)
    del zarr
    return paths


def time_reads(path: str, backend: str, corners: np.ndarray) -> float:
    from emseg.io import open_volume

    volume = open_volume(path, voxel_size=(5, 5, 5), backend=backend)
    for z, y, x in corners[:3]:  # warm-up: open handles, page cache
        volume[z:z + BLOCK, y:y + BLOCK, x:x + BLOCK]
    start = time.perf_counter()
    for z, y, x in corners:
        block = volume[z:z + BLOCK, y:y + BLOCK, x:x + BLOCK]
    elapsed = time.perf_counter() - start
    assert block.shape == (BLOCK,) * 3
    return len(corners) * BLOCK**3 / 2**20 / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(192, 1024, 1024))
    parser.add_argument("--reads", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=Path("bench_out/io"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    data = make_data(args.shape)
    paths = write_all(data, args.workdir)
    rng = np.random.default_rng(0)
    corners = np.stack([rng.integers(0, s - BLOCK, args.reads) for s in args.shape], axis=1)
    cases = [("zarr v2", "zarr"), ("zarr v2", "tensorstore"), ("zarr v3", "zarr"), ("zarr v3", "tensorstore"),
             ("hdf5 (gzip)", "h5py"), ("n5 (gzip)", "tensorstore"), ("tiff (raw pages)", "tifffile")]
    rows, speeds = [], {}
    for fmt, backend in cases:
        path = paths[fmt] + ("/0" if fmt.startswith("zarr") else "")
        speed = max(time_reads(path, backend if fmt.startswith("zarr") else "auto", corners) for _ in range(2))
        speeds[(fmt, backend)] = speed
        rows.append([fmt, backend, f"{speed:.0f}"])
    base = speeds[("zarr v2", "zarr")]
    for row, key in zip(rows, cases):
        row.append(f"{speeds[key] / base:.2f}")
    print(f"random {BLOCK}³ uint8 reads from a {tuple(args.shape)} volume, {args.reads} reads, best of 2")
    print_table(["format", "reader", "MB/s", "× zarr-python v2"], rows)
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
