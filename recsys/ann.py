"""Approximate top-N by inner product: an HNSW index over item vectors, for publishing large catalogues.

The exact top-N of an embedding model scores every anchor against every candidate item (O(items^2));
above ``publish.ann_min_items`` recommendable items the publish stage asks the model for an index
instead (``ItemModel.approximate_search``, ``UserModel.approximate_search``). The index is faiss's
HNSW graph (Malkov & Yashunin 2018, "Efficient and robust approximate nearest neighbor search using
Hierarchical Navigable Small World graphs", https://arxiv.org/abs/1603.09320; faiss: Douze et al. 2024,
"The Faiss library", https://arxiv.org/abs/2401.08281), picked by ``benchmarks/ann.py``.

- **One search for both scorings.** Cosine models search unit vectors; dot-scoring models (``mf_*``
  items, the factor models' users) search the inner product ``left_a . right_b``. Both become a
  Euclidean nearest-neighbour search by the transform of Bachrach et al. 2014 ("Speeding up the Xbox
  recommender system using a Euclidean transformation for inner-product spaces", RecSys): each item
  vector ``r`` gets one more coordinate ``sqrt(R^2 - |r|^2)`` (``R`` the largest norm), each query a 0,
  so every item lies on one sphere and ``|q' - r'|^2 = |q|^2 + R^2 - 2 q.r``: the nearest items are
  those of the largest inner product, and the graph is built on a true metric.
- **Same scores and order as the exact path.** The index only proposes candidates: each one is
  re-scored with the model's own vectors (float32 inner product) and rows are ordered by score
  descending, then by the lower item index, as ``top_n_rows`` orders them; dropped items (the anchor
  itself, a user's seen items) are asked for on top of ``n`` and removed after the search.
- **Deterministic.** faiss draws the HNSW levels from a fixed seed and inserts items in index order;
  with more than one thread the insertions race, so the graph is built on one thread (its cost is in
  ``docs/benchmarks.md``). Search is per query and uses ``threads`` threads: same vectors -> same graph
  -> same tables, for any search thread count.
- **Measured in every run.** ``measure_recall`` compares the approximate top-N with the exact top-N on
  a seeded sample of anchors (recall@N = shared items / exact items, averaged) and times the exact
  path on that sample, extrapolated to all anchors: what the index saved. Below ``publish.ann_min_recall``
  (0.95) it doubles ``ef_search`` and measures again (user queries are farther from the item sphere than
  item queries: at 180,000 items LightGCN's users reached 0.888 at 128), before the table is searched.
  ``SearchSummary`` is what the publish result and the run report carry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

log = logging.getLogger(__name__)

QUERY_BLOCK = 8192  # queries searched and re-scored at once: (block x k x dim) float32 stays small
RECALL_SAMPLE = 1000  # anchors whose approximate top-N is compared with the exact top-N in every run
MAX_EF_SEARCH = 2048  # how far measure_recall raises ef_search to reach publish.ann_min_recall


@dataclass(frozen=True)
class HNSWParams:
    """The graph's degree (``M``: links per node, 2M on the bottom layer) and the candidate lists of
    insertion (``ef_construction``) and search (``ef_search``, at least the ``k`` asked for)."""

    M: int = 16
    ef_construction: int = 100
    ef_search: int = 128


def euclidean_items(right: np.ndarray) -> np.ndarray:
    """Item vectors with the extra coordinate ``sqrt(R^2 - |r|^2)``: all on the sphere of radius ``R``."""
    right = np.asarray(right, dtype=np.float32)
    squared = np.einsum("ij,ij->i", right, right, dtype=np.float64)
    extra = np.sqrt(np.maximum(squared.max(initial=0.0) - squared, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([right, extra[:, None]]))


def euclidean_queries(left: np.ndarray) -> np.ndarray:
    """Query vectors with a 0 appended (the inner product with a transformed item is unchanged)."""
    left = np.asarray(left, dtype=np.float32)
    return np.ascontiguousarray(np.hstack([left, np.zeros((len(left), 1), np.float32)]))


def _faiss():
    import faiss  # imported when an index is built: exact-only runs never load it

    return faiss


class VectorSearch:
    """Top-N of ``query . right[c]`` over the rows ``c`` of ``right`` (the candidates), approximately.

    ``right`` is kept (float32) for the re-scoring; the index holds a transformed copy of it.
    """

    def __init__(self, right: np.ndarray, params: HNSWParams = HNSWParams(), threads: int = 1):
        faiss = _faiss()
        self.right = np.ascontiguousarray(right, dtype=np.float32)
        self.params, self.threads = params, max(1, int(threads))
        started = time.perf_counter()
        self.index = faiss.IndexHNSWFlat(self.right.shape[1] + 1, params.M, faiss.METRIC_L2)
        self.index.hnsw.efConstruction = params.ef_construction
        faiss.omp_set_num_threads(1)  # one thread: parallel insertions race, and the graph would vary
        if len(self.right):
            self.index.add(euclidean_items(self.right))
        self.build_seconds = time.perf_counter() - started
        log.info("ann: HNSW over %d vectors (M %d, ef_construction %d) built in %.1f s", len(self.right), params.M,
                 params.ef_construction, self.build_seconds)

    def __len__(self) -> int:
        return len(self.right)

    def candidates(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Up to ``k`` candidate rows per query from the graph, -1 where it found fewer."""
        faiss = _faiss()
        k = min(k, len(self.right))
        if k <= 0 or not len(queries):
            return np.full((len(queries), max(k, 0)), -1, np.int64)
        faiss.omp_set_num_threads(self.threads)
        self.index.hnsw.efSearch = max(self.params.ef_search, k)
        return self.index.search(euclidean_queries(queries), k)[1].astype(np.int64)

    def top_n(self, queries: np.ndarray, n: int, extra: np.ndarray | int = 0,
              drop: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The best ``n`` candidate rows per query by exact inner product, best first, ties to the lower row.

        ``drop(query_positions, rows)`` marks candidates a query must not get (its own item, seen items);
        ``extra[q]`` is how many query ``q`` may drop, asked for from the graph on top of ``n``. Returns
        ``(rows, scores)`` of shape ``(len(queries), n)``; -1 and 0.0 pad rows with fewer.
        """
        queries = np.asarray(queries, dtype=np.float32)
        extra = np.broadcast_to(np.asarray(extra, dtype=np.int64), (len(queries),))
        out_rows, out_scores = np.full((len(queries), n), -1, np.int64), np.zeros((len(queries), n), np.float32)
        rounded = np.where(extra > 0, 1 << np.ceil(np.log2(np.maximum(extra, 1))).astype(np.int64), 0)
        sizes = np.minimum(n + rounded, max(len(self.right), 1))  # n + extra rounded up to a power of two
        for k in np.unique(sizes):  # queries asking for about as many candidates are searched together
            group = np.flatnonzero(sizes == k)
            for lo in range(0, len(group), QUERY_BLOCK):
                block = group[lo:lo + QUERY_BLOCK]
                out_rows[block], out_scores[block] = self._best(queries[block], block, int(k), n, drop)
        return out_rows, out_scores

    def _best(self, queries: np.ndarray, positions: np.ndarray, k: int, n: int,
              drop: Callable[[np.ndarray, np.ndarray], np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        found = self.candidates(queries, k)
        valid = found >= 0
        if drop is not None:
            owner = np.broadcast_to(positions[:, None], found.shape)
            valid[valid] = ~drop(owner[valid], found[valid])
        safe = np.where(valid, found, 0)
        scores = np.einsum("qd,qkd->qk", queries, self.right[safe]).astype(np.float32)
        scores = np.where(valid, scores, -np.inf)
        order = np.lexsort((np.where(valid, found, np.iinfo(np.int64).max), -scores), axis=1)[:, :n]
        rows, scores = np.take_along_axis(found, order, axis=1), np.take_along_axis(scores, order, axis=1)
        finite = np.isfinite(scores)
        rows, scores = np.where(finite, rows, -1), np.where(finite, scores, 0.0).astype(np.float32)
        if rows.shape[1] < n:
            rows = np.pad(rows, ((0, 0), (0, n - rows.shape[1])), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, n - scores.shape[1])))
        return rows, scores


@dataclass(frozen=True)
class SearchSummary:
    """How one table's top-N was searched, for the publish result and the run report."""

    table: str
    method: str  # "hnsw"
    library: str  # e.g. "faiss 1.15.1"
    candidates: int  # items indexed
    anchors: int  # items or users searched for
    n: int
    recall: float  # mean recall@n of the approximate top-n against the exact top-n on the sample
    sample: int  # anchors in the sample
    build_seconds: float
    search_seconds: float  # the whole table's approximate top-n (with the table's rows)
    exact_seconds: float  # the exact path on the sample, extrapolated to all anchors
    params: dict

    @property
    def saved_seconds(self) -> float:
        return self.exact_seconds - self.build_seconds - self.search_seconds

    def as_dict(self) -> dict:
        return {**asdict(self), "saved_seconds": round(self.saved_seconds, 2)}

    def describe(self) -> str:
        """One line for the log (the report's sentence is ``recsys.report.search_text``)."""
        return (f"{self.table} by HNSW over {self.candidates} items: recall@{self.n} {self.recall:.3f} on {self.sample} "
                f"sampled anchors; build {self.build_seconds:.1f} s, search {self.search_seconds:.1f} s, exact estimated "
                f"{self.exact_seconds:.1f} s")


def library_version() -> str:
    return f"faiss {_faiss().__version__}"


def recall_at_n(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of |approximate & exact| / |exact| (rows with no exact neighbour left out); -1 pads."""
    shared, counted = 0.0, 0
    for mine, truth in zip(approximate, exact):
        truth = truth[truth >= 0]
        if len(truth):
            shared += len(np.intersect1d(mine[mine >= 0], truth)) / len(truth)
            counted += 1
    return shared / counted if counted else 1.0


def recall_sample(anchors: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A seeded sample of ``size`` anchors (all when fewer), in ascending order."""
    anchors = np.asarray(anchors, dtype=np.int64)
    if len(anchors) <= size:
        return np.sort(anchors)
    return np.sort(np.random.default_rng(seed).choice(anchors, size=size, replace=False))


def measure_recall(approximate: Callable[[np.ndarray], np.ndarray], exact: Callable[[np.ndarray], np.ndarray],
                   anchors: np.ndarray, size: int = RECALL_SAMPLE, seed: int = 0, search: VectorSearch | None = None,
                   min_recall: float = 0.0) -> tuple[float, int, float]:
    """Recall@n of ``approximate`` against ``exact`` (each: anchors -> top-n ids) on a seeded sample of
    ``anchors``: ``(recall, sample size, exact seconds extrapolated to all anchors)``. With ``search``, the
    one ``approximate`` uses, its ``ef_search`` doubles (up to ``MAX_EF_SEARCH``) while the recall is under
    ``min_recall``: the search is then left at the first ``ef_search`` that reached it."""
    sample = recall_sample(anchors, size, seed)
    if not len(sample):
        return 1.0, 0, 0.0
    started = time.perf_counter()
    truth = exact(sample)
    exact_seconds = (time.perf_counter() - started) * len(anchors) / len(sample)
    recall = recall_at_n(approximate(sample), truth)
    while search is not None and recall < min_recall and search.params.ef_search < MAX_EF_SEARCH:
        search.params = replace(search.params, ef_search=min(2 * search.params.ef_search, MAX_EF_SEARCH))
        recall_before, recall = recall, recall_at_n(approximate(sample), truth)
        log.info("ann: recall@%d %.3f under %.2f: ef_search %d gives %.3f", truth.shape[1], recall_before, min_recall,
                 search.params.ef_search, recall)
    return recall, len(sample), exact_seconds


MAX_DROPPED = 1024  # a user with more items to leave out than this is ranked exactly (few users; a long search)


def top_n_for_users(search: VectorSearch, user_vectors: np.ndarray, users: np.ndarray, n: int, exclude=None,
                    exact: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The top-``n`` items of ``users`` (rows of ``user_vectors``) by inner product with the indexed items,
    each user's items in ``exclude`` (an ``Interactions``, or None) left out. A user with more than
    ``MAX_DROPPED`` of them is ranked by ``exact(users, n, exclude)`` instead."""
    users = np.asarray(users, dtype=np.int64)
    seen = exclude.user_degrees()[users] if exclude is not None else np.zeros(len(users), np.int64)
    light, heavy = np.flatnonzero(seen <= MAX_DROPPED), np.flatnonzero(seen > MAX_DROPPED)
    if exact is None and len(heavy):
        raise ValueError(f"{len(heavy)} users leave out more than {MAX_DROPPED} items and no exact ranking was given")
    chosen = users[light]
    drop = (lambda query, found: exclude.contains(chosen[query], found)) if exclude is not None else None
    items, scores = np.full((len(users), n), -1, np.int64), np.zeros((len(users), n), np.float32)
    items[light], scores[light] = search.top_n(user_vectors[chosen], n, extra=seen[light], drop=drop)
    if len(heavy):
        heavy_items, heavy_scores = exact(users[heavy], n, exclude)
        items[heavy] = heavy_items
        scores[heavy] = np.where(heavy_items >= 0, heavy_scores, 0.0)
    return items, scores
