"""Learned unary: a random forest on per-supervoxel filter features, trained on the stroked supervoxels."""

from __future__ import annotations

import numpy as np

from emseg.annotate.strokes import BACKGROUND, OBJECT


def stroke_votes(labels: np.ndarray, strokes: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Object and background stroke-voxel counts per label."""
    flat, seeds = labels.ravel(), strokes.ravel()
    return tuple(np.bincount(flat[seeds == value], minlength=n_labels) for value in (OBJECT, BACKGROUND))


def object_probability(features: np.ndarray, votes_object: np.ndarray, votes_background: np.ndarray,
                       n_trees: int = 60, seed: int = 0) -> np.ndarray:
    """P(object) per row of ``features`` from a random forest trained on the stroked rows.

    A row is an object (background) sample when more of its stroke voxels are object
    (background) strokes; ties are left out. Classes are balanced; the forest is
    deterministic (``random_state=seed``, one job). Returns 0.5 everywhere when the strokes
    give samples of one class only.
    """
    from sklearn.ensemble import RandomForestClassifier

    is_object = votes_object > votes_background
    is_background = votes_background > votes_object
    train = is_object | is_background
    if not is_object.any() or not is_background.any():
        return np.full(features.shape[0], 0.5, np.float32)
    forest = RandomForestClassifier(n_estimators=n_trees, min_samples_leaf=2, max_features="sqrt",
                                    class_weight="balanced", random_state=seed, n_jobs=1)
    forest.fit(features[train], is_object[train])
    column = list(forest.classes_).index(True)
    return forest.predict_proba(features)[:, column].astype(np.float32)


def probability_costs(p_object: np.ndarray, floor: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(−log p(object), −log p(background)) with p squeezed into [floor, 1 − floor]."""
    p = floor + (1 - 2 * floor) * np.asarray(p_object, np.float64)
    return -np.log(p), -np.log1p(-p)
