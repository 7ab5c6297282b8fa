"""`timed()`: the wall clock a command reports (``wrote X in 12.3 s``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Clock:
    """Started at creation; ``seconds`` so far, and ``str()`` as ``12.3 s``."""

    start: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def __str__(self) -> str:
        return f"{self.seconds:.1f} s"


def timed() -> Clock:
    """A started clock: ``clock = timed(); ...; echo(f"wrote {out} in {clock}")``."""
    return Clock()
