"""Difference hash (dHash), vectorised over a batch of patches, bit-identical to `imagehash.dhash`.

imagehash resizes the image to 9 × 8 with Pillow's LANCZOS filter (two separable passes,
horizontal first, 22-bit fixed-point coefficients, each pass rounded and clipped to uint8),
then compares neighbouring columns. Here both passes are matrix products with the same
integer coefficients. The large horizontal one runs in float32 on a few patches at a time (so
the buffers stay in cache); its rounding error is bounded (Higham's γ_n · Σ|p·k|), and each
value that lies within that bound of a rounding boundary is recomputed exactly in float64.
The small vertical pass runs in float64, which is exact. Bit ``k`` of the 64-bit result (most
significant first) is ``pixels[k // 8, k % 8 + 1] > pixels[k // 8, k % 8]``, so
``int(str(imagehash.dhash(im)), 16)`` equals ``dhash(...)``.
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
BATCH = 8  # patches per matrix product: 8 × 224 × 224 float32 = 1.6 MB stays in cache


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


@lru_cache(maxsize=8)
def _horizontal_coeffs(in_size: int) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """float32 coefficients scaled to output levels, the exact float64 ones (transposed), and the
    doubt margin: float32's worst-case error of a 0..255 row times a column, in levels."""
    kh = lanczos_matrix(in_size, HASH_SIZE + 1).astype(np.float64)
    n = in_size
    gamma = n * 2.0**-24 / (1 - n * 2.0**-24)
    worst = gamma * 255 * np.abs(kh).sum(axis=0).max() / _SCALE + 2.0**-15  # + the +0.5 and scaling roundings
    return (kh / _SCALE).astype(np.float32), np.ascontiguousarray(kh.T), np.float32(2 * worst)


def _horizontal(chunk: np.ndarray, work: dict) -> np.ndarray:
    """(b, H, W) uint8 patches → (H, b, 9) float32 levels, exactly as Pillow's horizontal pass
    (before clipping). Rows come out ordered (y, patch) so the vertical pass needs no transpose."""
    b, h, w = chunk.shape
    k32, exact_t, margin = _horizontal_coeffs(w)
    if work.get("shape") != chunk.shape:
        work.update(shape=chunk.shape, pixels=np.empty((h, b, w), np.float32),
                    levels=np.empty((h * b, k32.shape[1]), np.float32))
    pixels, levels = work["pixels"], work["levels"]
    np.copyto(pixels, chunk.transpose(1, 0, 2), casting="unsafe")
    np.matmul(pixels.reshape(h * b, w), k32, out=levels)
    levels += np.float32(0.5)  # Pillow's rounding half, in levels
    out = np.floor(levels)
    np.subtract(levels, out, out=levels)  # fractional part, exact
    levels -= np.float32(0.5)
    np.abs(levels, out=levels)
    doubtful = np.flatnonzero(levels > np.float32(0.5) - margin)  # near a boundary: recompute exactly
    if doubtful.size:
        r, c = np.divmod(doubtful, k32.shape[1])
        y, i = np.divmod(r, b)
        exact = np.einsum("ij,ij->i", chunk[i, y].astype(np.float64), exact_t[c]) + _HALF
        out.ravel()[doubtful] = np.floor(exact / _SCALE)
    return out.reshape(h, b, -1)


def _bits_to_uint64(diff: np.ndarray) -> np.ndarray:
    """(N, 64) bool, most significant first → (N,) uint64."""
    packed = np.packbits(diff, axis=1)  # (N, 8) big-endian bytes
    return packed.view(">u8").ravel().astype(np.uint64)


def dhash_square(patches: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """dHash of a stack of equally sized uint8 patches (N, H, W) → (N,) uint64."""
    patches = np.asarray(patches)
    if patches.ndim != 3 or patches.dtype != np.uint8:
        raise ValueError(f"dhash expects (N, H, W) uint8 patches, got {patches.shape} {patches.dtype}")
    n, h, w = patches.shape
    kv = lanczos_matrix(h, HASH_SIZE).astype(np.float64)
    out = np.empty(n, dtype=np.uint64)
    work: dict = {}
    for start in range(0, n, batch):
        chunk = patches[start:start + batch]
        b = len(chunk)
        rows = np.clip(_horizontal(chunk, work), 0, 255).reshape(h, b * (HASH_SIZE + 1))
        small = _round_clip(kv.T @ rows).reshape(HASH_SIZE, b, HASH_SIZE + 1)  # float64: exact
        diff = small[:, :, 1:] > small[:, :, :-1]
        out[start:start + b] = _bits_to_uint64(diff.transpose(1, 0, 2).reshape(b, -1))
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
