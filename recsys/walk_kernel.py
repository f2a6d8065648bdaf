"""Compiled random-walk kernel over CSR arrays with per-row alias tables.

Walker's alias method (Walker 1977; Vose 1991, "A linear algorithm for generating random numbers with a
given distribution") makes each weighted step O(1): pick a slot of the current row uniformly, keep it
with probability ``alias_prob[slot]``, else jump to ``alias_idx[slot]``. These are the weighted walks of
DeepWalk-style product embeddings (Perozzi et al. 2014, "DeepWalk"; Wang et al. 2018, "Billion-scale
Commodity Embedding for E-commerce Recommendation in Alibaba").

The kernels see only arrays. Every walk has its own random stream seeded from ``(seed, walk_id)``, so
a walk depends on the graph, the seed and its id alone, never on the batch or Spark partition that
computes it. ``alias_idx`` holds absolute edge positions (``indptr[row] <= alias_idx[e] < indptr[row+1]``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_STAR = np.uint64(0x2545F4914F6CDD1D)
_U53 = 1.0 / 9007199254740992.0  # 2**-53


@nb.njit(cache=True, inline="always")
def _splitmix64(x: np.uint64) -> np.uint64:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@nb.njit(cache=True, inline="always")
def _next(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    """xorshift64*: returns (new state, output)."""
    state ^= state >> np.uint64(12)
    state ^= state << np.uint64(25)
    state ^= state >> np.uint64(27)
    return state, state * _STAR


@nb.njit(cache=True)
def build_alias(indptr: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row alias tables (Vose), edge-aligned: ``alias_prob`` float32 and ``alias_idx`` int32 (absolute)."""
    n_edges = weights.shape[0]
    alias_prob = np.ones(n_edges, dtype=np.float32)
    alias_idx = np.arange(n_edges).astype(np.int32)
    scaled = np.empty(n_edges, dtype=np.float64)
    small = np.empty(n_edges, dtype=np.int64)
    large = np.empty(n_edges, dtype=np.int64)
    for row in range(indptr.shape[0] - 1):
        lo, hi = indptr[row], indptr[row + 1]
        degree = hi - lo
        if degree == 0:
            continue
        total = 0.0
        for e in range(lo, hi):
            total += weights[e]
        n_small = 0
        n_large = 0
        for e in range(lo, hi):
            scaled[e] = weights[e] * degree / total
            if scaled[e] < 1.0:
                small[n_small] = e
                n_small += 1
            else:
                large[n_large] = e
                n_large += 1
        while n_small > 0 and n_large > 0:
            n_small -= 1
            s = small[n_small]
            g = large[n_large - 1]
            alias_prob[s] = scaled[s]
            alias_idx[s] = g
            scaled[g] = (scaled[g] + scaled[s]) - 1.0
            if scaled[g] < 1.0:
                n_large -= 1
                small[n_small] = g
                n_small += 1
        # leftovers are exactly 1 up to rounding: they keep their own slot
        for i in range(n_large):
            alias_prob[large[i]] = 1.0
        for i in range(n_small):
            alias_prob[small[i]] = 1.0
    return alias_prob, alias_idx


@nb.njit(cache=True)
def random_walks(indptr: np.ndarray, indices: np.ndarray, alias_prob: np.ndarray, alias_idx: np.ndarray,
                 starts: np.ndarray, walk_ids: np.ndarray, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Walks of up to ``length`` nodes from each start; a dead end ends a walk early.

    Returns ``(nodes int32, offsets int64)``: walk ``i`` is ``nodes[offsets[i]:offsets[i+1]]``.
    """
    n_walks = starts.shape[0]
    buffer = np.empty(n_walks * length, dtype=np.int32)
    offsets = np.zeros(n_walks + 1, dtype=np.int64)
    seed_mix = _splitmix64(np.uint64(seed))
    pos = 0
    for w in range(n_walks):
        state = _splitmix64(seed_mix ^ _splitmix64(np.uint64(walk_ids[w])))
        if state == 0:
            state = _GOLDEN
        node = starts[w]
        buffer[pos] = node
        pos += 1
        for _ in range(length - 1):
            lo = indptr[node]
            degree = indptr[node + 1] - lo
            if degree == 0:
                break
            state, r = _next(state)
            slot = lo + np.int64((r >> np.uint64(32)) * np.uint64(degree) >> np.uint64(32))
            u = np.float64(r & np.uint64(0xFFFFFFFF)) * (1.0 / 4294967296.0)
            edge = slot if u < alias_prob[slot] else alias_idx[slot]
            node = indices[edge]
            buffer[pos] = node
            pos += 1
        offsets[w + 1] = pos
    return buffer[:pos].copy(), offsets


def walk_steps(offsets: np.ndarray) -> int:
    """Transitions taken: the sum over walks of (nodes - 1)."""
    lengths = np.diff(offsets)
    return int((lengths - 1).clip(min=0).sum())
