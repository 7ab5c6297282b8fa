"""Regions of interest in voxels: the one parser and formatter every command and function uses.

A ROI is written ``z0:z1,y0:y1,x0:x1`` (an empty bound means the volume's start or end), or given as
three ``(lo, hi)`` pairs or three slices. One rule everywhere: a bound outside the volume, a negative
bound or an empty range is an error naming the volume; nothing is clipped silently.
"""

from __future__ import annotations

from collections.abc import Sequence

from emseg.errors import ConfigError
from emseg.io.volume import Region

RoiLike = str | Sequence[Sequence[int]] | Sequence[slice] | None


def parse_roi(roi: RoiLike, shape: Sequence[int], source: str = "") -> Region:
    """``roi`` → three step-1 slices inside ``shape``; ``None`` is the whole volume.

    Raises ConfigError (naming ``source``) for a malformed string, a negative, reversed, empty or
    out-of-volume range."""
    shape = tuple(int(n) for n in shape)
    if roi is None:
        return tuple(slice(0, n) for n in shape)  # type: ignore[return-value]
    parts = roi.split(",") if isinstance(roi, str) else list(roi)
    if len(parts) != 3:
        raise ConfigError(f"{_where(source)}ROI {roi!r}: expected three ranges 'z0:z1,y0:y1,x0:x1'")
    bounds = [_bounds(part, n, roi) for part, n in zip(parts, shape)]
    for (lo, hi), n, axis in zip(bounds, shape, "zyx"):
        if not 0 <= lo < hi <= n:
            raise ConfigError(f"{_where(source)}ROI {lo}:{hi} on axis {axis} is empty or outside the volume "
                              f"(shape {shape})")
    return tuple(slice(lo, hi) for lo, hi in bounds)  # type: ignore[return-value]


def format_roi(region: Sequence[slice]) -> str:
    """``z0:z1,y0:y1,x0:x1`` as ``--roi`` takes it."""
    return ",".join(f"{s.start}:{s.stop}" for s in region)


def _bounds(part, n: int, roi) -> tuple[int, int]:
    """One axis's (lo, hi) from ``"lo:hi"``, a slice or a pair; empty or None bounds are 0 and ``n``."""
    if isinstance(part, str):
        text = part.split(":")
        if len(text) != 2:
            raise ConfigError(f"ROI {roi!r}: range {part!r} is not start:stop")
        part = [t.strip() or None for t in text]
    elif isinstance(part, slice):
        if part.step not in (None, 1):
            raise ConfigError(f"ROI {roi!r}: a range cannot have a step")
        part = [part.start, part.stop]
    try:
        lo, hi = part
        return (0 if lo is None else int(lo)), (n if hi is None else int(hi))
    except (TypeError, ValueError):
        raise ConfigError(f"ROI {roi!r}: bounds must be integers (voxels)") from None


def _where(source: str) -> str:
    return f"{source}: " if source else ""
