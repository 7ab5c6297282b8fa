"""2D prediction speed by write-block shape: the old default (64³ blocks, each read with a 64-px
halo: 192 × 192 pixels computed per 64 × 64 written) against today's default (stack: 32 slices of
256 × 256, read 384 × 384), same model, same volume, same output.

    python benchmarks/predict_2d_blocks.py [--model vesicles] [--data ../shared/data] [--slices 64] [--size 256]

Prints wall time, MVox/s and the ratio to the old default, and the largest difference between the
two outputs (the halo makes blocks agree with whole-slice prediction up to small differences).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import DEFAULT_DATA, print_table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vesicles")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--size", type=int, default=256, help="y and x extent of the crop")
    args = parser.parse_args()

    import zarr

    from emseg.io import array_volume, open_volume
    from emseg.models import load
    from emseg.predict import predict

    image = args.data / "lucchi" / "train_image.tif"
    if image.exists():
        raw = np.asarray(open_volume(image)[100:100 + args.slices, :args.size, :args.size])
        source = "Lucchi crop"
    else:
        from emseg.synth import make_volume

        raw = make_volume((args.slices, args.size, args.size), (5.0, 5.0, 5.0), seed=0).raw
        source = "synthetic"
    volume = array_volume(raw, load(args.model).voxel_size)
    rows, outputs, base = [], {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for name, block in (("old default 64³", (64, 64, 64)), ("new default (stack)", None)):
            start = time.perf_counter()
            predict(args.model, volume, Path(tmp) / f"{len(rows)}.zarr", block_shape=block, dtype="float32", device="cpu")
            seconds = time.perf_counter() - start
            outputs[name] = np.asarray(zarr.open_group(str(Path(tmp) / f"{len(rows)}.zarr"))["0"])
            base = base or seconds
            rows.append([name, seconds, raw.size / seconds / 1e6, base / seconds])
    diff = float(np.abs(outputs["old default 64³"] - outputs["new default (stack)"]).max())
    print(f"model {args.model}, {source} {raw.shape}")
    print_table(["blocks", "seconds", "MVox/s", "x old default"], rows)
    print(f"largest difference between the two outputs: {diff:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
