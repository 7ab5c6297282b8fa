"""Difference hash (dHash), vectorised over a batch of patches, bit-identical to `imagehash.dhash`.

imagehash resizes the image to 9 × 8 with Pillow's LANCZOS filter (two separable passes,
horizontal first, 22-bit fixed-point coefficients, each pass rounded and clipped to uint8),
then compares neighbouring columns. Here both passes are matrix products with the same
integer coefficients: the large horizontal one in float32 (fast), with every value whose
rounding float32 could have changed recomputed exactly in float64; the small vertical one
in float64 (exact). Bit ``k`` of the 64-bit result (most significant first) is
``pixels[k // 8, k % 8 + 1] > pixels[k // 8, k % 8]``, so ``int(str(imagehash.dhash(im)), 16)``
equals ``dhash(...)``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

PATCH = 224
HASH_SIZE = 8
PRECISION_BITS = 22  # Pillow: 32 - 8 - 2
_SCALE = float(1 << PRECISION_BITS)
_HALF = float(1 << (PRECISION_BITS - 1))
# float32 sums of (p - 128) * k over 224 taps stay within n * u * sum|terms| + ulp/2
# < 224 * 2**-24 * 2**29.2 + 64 ≈ 7.8e3 of the exact integer; values within this margin
# (2**14) of a rounding boundary are recomputed exactly.
_MARGIN = 2.0**14 / _SCALE


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


def _round_clip(sums: np.ndarray) -> np.ndarray:
    """Pillow's ``clip8``: floor((s + 2**21) / 2**22) clipped to 0..255 (exact for integer sums)."""
    return np.clip(np.floor((sums + _HALF) / _SCALE), 0, 255)


def _horizontal(patches: np.ndarray, kh: np.ndarray, work: dict | None = None) -> np.ndarray:
    """(N, H, W) uint8 → (N, H, 9) resampled rows, exactly as Pillow's horizontal pass.

    ``work`` holds reusable buffers (fresh large arrays cost more in page faults than the maths).
    """
    n, h, w = patches.shape
    rows = patches.reshape(n * h, w)
    k32, offset = _f32_coeffs(kh.tobytes(), kh.shape)
    work = {} if work is None else work
    if work.get("shape") != rows.shape:
        work.update(shape=rows.shape, centred=np.empty(rows.shape, np.float32),
                    sums=np.empty((rows.shape[0], kh.shape[1]), np.float32))
    centred, sums = work["centred"], work["sums"]
    np.subtract(rows, np.float32(128.0), out=centred, dtype=np.float32)
    np.matmul(centred, k32, out=sums)
    sums += offset
    levels = sums.astype(np.float64) / _SCALE  # exact up to float32's error
    out = np.floor(levels)
    frac = levels - out
    doubtful = np.flatnonzero(((frac < _MARGIN) | (frac > 1.0 - _MARGIN)).any(axis=1))
    if doubtful.size:
        exact = rows[doubtful].astype(np.float64) @ kh.astype(np.float64) + _HALF
        out[doubtful] = np.floor(exact / _SCALE)
    return np.clip(out, 0, 255).reshape(n, h, -1)


@lru_cache(maxsize=8)
def _f32_coeffs(raw: bytes, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """float32 coefficients and the offset restoring the +128 shift and Pillow's rounding half
    (2**21 + 128 * column sum)."""
    kh = np.frombuffer(raw, dtype=np.int64).reshape(shape)
    offset = _HALF + 128.0 * kh.sum(axis=0)
    return kh.astype(np.float32), offset.astype(np.float32)


def _bits_to_uint64(diff: np.ndarray) -> np.ndarray:
    """(N, 64) bool, most significant first → (N,) uint64."""
    packed = np.packbits(diff.astype(np.uint8), axis=1)  # (N, 8) big-endian bytes
    return packed.view(">u8").ravel().astype(np.uint64)


def dhash_square(patches: np.ndarray, batch: int = 32) -> np.ndarray:
    """dHash of a stack of equally sized uint8 patches (N, H, W) → (N,) uint64."""
    patches = np.asarray(patches)
    if patches.ndim != 3 or patches.dtype != np.uint8:
        raise ValueError(f"dhash expects (N, H, W) uint8 patches, got {patches.shape} {patches.dtype}")
    n, h, w = patches.shape
    kh = lanczos_matrix(w, HASH_SIZE + 1)
    kv = lanczos_matrix(h, HASH_SIZE).astype(np.float64)
    out = np.empty(n, dtype=np.uint64)
    work: dict = {}
    for start in range(0, n, batch):
        chunk = patches[start:start + batch]
        rows = _horizontal(chunk, kh, work)  # (b, H, 9)
        small = _round_clip(np.matmul(rows.transpose(0, 2, 1), kv)).transpose(0, 2, 1)  # (b, 8, 9)
        diff = small[:, :, 1:] > small[:, :, :-1]
        out[start:start + len(chunk)] = _bits_to_uint64(diff.reshape(len(chunk), -1))
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
