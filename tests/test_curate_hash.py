"""dHash bit-equality with imagehash, and greedy dedup equal to the brute-force reference."""

import numpy as np
import pytest

from emseg.curate.dedup import greedy_exemplars, greedy_exemplars_bruteforce
from emseg.curate.dhash import dhash_patches, dhash_square, hamming

imagehash = pytest.importorskip("imagehash")
Image = pytest.importorskip("PIL.Image")


def reference(patches):
    return np.array([int(str(imagehash.dhash(Image.fromarray(p))), 16) for p in patches], dtype=np.uint64)


def test_dhash_equals_imagehash_on_random_and_flat(rng):
    patches = rng.integers(0, 256, (150, 224, 224), dtype=np.uint8)
    patches[:10] = 0
    patches[10:20] = 255
    patches[20:30] = np.linspace(0, 255, 224).astype(np.uint8)[None, None, :]
    patches[30:60] = np.clip(rng.normal(128, 90, (30, 224, 224)), 0, 255).astype(np.uint8)  # clipping in the passes
    assert np.array_equal(dhash_square(patches), reference(patches))


def test_exact_recomputation_alone_equals_imagehash(rng):
    """The kernel's exact path (normally ~0.6 % of the sums), forced on for every sum."""
    from emseg.curate.dhash import kernel_arguments
    from emseg.curate.dhash_kernel import hashes

    patches = rng.integers(0, 256, (20, 224, 224), dtype=np.uint8)
    out = np.empty(len(patches), np.uint64)
    hashes(patches, *kernel_arguments(224, 224)._replace(limit=np.float32(-1.0)), out)
    assert np.array_equal(out, reference(patches))


def test_kernel_compiles_where_numba_cannot_cache(monkeypatch):
    """A read-only install under an unwritable home: no cache, but no failure either."""
    import numba
    import numba.core.caching as caching

    from emseg.curate.dhash_kernel import _njit

    def read_only(*args, **kwargs):
        raise PermissionError("read-only file system")

    def twice(x):
        return 2 * x

    monkeypatch.setattr(caching._CacheLocator, "ensure_cache_path", read_only)
    with pytest.raises(RuntimeError, match="cannot cache"):
        numba.njit(cache=True)(twice)
    assert _njit()(twice)(21) == 42


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_dhash_equals_imagehash_on_real_patches(shared_data):
    import tifffile

    with tifffile.TiffFile(shared_data / "lucchi" / "train_image.tif") as tif:
        stack = np.stack([tif.pages[z].asarray() for z in (0, 80, 160)])
    patches = np.stack([s[y:y + 224, x:x + 224] for s in stack for y in (0, 224, 448) for x in (0, 224, 448, 672)])
    assert np.array_equal(dhash_square(patches), reference(patches))


def test_border_patches_are_resized_to_224_bilinear_first(rng):
    padded = np.zeros((2, 224, 224), np.uint8)
    crop = rng.integers(0, 256, (130, 224), dtype=np.uint8)
    padded[0, :130] = crop
    padded[1] = rng.integers(0, 256, (224, 224), dtype=np.uint8)
    got = dhash_patches(padded, np.array([130, 224]), np.array([224, 224]))
    want = reference([np.asarray(Image.fromarray(crop).resize((224, 224), Image.Resampling.BILINEAR)), padded[1]])
    assert np.array_equal(got, want)


def clustered_hashes(n, centres, flips, rng):
    cent = rng.integers(0, 2**63, centres, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, centres, dtype=np.uint64)
    h = cent[rng.integers(0, centres, n)]
    for _ in range(flips):
        bit = rng.integers(0, 64, n).astype(np.uint64)
        h = np.where(rng.random(n) < 0.6, h ^ (np.uint64(1) << bit), h)
    return h


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [0, 7])
def test_dedup_equals_bruteforce(seed, rng):
    hashes = np.concatenate([clustered_hashes(3000, 250, 11, rng), np.repeat(rng.integers(0, 2**63, 5, dtype=np.uint64), 40)])
    fast = greedy_exemplars(hashes, seed=seed)
    assert np.array_equal(fast, greedy_exemplars_bruteforce(hashes, seed=seed))
    exemplars = np.unique(fast)
    assert np.array_equal(fast[exemplars], exemplars)  # exemplars map to themselves
    assert (hamming(hashes, hashes[fast]) <= 12).all()
    # no two exemplars are duplicates of each other
    e = hashes[exemplars]
    assert (hamming(e[:, None], e[None, :]) + 100 * np.eye(len(e), dtype=int) > 12).all()
    assert 200 < len(exemplars) < 1500


def test_dedup_seed_changes_order_not_rules(rng):
    hashes = clustered_hashes(500, 40, 8, rng)
    for m in (3, 4, 6, 13):
        assert np.array_equal(greedy_exemplars(hashes, seed=3, m=m), greedy_exemplars_bruteforce(hashes, seed=3))
    big = clustered_hashes(5_000, 300, 12, rng)
    reference = greedy_exemplars_bruteforce(big, seed=4)
    for factor in (0.0, 1.0, 1e9):  # index only; index then direct comparison; direct only
        assert np.array_equal(greedy_exemplars(big, seed=4, brute_factor=factor), reference)
    assert len(greedy_exemplars(np.empty(0, np.uint64))) == 0
