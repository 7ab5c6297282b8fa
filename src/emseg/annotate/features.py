"""Multi-scale filter features (ilastik-style) and their per-supervoxel averages.

For each scale σ (nm, converted per axis with the voxel size, so anisotropic data are
smoothed physically isotropically): Gaussian smoothing, gradient magnitude, Laplacian of
Gaussian, the three Hessian eigenvalues and the three structure-tensor eigenvalues (inner
scale σ, outer scale 2σ). Derivatives are central differences of the smoothed image in nm,
scale-normalised (× σ per derivative order) so that every scale has comparable ranges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_SCALES_NM = (10.0, 20.0, 40.0)
FEATURES_PER_SCALE = 9  # smoothed, |∇|, LoG, 3 Hessian eigenvalues, 3 structure-tensor eigenvalues


def sigma_voxels(sigma_nm: float, spacing_nm: Sequence[float], min_sigma: float = 0.3) -> list[float]:
    """σ in nm → σ per axis in voxels; axes where it is below ``min_sigma`` voxels are not smoothed."""
    return [s if s >= min_sigma else 0.0 for s in (sigma_nm / float(v) for v in spacing_nm)]


def eigvalsh3(a11, a22, a33, a12, a13, a23) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues (largest, middle, smallest) of symmetric 3×3 matrices given element-wise.

    Closed form (trigonometric solution of the characteristic cubic), vectorised: about
    20× faster than ``numpy.linalg.eigvalsh`` on stacked matrices.
    """
    q = (a11 + a22 + a33) / 3
    b11, b22, b33 = a11 - q, a22 - q, a33 - q
    p1 = a12 * a12 + a13 * a13 + a23 * a23
    p = np.sqrt((b11 * b11 + b22 * b22 + b33 * b33 + 2 * p1) / 6)
    safe = np.where(p > 0, p, 1)
    det = (b11 * (b22 * b33 - a23 * a23) - a12 * (a12 * b33 - a23 * a13) + a13 * (a12 * a23 - b22 * a13))
    r = np.clip(det / (2 * safe ** 3), -1, 1)
    phi = np.arccos(r) / 3
    largest = q + 2 * p * np.cos(phi)
    smallest = q + 2 * p * np.cos(phi + 2 * np.pi / 3)
    middle = 3 * q - largest - smallest
    return largest, middle, smallest


def filter_features(image: np.ndarray, spacing_nm: Sequence[float],
                    scales_nm: Sequence[float] = DEFAULT_SCALES_NM) -> np.ndarray:
    """Feature stack ``(n_features, *image.shape)`` float32; ``spacing_nm`` = voxel size of ``image``."""
    from scipy.ndimage import gaussian_filter

    image = np.asarray(image, dtype=np.float32)
    spacing = [float(v) for v in spacing_nm]
    features = np.empty((FEATURES_PER_SCALE * len(scales_nm), *image.shape), np.float32)
    row = 0
    for sigma in scales_nm:
        smooth = gaussian_filter(image, sigma_voxels(sigma, spacing))
        grad = [g * sigma for g in np.gradient(smooth, *spacing)]
        hess = {}
        for a in range(3):
            second = np.gradient(grad[a], *spacing)
            for b in range(a, 3):
                hess[a, b] = second[b] * sigma
        outer = sigma_voxels(2 * sigma, spacing)
        tensor = {key: gaussian_filter(grad[key[0]] * grad[key[1]], outer) for key in hess}
        features[row] = smooth
        features[row + 1] = np.sqrt(grad[0] ** 2 + grad[1] ** 2 + grad[2] ** 2)
        features[row + 2] = hess[0, 0] + hess[1, 1] + hess[2, 2]
        order = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
        features[row + 3: row + 6] = eigvalsh3(*(hess[key] for key in order))
        features[row + 6: row + 9] = eigvalsh3(*(tensor[key] for key in order))
        row += FEATURES_PER_SCALE
    return features


def region_features(labels: np.ndarray, image: np.ndarray, features: np.ndarray, spread: bool = False) -> np.ndarray:
    """Per-label mean of every feature (and, with ``spread``, its std) plus the intensity std.

    Returns ``(n_labels, n_features × (1 + spread) + 1)`` float32.
    """
    n = int(labels.max()) + 1
    flat = labels.ravel()
    count = np.maximum(np.bincount(flat, minlength=n), 1).astype(np.float64)

    def mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = values.ravel().astype(np.float64)
        mean = np.bincount(flat, weights=values, minlength=n) / count
        square = np.bincount(flat, weights=values * values, minlength=n) / count
        return mean, np.sqrt(np.maximum(square - mean * mean, 0))

    n_features = features.shape[0]
    out = np.empty((n, n_features * (1 + spread) + 1), np.float32)
    for f in range(n_features):
        if spread:
            out[:, f], out[:, n_features + f] = mean_std(features[f])
        else:
            out[:, f] = np.bincount(flat, weights=features[f].ravel(), minlength=n) / count
    out[:, -1] = mean_std(np.asarray(image))[1]
    return out

