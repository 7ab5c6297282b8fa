"""Greedy exemplar deduplication of dHashes (CEM500K), sub-quadratic via multi-index hashing.

The reference: visit the hashes in a shuffled order; the first hash not yet removed becomes an
exemplar and removes every remaining hash within Hamming distance ``threshold`` (≤ 12); repeat.
Each hash maps to the exemplar that removed it (an exemplar maps to itself).

Here the range queries use multi-index hashing (Norouzi et al., CVPR 2012): the 64 bits are
split into ``m`` sub-strings, each with a bucket table. With ``r = m·s + t`` (0 ≤ t < m), two
hashes within distance r agree to within s bits on one of the first t + 1 sub-strings or to
within s − 1 bits on one of the others (otherwise their distance would be ≥ r + 1), so a query
probes every sub-string value within that radius and checks the candidates' full distance
with a vectorised popcount. Identical hashes are collapsed first (they are always removed
together); queries run in vectorised blocks; the index is rebuilt on the unresolved hashes
whenever they have halved, and once few are left a block is compared with all of them directly.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from emseg.curate.dhash import hamming

DEFAULT_THRESHOLD = 12
BRUTE_FACTOR = 1.0  # compare directly once that costs less than this × the index's cost per query
BRUTE_BLOCK = 64
PROBE_COST = 2.0  # one bucket probe costs about two candidate checks (measured)
DIRECT_COST = 0.25  # one direct comparison costs about a quarter of a candidate check (measured)


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
    """(shift, width) of ``m`` contiguous sub-strings covering 64 bits, widest first."""
    widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    shifts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    return [(int(s), w) for s, w in zip(shifts, widths)]


def part_radii(m: int, radius: int) -> list[int]:
    """Search radius of each of ``m`` sub-strings for a full radius (−1: not searched)."""
    s, t = divmod(radius, m)
    return [s if j <= t else s - 1 for j in range(m)]


def _n_flips(width: int, radius: int) -> int:
    from math import comb

    return sum(comb(width, r) for r in range(radius + 1))


def _flip_masks(width: int, radius: int) -> np.ndarray:
    """All ``width``-bit masks with at most ``radius`` bits set."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(width), r)]
    return np.array(masks, dtype=np.int64)


def query_cost(n: int, m: int, radius: int) -> float:
    """Expected cost of one query (in candidate checks) of an index with m sub-strings on n uniform hashes."""
    cost = 0.0
    for (_, width), rho in zip(_split_bits(m), part_radii(m, radius)):
        if rho >= 0:
            probes = _n_flips(width, rho)
            cost += PROBE_COST * probes + probes * n / (1 << width)
    return cost


def choose_m(n: int, threshold: int) -> int:
    """The number of sub-strings with the lowest expected query cost (keys of at most 22 bits)."""
    return min(range(3, min(threshold + 1, 64) + 1), key=lambda m: query_cost(n, m, threshold))


class MultiIndex:
    """Bucket tables on ``m`` sub-strings of 64-bit hashes for Hamming range queries."""

    def __init__(self, hashes: np.ndarray, ids: np.ndarray, radius: int, m: int) -> None:
        if not 3 <= m <= 64:
            raise ValueError(f"multi-index hashing needs 3..64 sub-strings (≤ 22-bit keys), got {m}")
        self.radius, self.m, self.size = radius, m, len(hashes)
        self.tables = []
        for (shift, width), rho in zip(_split_bits(m), part_radii(m, radius)):
            if rho < 0:
                continue
            keys = ((hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
            order = np.argsort(keys, kind="stable")
            starts = np.zeros((1 << width) + 1, dtype=np.int64)
            np.cumsum(np.bincount(keys, minlength=1 << width), out=starts[1:])
            self.tables.append((shift, width, starts, hashes[order], ids[order], _flip_masks(width, rho)))

    def cost(self) -> float:
        """Expected cost of one query, in candidate checks."""
        return query_cost(self.size, self.m, self.radius)

    def near_pairs(self, query_hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query position, id) of every indexed hash within the radius of each query (may repeat)."""
        qs, ids = [], []
        for shift, width, starts, hashes, hash_ids, flips in self.tables:
            keys = ((query_hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
            probes = (keys[:, None] ^ flips[None, :]).ravel()
            lo = starts[probes]
            sizes = starts[probes + 1] - lo
            hit = np.flatnonzero(sizes)
            if hit.size == 0:
                continue
            lo, sizes = lo[hit], sizes[hit]
            ends = np.cumsum(sizes)
            # the ranges [lo, lo + size) concatenated without a Python loop
            pos = np.arange(ends[-1]) + np.repeat(lo - (ends - sizes), sizes)
            q = np.repeat(hit // len(flips), sizes)
            near = np.flatnonzero(hamming(hashes[pos], query_hashes[q]) <= self.radius)
            qs.append(q[near])
            ids.append(hash_ids[pos[near]])
        if not qs:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(qs), np.concatenate(ids)


def greedy_exemplars(
    hashes: np.ndarray, seed: int = 0, threshold: int = DEFAULT_THRESHOLD, m: int | None = None,
    brute_factor: float = BRUTE_FACTOR,
) -> np.ndarray:
    """Each hash's exemplar index under the greedy reference (same result as the brute force).

    ``m`` forces the multi-index with m sub-strings; ``brute_factor`` scales when the direct
    comparison takes over (0: never; very large: always).
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    exemplar = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return exemplar
    order = shuffled_order(n, seed)
    # collapse identical hashes; visit unique values in order of their first shuffled position
    unique, first_pos, inverse = np.unique(hashes[order], return_index=True, return_inverse=True)
    rep = order[first_pos]  # representative (first visited) original index per unique value
    owner = np.full(len(unique), -1, dtype=np.int64)  # exemplar's unique id per unique value
    alive = np.argsort(first_pos)  # unresolved unique ids, in visiting order
    index = None
    while len(alive):
        if index is None or (m is None and len(alive) < index.size // 2):
            index = MultiIndex(unique[alive], alive, threshold, m or choose_m(len(alive), threshold))
        direct = m is None and DIRECT_COST * len(alive) < brute_factor * index.cost()
        if direct:
            queries = alive[:BRUTE_BLOCK]
            near = hamming(unique[queries][:, None], unique[alive][None, :]) <= threshold
            neighbours = [alive[row] for row in near]
        else:
            queries = alive[: int(np.clip(2_000_000 / index.cost(), 16, 4096))]
            q, c = index.near_pairs(unique[queries])
            keep = owner[c] < 0
            q, c = q[keep], c[keep]
            sort = np.argsort(q, kind="stable")
            q, c = q[sort], c[sort]
            bounds = np.searchsorted(q, np.arange(len(queries) + 1))
            neighbours = [c[bounds[j]:bounds[j + 1]] for j in range(len(queries))]
        for u, nb in zip(queries, neighbours):
            if owner[u] >= 0:
                continue
            owner[nb[owner[nb] < 0]] = u
            owner[u] = u
        alive = alive[owner[alive] < 0]
    exemplar[order] = rep[owner[inverse]]
    return exemplar
