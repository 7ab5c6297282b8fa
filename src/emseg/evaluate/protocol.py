"""Train / validation / test splits of one annotated volume along z, with gaps between the parts.

A split is the honest-protocol contract: the network trains on ``train``; every choice (checkpoint,
threshold, recipe, post-processing) is made on ``validation``; ``test`` is scored only to report a
frozen recipe. Gaps keep neighbouring, strongly correlated slices out of different parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True)
class ZSplit:
    """Half-open z-ranges ``(start, stop)`` of the three parts, in voxels of the annotated volume."""

    train: tuple[int, int]
    validation: tuple[int, int]
    test: tuple[int, int]
    min_gap: int = 1

    def __post_init__(self) -> None:
        parts = [("train", self.train), ("validation", self.validation), ("test", self.test)]
        for name, (start, stop) in parts:
            if not 0 <= start < stop:
                raise ValueError(f"{name} z-range {(start, stop)} is empty or negative")
        ordered = sorted(parts, key=lambda p: p[1][0])
        for (name_a, a), (name_b, b) in pairwise(ordered):
            if b[0] - a[1] < self.min_gap:
                raise ValueError(f"{name_a} {a} and {name_b} {b} must be at least {self.min_gap} slices apart")

    def roi(self, part: str, shape_yx: tuple[int, int]) -> list[list[int]]:
        """``[[z0, z1], [0, ny], [0, nx]]``: the part as a training-config ROI."""
        start, stop = getattr(self, part)
        return [[start, stop], [0, shape_yx[0]], [0, shape_yx[1]]]

    def slices(self, part: str) -> slice:
        """The part's z-range as a slice."""
        return slice(*getattr(self, part))


# Lucchi et al. 2012 training volume (165 x 768 x 1024 at 5 nm), as configs/mito_lucchi_v4.yaml uses it.
LUCCHI = ZSplit(train=(0, 100), validation=(105, 130), test=(135, 165), min_gap=5)

# The sparse markup of the same volume (vesicles, PSD, membranes on 27 slices): of its annotated
# slices, z 0–105 train, 118 and 135 validate, 161–164 test (gaps of 12 and 25 slices).
LUCCHI_SPARSE = ZSplit(train=(0, 106), validation=(118, 136), test=(161, 165))
