"""The done-block ledger, stored inside the output (``<output>/.emseg_ledger/<block key>``).

One empty marker file per finished block, created (atomically: temp file + rename) only
after the block's data is written. Markers are independent files, so any number of
threads, processes or cluster workers sharing the output's file system can record blocks
concurrently. A block that failed is never marked and is recomputed on the next run.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

LEDGER_DIR = ".emseg_ledger"


class Ledger:
    """Set of finished block keys for one output."""

    def __init__(self, output: str | os.PathLike) -> None:
        self.root = Path(output) / LEDGER_DIR

    def done(self) -> set[str]:
        """Keys of the blocks recorded as finished."""
        if not self.root.exists():
            return set()
        return {p.name for p in self.root.iterdir() if not p.name.startswith(".")}

    def mark(self, key: str) -> None:
        """Record ``key`` as finished; call only after its data is on disk."""
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / f".{key}.{uuid.uuid4().hex[:8]}"
        temp.touch()
        os.replace(temp, self.root / key)

    def clear(self) -> None:
        """Forget every block (used when an output is replaced)."""
        if self.root.exists():
            for path in self.root.iterdir():
                path.unlink(missing_ok=True)
