"""Input normalisation, in one place: raw (any dtype) → float32 ``(x / dtype_max − mean) / std``.

Integer raw data are scaled to [0, 1] by their bit depth (uint8 / 255, uint16 / 65535;
signed types shifted first); float data are used as they are. ``mean`` and ``std`` are
stored with every model (CEM500K: 0.58331613 / 0.09966064).
"""

from __future__ import annotations

import numpy as np


def unit_scale(raw: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] for integer input (by bit depth); float input unchanged."""
    raw = np.asarray(raw)
    if raw.dtype.kind == "u":
        return raw.astype(np.float32) / np.float32(np.iinfo(raw.dtype).max)
    if raw.dtype.kind == "i":
        info = np.iinfo(raw.dtype)
        return (raw.astype(np.float32) - np.float32(info.min)) / np.float32(info.max - info.min)
    if raw.dtype.kind == "b":
        return raw.astype(np.float32)
    return raw.astype(np.float32, copy=False)


def normalize(raw: np.ndarray, mean: float = 0.5, std: float = 0.25) -> np.ndarray:
    """float32 network input from raw data; see the module docstring."""
    return (unit_scale(raw) - np.float32(mean)) / np.float32(std)
