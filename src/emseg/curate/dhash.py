"""Difference hash (dHash) of a stack of patches, bit-identical to `imagehash.dhash`.

imagehash resizes the image to 9 × 8 with Pillow's LANCZOS filter (two separable passes,
horizontal first, 22-bit fixed-point coefficients, each pass rounded and clipped to uint8),
then compares neighbouring columns. Here both passes use Pillow's integer coefficients, in one
compiled loop per patch (`dhash_kernel`, numba). The horizontal pass sums in float32; its
rounding error is bounded (Higham's γ_n · Σ|p·k|, n the number of non-zero taps), and each value
that lies within that bound of a rounding boundary (about 0.6 %) is recomputed exactly in
float64. The vertical pass runs in float64, which is exact. Bit ``k`` of the 64-bit result (most
significant first) is ``pixels[k // 8, k % 8 + 1] > pixels[k // 8, k % 8]``, so
``int(str(imagehash.dhash(im)), 16)`` equals ``dhash(...)``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np

PATCH = 224
HASH_SIZE = 8
PRECISION_BITS = 22  # Pillow: 32 - 8 - 2
_SCALE = float(1 << PRECISION_BITS)
_HALF = float(1 << (PRECISION_BITS - 1))


@lru_cache(maxsize=8)
def lanczos_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's 8-bit LANCZOS resampling coefficients as an (in_size, out_size) integer matrix."""
    support_base = 3.0
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support_base * filterscale
    matrix = np.zeros((in_size, out_size), dtype=np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        x = np.arange(xmin, xmax)
        w = np.array([_lanczos((xi - center + 0.5) / filterscale) for xi in x])
        total = w.sum()
        if total != 0.0:
            w = w / total
        fixed = np.where(w < 0, (-0.5 + w * _SCALE).astype(np.int64), (0.5 + w * _SCALE).astype(np.int64))
        # C's (int) cast truncates toward zero, as numpy's astype does
        matrix[xmin:xmax, xx] = fixed
    return matrix


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


def _horizontal_coeffs(in_size: int) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """(9, in_size) float32 coefficients scaled to output levels, the same exact as float64, and the
    doubt limit: a value whose distance to its rounded level exceeds it may round either way.

    float32's worst-case error of a 0..255 row times a column is γ_n · Σ|p·k| (Higham) with n the
    number of non-zero taps (zero coefficients add exactly nothing), plus the +0.5 rounding.
    """
    kh = lanczos_matrix(in_size, HASH_SIZE + 1).astype(np.float64)
    taps = int((kh != 0).sum(axis=0).max())
    unit = 2.0**-24
    gamma = taps * unit / (1 - taps * unit)
    worst = gamma * 255 * np.abs(kh).sum(axis=0).max() / _SCALE + 2.0**-15
    exact = np.ascontiguousarray(kh.T)
    return (exact / _SCALE).astype(np.float32), exact, np.float32(0.5 - worst)


def _nonzero_span(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``matrix``, the [first, last + 1) columns holding its non-zero coefficients."""
    nonzero = matrix != 0
    first = nonzero.argmax(axis=1)
    last = matrix.shape[1] - nonzero[:, ::-1].argmax(axis=1)
    return first.astype(np.int64), last.astype(np.int64)


class KernelArguments(NamedTuple):
    """The coefficients `dhash_kernel.hashes` takes for one patch shape, in its argument order."""

    k32: np.ndarray  # (9, w) float32 horizontal coefficients scaled by 2**-22
    k_exact: np.ndarray  # the same as float64 integers
    lo: np.ndarray  # per output, the [lo, hi) columns of its non-zero coefficients
    hi: np.ndarray
    limit: np.float32  # the doubt limit of `_horizontal_coeffs`
    k_vert: np.ndarray  # (8, h) float64 integer vertical coefficients
    vlo: np.ndarray
    vhi: np.ndarray


@lru_cache(maxsize=8)
def kernel_arguments(h: int, w: int) -> KernelArguments:
    """All coefficients for (h, w) patches, derived once per shape."""
    k32, k_exact, limit = _horizontal_coeffs(w)
    k_vert = np.ascontiguousarray(lanczos_matrix(h, HASH_SIZE).T.astype(np.float64))
    return KernelArguments(k32, k_exact, *_nonzero_span(k_exact), limit, k_vert, *_nonzero_span(k_vert))


def dhash_square(patches: np.ndarray) -> np.ndarray:
    """dHash of a stack of equally sized uint8 patches (N, H, W) → (N,) uint64.

    Bit-identical to imagehash for patches at least as wide as tall (emseg's are 224 × 224).
    Pillow picks its pass order by cost and runs the vertical pass first on much taller images,
    which this does not reproduce: some bits then differ (seen on 224 × 100, 30 × 17).
    """
    from emseg.curate.dhash_kernel import hashes

    patches = np.asarray(patches)
    if patches.ndim != 3 or patches.dtype != np.uint8:
        raise ValueError(f"dhash expects (N, H, W) uint8 patches, got {patches.shape} {patches.dtype}")
    n, h, w = patches.shape
    out = np.empty(n, dtype=np.uint64)
    hashes(np.ascontiguousarray(patches), *kernel_arguments(h, w), out)
    return out


def resize_bilinear(patch: np.ndarray, size: int = PATCH) -> np.ndarray:
    """A smaller border patch resized to size × size with Pillow's bilinear filter."""
    from PIL import Image

    if patch.shape == (size, size):
        return patch
    return np.asarray(Image.fromarray(patch).resize((size, size), Image.Resampling.BILINEAR))


def dhash_patches(patches: np.ndarray, heights: np.ndarray | None = None, widths: np.ndarray | None = None) -> np.ndarray:
    """dHash of zero-padded patches (N, 224, 224) whose true sizes are ``heights``/``widths``.

    Smaller (border) patches are cropped to their true size and resized to 224 × 224 bilinear
    first, as the reference does.
    """
    patches = np.asarray(patches)
    if heights is None or widths is None:
        return dhash_square(patches)
    full = (np.asarray(heights) == patches.shape[1]) & (np.asarray(widths) == patches.shape[2])
    if full.all():
        return dhash_square(patches)
    stack = patches.copy()
    for i in np.flatnonzero(~full):
        stack[i] = resize_bilinear(patches[i, : heights[i], : widths[i]], patches.shape[1])
    return dhash_square(stack)


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Hamming distance between uint64 hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))
