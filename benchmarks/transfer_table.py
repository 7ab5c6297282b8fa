"""CEM500K-style transfer table: validation IoU of random vs MoCoV2-pretrained U-Net-ResNet encoders.

    python benchmarks/transfer_table.py [--data ../shared/data] [-o bench_out/benchmark2d] [benchmark2d options]

A thin wrapper around ``emseg benchmark2d`` (`emseg.pretrain.benchmark2d`): it fills in the
default data folder and output folder, skips with a message when the data is absent, and passes
every other option through (``--pretrain-minutes``, ``--iterations``, ``--encoder``,
``--init NAME=PATH``, ``--tasks``, ``--regimes``, ``--threads``; see ``emseg benchmark2d --help``).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main(argv: list[str] | None = None) -> int:
    from emseg.cli import main as emseg_main
    from emseg.pretrain.benchmark2d import TASK_FILES

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--data" not in argv:
        argv += ["--data", str(REPO.parent / "shared" / "data")]
    if "-o" not in argv and "--output" not in argv:
        argv += ["-o", str(REPO / "bench_out" / "benchmark2d")]
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return emseg_main(["benchmark2d", "--help"])
    data = Path(argv[argv.index("--data") + 1])
    if not all((data / rel).is_file() for pair in TASK_FILES.values() for rel in pair):
        print(f"skip: real EM data not found under {data} (needs lucchi/ and isbi2012/)")
        return 0
    return emseg_main(["benchmark2d", *argv])


if __name__ == "__main__":
    sys.exit(main())
