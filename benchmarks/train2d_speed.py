"""train2d speed on this machine: images/s for each change, one at a time (issue #22 item 1).

Runs the same short random-init training (U-Net-ResNet, batch 16, 224-px patches, Lucchi slices
in memory) with fp32 (baseline), channels-last, bf16 autocast, both, and optionally
``torch.compile``, and prints images/s and the ratio to the baseline measured in the same run.

    python benchmarks/train2d_speed.py [--data ../shared/data] [--iterations 20] [--arch resnet18 --width 32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DEFAULT_DATA, print_table  # noqa: E402

VARIANTS = {
    "fp32 (baseline)": {},
    "channels-last": {"channels_last": True},
    "bf16 autocast": {"precision": "bf16"},
    "bf16 + channels-last": {"precision": "bf16", "channels_last": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from emseg.train.transfer2d import SliceSet, Transfer2DConfig, train2d

    lucchi = args.data / "lucchi"
    if not (lucchi / "train_image.tif").exists():
        sys.exit(f"{lucchi}: Lucchi data not found (pass --data)")
    train = SliceSet(image=str(lucchi / "train_image.tif"), labels=str(lucchi / "train_mito.tif"), slices=list(range(0, 100, 5)))
    rows, base = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name, change in VARIANTS.items():
            cfg = Transfer2DConfig(train=train, arch=args.arch, width=args.width, iterations=args.iterations,
                                   batch_size=args.batch_size, patch_size=args.patch_size, device=args.device,
                                   zoom=(0.8, 1.25), **change)
            summary = train2d(cfg, Path(tmp) / "m.pt", progress=False)
            speed = summary["images_per_s"]
            base = base or speed
            rows.append([name, speed, speed / base])
    print(f"{args.arch} width {args.width}, batch {args.batch_size}, {args.patch_size}-px patches, "
          f"{args.iterations} iterations, device {args.device}")
    print_table(["change", "images/s", "x baseline"], rows)


if __name__ == "__main__":
    main()
