"""Input normalisation, in one place: raw (any dtype) → float32 ``(x / dtype_max − mean) / std``.

Integer raw data are scaled to [0, 1] by their bit depth (uint8 / 255, uint16 / 65535;
signed types shifted first); float data are used as they are. ``mean`` and ``std`` are
stored with every model as a dict (CEM500K: 0.58331613 / 0.09966064). Training augments the
unit-scaled block before standardising it, so the two steps are separate here; prediction,
validation and the training sampler all call `Normalization.standardize`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

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


@dataclass(frozen=True)
class Normalization:
    """Mean and std of unit-scaled raw data that a model was trained with."""

    mean: float = 0.5
    std: float = 0.25

    @classmethod
    def of(cls, value: Normalization | Mapping[str, float] | None) -> Normalization:
        """From a checkpoint's ``{"mean": m, "std": s}`` dict (None: the default)."""
        if value is None or isinstance(value, Normalization):
            return value or cls()
        return cls(float(value["mean"]), float(value["std"]))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def standardize(self, unit: np.ndarray) -> np.ndarray:
        """float32 ``(unit − mean) / std`` of already unit-scaled data."""
        return (np.asarray(unit, np.float32) - np.float32(self.mean)) / np.float32(self.std)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Network input from raw data of any dtype."""
        return self.standardize(unit_scale(raw))


def normalize(raw: np.ndarray, mean: float = 0.5, std: float = 0.25) -> np.ndarray:
    """float32 network input from raw data; see the module docstring."""
    return Normalization(mean, std).apply(raw)
