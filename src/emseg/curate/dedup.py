"""Greedy exemplar deduplication of dHashes (CEM500K), sub-quadratic via multi-index hashing.

The reference: visit the hashes in a shuffled order; the first hash not yet removed becomes an
exemplar and removes every remaining hash within Hamming distance ``threshold`` (≤ 12); repeat.
Each hash maps to the exemplar that removed it (an exemplar maps to itself).

Here the range queries use multi-index hashing: the 64 bits are split into ``m`` sub-strings
and, by the pigeonhole principle, two hashes within distance r agree to within
``r // m`` bits on at least one sub-string. Each sub-string has a bucket table (counting sort);
a query probes every sub-string value within that radius, then checks the candidates' full
distance with a vectorised popcount. Identical hashes are collapsed first (exact: they are
always removed together), queries run in vectorised blocks, and once few hashes are unresolved
(or the input is small) a block is compared with all unresolved hashes directly instead.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from emseg.curate.dhash import hamming

DEFAULT_THRESHOLD = 12
BRUTE_FACTOR = 40  # full comparison costs ≈ what the index costs for 40 × its expected candidates
BRUTE_BLOCK = 64


def shuffled_order(n: int, seed: int) -> np.ndarray:
    """The visiting order of the greedy pass for ``n`` hashes and a seed."""
    return np.random.default_rng(seed).permutation(n)


def greedy_exemplars_bruteforce(hashes: np.ndarray, seed: int = 0, threshold: int = DEFAULT_THRESHOLD) -> np.ndarray:
    """The reference algorithm, O(N × exemplars): returns each hash's exemplar index."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    exemplar = np.full(len(hashes), -1, dtype=np.int64)
    for i in shuffled_order(len(hashes), seed):
        if exemplar[i] >= 0:
            continue
        near = (hamming(hashes, hashes[i]) <= threshold) & (exemplar < 0)
        exemplar[near] = i
    return exemplar


def _split_bits(m: int) -> list[tuple[int, int]]:
    """(shift, width) of ``m`` contiguous sub-strings covering 64 bits."""
    widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    shifts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    return [(int(s), w) for s, w in zip(shifts, widths)]


def _flip_masks(width: int, radius: int) -> np.ndarray:
    """All ``width``-bit masks with at most ``radius`` bits set."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(width), r)]
    return np.array(masks, dtype=np.int64)


class MultiIndex:
    """Bucket tables on ``m`` sub-strings of 64-bit hashes for Hamming range queries."""

    def __init__(self, hashes: np.ndarray, radius: int, m: int) -> None:
        if not 3 <= m <= 64:
            raise ValueError(f"multi-index hashing needs 3..64 sub-strings (≤ 22-bit keys), got {m}")
        self.hashes = hashes
        self.sub_radius = radius // m
        self.tables = []
        for shift, width in _split_bits(m):
            keys = ((hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
            order = np.argsort(keys, kind="stable")
            starts = np.zeros((1 << width) + 1, dtype=np.int64)
            np.cumsum(np.bincount(keys, minlength=1 << width), out=starts[1:])
            self.tables.append((shift, width, order, starts, _flip_masks(width, self.sub_radius)))

    def expected_candidates(self) -> float:
        """Mean number of candidates per query if sub-string values were uniform."""
        return sum(len(flips) * len(self.hashes) / (1 << width) for _, width, _, _, flips in self.tables)

    def candidate_pairs(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query position, candidate index) pairs that may be within the radius (a superset)."""
        qs, cs = [], []
        for shift, width, order, starts, flips in self.tables:
            keys = ((self.hashes[queries] >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
            probes = (keys[:, None] ^ flips[None, :]).ravel()
            lo = starts[probes]
            sizes = starts[probes + 1] - lo
            total = int(sizes.sum())
            if total == 0:
                continue
            # concatenate the ranges [lo, hi) without a Python loop
            ends = np.cumsum(sizes)
            offsets = np.repeat(lo - (ends - sizes), sizes)
            cs.append(order[np.arange(total) + offsets])
            qs.append(np.repeat(np.repeat(np.arange(len(queries)), len(flips)), sizes))
        if not cs:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(qs), np.concatenate(cs)


def choose_m(n: int, threshold: int) -> int:
    """Number of sub-strings: ≈ log2(n)-bit keys, but at least one bit of radius per sub-string."""
    width = int(np.clip(np.log2(max(n, 2)), 8, 21))
    return int(np.clip(round(64 / width), 1, threshold + 1))


def greedy_exemplars(
    hashes: np.ndarray, seed: int = 0, threshold: int = DEFAULT_THRESHOLD, m: int | None = None,
    brute_factor: float = BRUTE_FACTOR,
) -> np.ndarray:
    """Each hash's exemplar index under the greedy reference (same result as the brute force).

    ``m`` forces the multi-index with m sub-strings throughout; ``brute_factor`` sets when the
    direct comparison takes over (fewer unresolved hashes than that × the index's expected
    candidates per query).
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    exemplar = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return exemplar
    order = shuffled_order(n, seed)
    # collapse identical hashes; visit unique values in order of their first shuffled position
    unique, first_pos, inverse = np.unique(hashes[order], return_index=True, return_inverse=True)
    visit = np.argsort(first_pos)  # unique ids in visiting order
    rep = order[first_pos]  # representative (first visited) original index per unique value
    owner = np.full(len(unique), -1, dtype=np.int64)  # exemplar's unique id per unique value
    alive = visit  # unresolved unique ids, in visiting order
    index = MultiIndex(unique, threshold, m or choose_m(len(unique), threshold))
    expected = max(index.expected_candidates(), 1.0)
    # Queries go in blocks: the neighbours of a whole block are found at once (vectorised), then
    # the greedy rule runs query by query inside the block on those short lists. While many
    # hashes are unresolved the multi-index finds candidates; once few are left (or for small
    # inputs) comparing a block against all unresolved hashes is cheaper.
    use_index = m is not None or len(alive) > brute_factor * expected
    block = int(np.clip(2_000_000 / expected, 16, 4096))
    while len(alive):
        queries = alive[:block] if use_index else alive[:BRUTE_BLOCK]
        if use_index:
            q, c = index.candidate_pairs(queries)
            near = (owner[c] < 0) & (hamming(unique[c], unique[queries[q]]) <= threshold)
            q, c = q[near], c[near]
            sort = np.argsort(q, kind="stable")
            q, c = q[sort], c[sort]
            bounds = np.searchsorted(q, np.arange(len(queries) + 1))
            neighbours = [c[bounds[j]:bounds[j + 1]] for j in range(len(queries))]
        else:
            near = hamming(unique[queries][:, None], unique[alive][None, :]) <= threshold
            neighbours = [alive[row] for row in near]
        for u, nb in zip(queries, neighbours):
            if owner[u] >= 0:
                continue
            owner[nb[owner[nb] < 0]] = u
            owner[u] = u
        alive = alive[owner[alive] < 0]
        if use_index and m is None and len(alive) < brute_factor * expected:
            use_index = False
    exemplar[order] = rep[owner[inverse]]
    return exemplar
