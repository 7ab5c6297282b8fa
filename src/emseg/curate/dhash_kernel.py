"""Compiled (numba) dHash kernel: both LANCZOS passes, the rounding and the bits, one patch at a time.

The horizontal pass (≈ 75 % of the time) sums in float32, nine outputs per image row at once so
each pixel is loaded and converted once; `dhash._horizontal_coeffs` bounds its rounding error,
and each sum within that bound of a rounding boundary is recomputed exactly. Every other value
is an exact integer sum in float64 (8-bit pixels times 22-bit Pillow coefficients, < 2**53), so
the summation order that ``fastmath`` reassociation picks cannot change a bit.
"""

from __future__ import annotations

import numba
import numpy as np

from emseg.curate.dhash import _HALF as HALF
from emseg.curate.dhash import _SCALE as SCALE
from emseg.curate.dhash import HASH_SIZE

_FAST = {"reassoc", "contract"}  # lets LLVM vectorise the sums below
# numba's cache is keyed on this file alone: the constants imported above (Pillow's, fixed) are
# frozen into the cached machine code.


def _njit(**options):
    """``numba.njit`` with an on-disk cache where numba finds a writable place for one (the
    package's ``__pycache__``, a user cache directory or ``NUMBA_CACHE_DIR``), else without:
    a read-only install under an unwritable home then compiles once per process instead of failing."""
    def decorate(function):
        try:
            return numba.njit(cache=True, nogil=True, **options)(function)
        except RuntimeError:  # "cannot cache function …: no locator available"
            return numba.njit(cache=False, nogil=True, **options)(function)
    return decorate


@_njit(fastmath=_FAST)
def _row_sums(row, k, sums):
    """sums[j] = Σ_x row[x] · k[j, x] in float32 for the 9 outputs of one row (k: (9, w) float32)."""
    k0, k1, k2, k3, k4, k5, k6, k7, k8 = k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = np.float32(0.0)
    for x in range(row.shape[0]):
        p = np.float32(row[x])
        s0 += p * k0[x]
        s1 += p * k1[x]
        s2 += p * k2[x]
        s3 += p * k3[x]
        s4 += p * k4[x]
        s5 += p * k5[x]
        s6 += p * k6[x]
        s7 += p * k7[x]
        s8 += p * k8[x]
    sums[0], sums[1], sums[2], sums[3], sums[4] = s0, s1, s2, s3, s4
    sums[5], sums[6], sums[7], sums[8] = s5, s6, s7, s8


@_njit(fastmath=_FAST)
def _dot(a, b):
    acc = 0.0
    for i in range(a.shape[0]):
        acc += np.float64(a[i]) * b[i]
    return acc


@_njit()
def _clip8(total):
    """Pillow's clip8 of an exact integer sum: floor((s + 2**21) / 2**22) clipped to 0..255."""
    return min(max(np.floor((total + HALF) / SCALE), 0.0), 255.0)


@_njit()
def hashes(patches, k32, k_exact, lo, hi, limit, k_vert, vlo, vhi, out):
    """dHash of each (h, w) uint8 patch in ``patches`` into ``out`` (uint64); the coefficient
    arguments are `dhash.KernelArguments`. A horizontal sum farther than ``limit`` from its
    nearest integer may round either way and is recomputed exactly.
    """
    n, h, w = patches.shape
    levels = np.empty((HASH_SIZE + 1, h), np.float64)
    sums = np.empty(HASH_SIZE + 1, np.float32)
    for p in range(n):
        for y in range(h):
            row = patches[p, y]
            _row_sums(row, k32, sums)
            for j in range(HASH_SIZE + 1):
                level = np.floor(sums[j] + np.float32(0.5))
                if abs(sums[j] - level) > limit:
                    level = _clip8(_dot(row[lo[j]:hi[j]], k_exact[j, lo[j]:hi[j]]))
                levels[j, y] = min(max(level, 0.0), 255.0)
        bits = np.uint64(0)
        for i in range(HASH_SIZE):
            kv = k_vert[i, vlo[i]:vhi[i]]
            previous = _clip8(_dot(levels[0, vlo[i]:vhi[i]], kv))
            for j in range(1, HASH_SIZE + 1):
                current = _clip8(_dot(levels[j, vlo[i]:vhi[i]], kv))
                bits = (bits << np.uint64(1)) | np.uint64(current > previous)
                previous = current
        out[p] = bits
