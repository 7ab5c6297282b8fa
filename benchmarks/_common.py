"""Helpers shared by the benchmark scripts: peak memory of a child process, tables, the Lucchi volumes."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def run_measured(cmd: Sequence[str]) -> tuple[float, float]:
    """Run ``cmd`` in a fresh process; return (wall seconds, peak RSS in MB of that process).

    Peak RSS is the kernel's high-water mark (``ru_maxrss``) of the child, read after it exits;
    measuring in a separate process keeps the parent's own memory out of the figure.
    """
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], check=True, capture_output=True, text=True)
    wall, peak = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(peak)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain-text table with aligned columns."""
    cells = [[str(h) for h in headers]] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def now() -> float:
    return time.perf_counter()


def max_rss_mb() -> float:
    """This process's own peak RSS so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def lucchi_volumes(data: Path):
    """(training image, mitochondria labels) of Lucchi under ``data`` as opened `Volume`s, or None
    (with a message) if absent."""
    from emseg.io import open_volume

    image, labels = data / "lucchi" / "train_image.tif", data / "lucchi" / "train_mito.tif"
    if not image.exists():
        print(f"skipped: Lucchi data not found at {image} (pass --data DIR)")
        return None
    return open_volume(image), open_volume(labels)
