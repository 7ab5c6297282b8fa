"""Conversion of any dtype to uint8, as CEM500K's curation does.

* unsigned integers are scaled by their bit depth (uint16 ``v`` → ``v // 256``);
* signed integers are shifted to unsigned first (int8 ``v`` → ``v + 128``), then scaled;
* floats are scaled min–max to 0–255, either over ``value_range`` (e.g. from
  `estimate_value_range` on the whole volume, so that blocks agree) or over this array;
  ``percentiles=(lo, hi)`` clips to those percentiles instead, robust to outliers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emseg.errors import InvalidValuesError


def to_uint8(
    data: np.ndarray,
    value_range: Sequence[float] | None = None,
    percentiles: Sequence[float] | None = None,
) -> np.ndarray:
    """Return ``data`` as uint8 (see the module docstring for the rules)."""
    data = np.asarray(data)
    kind, bits = data.dtype.kind, data.dtype.itemsize * 8
    if kind == "b":
        return data.astype(np.uint8) * 255
    if value_range is None and percentiles is None:
        if kind == "u":
            return data.astype(np.uint8) if bits == 8 else (data >> (bits - 8)).astype(np.uint8)
        if kind == "i":
            shifted = data.astype(np.int64) + (1 << (bits - 1))
            return (shifted >> (bits - 8)).astype(np.uint8)
    if kind not in "uif":
        raise InvalidValuesError(f"cannot convert dtype {data.dtype} to uint8")
    values = data.astype(np.float64, copy=False)
    if kind == "f" and not np.isfinite(values).all():
        raise InvalidValuesError("float data contains NaN or Inf values; replace them before converting")
    if value_range is None:
        if percentiles is not None:
            lo, hi = np.percentile(values, percentiles)
        else:
            lo, hi = float(values.min()), float(values.max())
    else:
        lo, hi = (float(v) for v in value_range)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.rint((values - lo) * scale), 0, 255).astype(np.uint8)


def estimate_value_range(
    volume, percentiles: Sequence[float] = (0.0, 100.0), max_slices: int = 16
) -> tuple[float, float]:
    """Intensity range of a (lazy) volume from up to ``max_slices`` evenly spaced z-slices."""
    zs = np.unique(np.linspace(0, volume.shape[0] - 1, min(max_slices, volume.shape[0])).astype(int))
    sample = np.concatenate([np.asarray(volume[int(z)]).ravel() for z in zs]).astype(np.float64)
    if not np.isfinite(sample).all():
        raise InvalidValuesError(f"{getattr(volume, 'path', 'volume')}: contains NaN or Inf values")
    lo, hi = np.percentile(sample, percentiles)
    return float(lo), float(hi)
