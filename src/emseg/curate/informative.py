"""Informativeness: the default texture heuristic (no training) and synthetic bad patches.

The heuristic scores a patch from four texture features computed on its true area:

* ``std``: intensity standard deviation (blank resin is flat);
* ``saturated``: fraction of pixels at ≤ 2 or ≥ 253 (over-/under-exposed);
* ``corr``: correlation of horizontally and vertically neighbouring pixels (pure noise ≈ 0,
  EM texture is spatially correlated);
* ``sharpness``: mean |Laplacian| / std (out-of-focus patches lose their fine detail).

``score = s(std; 6, 2) · s(−saturated; −0.35, 0.05) · s(corr; 0.12, 0.04) · s(sharpness; 0.10, 0.03)``
with ``s(v; centre, width)`` a logistic; a patch is informative when ``score ≥ 0.5``.
The thresholds were set on the labelled sample built by `labelled_sample` (real and synthetic
EM patches vs generated blank/noise/saturated/blurred ones), see docs/curation.md.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("std", "saturated", "corr", "sharpness")
HEURISTIC = {"std": (6.0, 2.0), "saturated": (-0.35, 0.05), "corr": (0.12, 0.04), "sharpness": (0.10, 0.03)}
BAD_KINDS = ("blank", "noise", "saturated", "blurred")


def texture_features(patch: np.ndarray) -> np.ndarray:
    """The four features of one uint8 patch (already cropped to its true size)."""
    p = patch.astype(np.float32)
    std = float(p.std())
    saturated = float(((patch <= 2) | (patch >= 253)).mean())
    c = p - p.mean()
    denom = float((c * c).mean()) + 1e-6
    corr = float(((c[:, 1:] * c[:, :-1]).mean() + (c[1:] * c[:-1]).mean()) / (2 * denom))
    lap = np.abs(4 * p[1:-1, 1:-1] - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:])
    sharpness = float(lap.mean()) / (std + 1e-6) / 4
    return np.array([std, saturated, corr, sharpness], dtype=np.float32)


def features_of(patches: np.ndarray, heights=None, widths=None) -> np.ndarray:
    """(N, 4) features of zero-padded patches with true sizes."""
    out = np.empty((len(patches), len(FEATURES)), dtype=np.float32)
    for i, patch in enumerate(patches):
        if heights is not None:
            patch = patch[: heights[i], : widths[i]]
        out[i] = texture_features(patch)
    return out


def _logistic(v: np.ndarray, centre: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(v - centre) / width))


def heuristic_score(features: np.ndarray) -> np.ndarray:
    """Informativeness in [0, 1] from (N, 4) features (see the module docstring)."""
    features = np.atleast_2d(features)
    score = np.ones(len(features))
    for j, name in enumerate(FEATURES):
        centre, width = HEURISTIC[name]
        v = -features[:, j] if name == "saturated" else features[:, j]
        score *= _logistic(v, centre, width)
    return score.astype(np.float32)


def bad_patch(kind: str, rng: np.random.Generator, good: np.ndarray | None = None, size: int = 224) -> np.ndarray:
    """One generated uninformative patch: blank resin, pure noise, saturated or blurred."""
    from scipy import ndimage

    if kind == "blank":
        level = rng.uniform(20, 235)
        ramp = np.linspace(0, rng.uniform(-8, 8), size)[None, :]
        img = level + ramp + rng.normal(0, rng.uniform(0.5, 3), (size, size))
    elif kind == "noise":
        img = rng.normal(rng.uniform(60, 190), rng.uniform(15, 70), (size, size))
    elif kind == "saturated":
        base = good.astype(np.float32) if good is not None else rng.normal(128, 30, (size, size))
        gain = rng.uniform(6, 20)
        img = (base - base.mean()) * gain + rng.choice([0, 128, 255])
    elif kind == "blurred":
        base = good.astype(np.float32) if good is not None else rng.normal(128, 30, (size, size))
        img = ndimage.gaussian_filter(base, rng.uniform(5, 10))
        img += rng.normal(0, 0.3, img.shape)
    else:
        raise ValueError(f"unknown bad patch kind {kind!r}; use one of {BAD_KINDS}")
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def labelled_sample(good: np.ndarray, n_bad: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patches, labels 1 = informative, kind) from informative ``good`` patches plus generated bad ones."""
    rng = np.random.default_rng(seed)
    kinds = [BAD_KINDS[i % len(BAD_KINDS)] for i in range(n_bad)]
    bad = np.stack([bad_patch(k, rng, good[rng.integers(len(good))]) for k in kinds])
    patches = np.concatenate([good, bad])
    labels = np.concatenate([np.ones(len(good), np.int64), np.zeros(n_bad, np.int64)])
    kind = np.array(["em"] * len(good) + kinds)
    return patches, labels, kind
