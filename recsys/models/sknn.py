"""Session-kNN and V-SKNN: the next item from the training sessions most similar to the current one.

Ludewig & Jannach 2018, "Evaluation of session-based recommendation algorithms" (User Modeling and
User-Adapted Interaction 28; https://arxiv.org/abs/1803.09587), sections 3.1 (SKNN) and 3.2 (V-SKNN),
with the details of the authors' session-rec framework (``algorithms/knn/sknn.py`` ``ContextKNN``,
``algorithms/knn/vsknn.py`` ``VMContextKNN``, its default settings). Training only indexes the training
sessions: a binary session x item incidence ``M`` (CSR; an item repeated in a session counts once),
its transpose (the sessions of each item) and each session's recency.

For the current session ``x_1 .. x_n`` (the prefix so far, clicks in time order) with distinct items ``X``:

1. candidates: the training sessions sharing at least one item with ``X``; when there are more than
   ``sample_size``, only the ``sample_size`` most recent (session-rec's ``sampling='recent'``);
2. similarity of a candidate ``s`` (items ``S``):
   - ``sknn``: the cosine of the binary vectors, ``|X & S| / sqrt(|X| |S|)``;
   - ``vsknn``: ``sum_{i in X & S} w(i) / |X|`` with ``w(i) = p(i) / n``, ``p(i)`` the 1-based position
     of ``i``'s last click in the prefix (session-rec's default ``weighting='div'``: a linear decay, the
     last click weighs 1, the first ``1/n``) and ``|X|`` the prefix's distinct items (session-rec's
     ``vec`` divides by the size of its position map);
3. neighbours: the ``k`` candidates of highest similarity (ties: the more recent first);
4. ``score(i) = sum over neighbours s containing i of sim(s) * d(s)`` (``vote_scores``); for ``sknn`` ``d = 1``; for
   ``vsknn`` with ``score_weighting='div'`` (session-rec's default ``weighting_score='div'``)
   ``d(s) = 1 / t`` where ``t`` is 1 if the prefix's last click is in ``s``, 2 if the click before it is
   the latest one in ``s``, and so on; ``'same'`` sets ``d = 1``. Items never in a neighbour get no vote:
   ``position_scores`` gives them ``-inf``, so they are never recommended (a list may be shorter than N).

Deviations from session-rec: a session's recency is its start (``Sequences.starts``), not the time
of its last click, ties broken by session order; ``sknn`` uses the true cosine (session-rec computes
``|X & S| / sqrt(|X|) * sqrt(|S|)``, an operator-precedence slip) and adds no "reminder" boosts of
the current session's items; scores are not divided by their maximum (that does not change a ranking).

Everything is vectorised over a block of prefixes: the prefixes' (item, weight) entries form a sparse
``B x n_items`` matrix ``P``; ``P M^T`` (sparse ``B x n_sessions``) gives every candidate's overlap at
once, the sample and top-``k`` cuts are per-row sorts of its entries, and the scores are the sparse
``B x n_sessions`` neighbour matrix times ``M``, densified only as the ``B x n_items`` score block.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.models.base import SequenceModel, TrainingInputs, read_meta, write_meta
from recsys.models.params import SKNNParams
from recsys.sequences import Sequences

log = logging.getLogger(__name__)

ENTRY_BUDGET = 1 << 20  # prefix (row, item) entries built at once: a prefix of length L has L of them


# -- pure array functions ------------------------------------------------------------------------

def incidence(items: np.ndarray, offsets: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Binary session x item matrix (float64, sorted indices): 1 where the session clicked the item."""
    session = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    M = sp.csr_matrix((np.ones(len(items)), (session, items)), shape=(len(offsets) - 1, n_items))
    M.sum_duplicates()
    M.data[:] = 1.0
    return M


def prefix_entries(items: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every prefix's clicks: for each position ``r`` of each sequence and each ``j`` from the sequence's
    first position to ``r``, ``(row r, click j, first position of the sequence)``."""
    lengths = np.diff(offsets)
    first = np.repeat(offsets[:-1], lengths)  # (n,) first position of each position's sequence
    rows = np.arange(len(items))
    counts = rows - first + 1  # clicks in each prefix
    entry_row = np.repeat(rows, counts)
    entry_start = np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)
    entry_click = np.repeat(first, counts) + np.arange(int(counts.sum())) - entry_start
    return entry_row, entry_click, first


def rank_within_rows(rows: np.ndarray, keys: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(order, rank)``: entries sorted by row then ``keys`` (ascending, last key most significant after
    the row, as ``np.lexsort``), and each sorted entry's 0-based rank within its row."""
    order = np.lexsort((*keys, rows))
    sorted_rows = rows[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_rows, sorted_rows, side="left")
    return order, rank


class SKNNModel(SequenceModel):
    name = "sknn"

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, starts: np.ndarray, n_items: int, params: SKNNParams,
                 meta: dict | None = None):
        self.params = params
        self.n_items = int(n_items)
        self.recommend_seen = params.recommend_seen
        n_sessions = len(indptr) - 1
        self.M = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n_sessions, self.n_items))  # (S, I)
        self.M.sort_indices()
        # the sessions of each item, plus an empty row n_items for clicks outside the catalogue
        self.MT = sp.vstack([self.M.T.tocsr(), sp.csr_matrix((1, n_sessions))]).tocsr()  # (I + 1, S)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.recency = np.empty(n_sessions, np.int64)  # 0 the oldest .. n_sessions - 1 the most recent
        self.recency[np.lexsort((np.arange(n_sessions), self.starts))] = np.arange(n_sessions)
        self.session_size = np.diff(indptr).astype(np.float64)  # distinct items per training session
        self._keys = np.repeat(np.arange(n_sessions, dtype=np.int64), np.diff(indptr)) * self.n_items + indices
        self.meta = meta or {}

    # -- training -------------------------------------------------------------------------------

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: SKNNParams) -> "SKNNModel":
        sequences: Sequences | None = inputs.sequences
        if sequences is None or not len(sequences) or not len(sequences.items):
            raise ValueError("sknn trains on the training window's sequences, but none were given (inputs.sequences is empty)")
        n_items = len(inputs.catalog.item_ids)
        if sequences.items.min() < 0 or sequences.items.max() >= n_items:
            raise ValueError(f"sknn: training sequences hold items outside the catalogue's {n_items} indices")
        started = time.perf_counter()
        M = incidence(sequences.items, sequences.offsets, n_items)
        seconds = time.perf_counter() - started
        meta = {"variant": params.variant, "k": params.k, "sample_size": params.sample_size,
                "score_weighting": params.score_weighting, "n_items": n_items, "sessions": len(sequences),
                "incidences": int(M.nnz), "fit_seconds": seconds, "epochs": 1, "seconds_per_epoch": seconds}
        model = cls(M.indptr, M.indices, sequences.starts, n_items, params, meta)
        inputs.progress(1, 1)
        log.info("sknn (%s): indexed %d sessions, %d session-item incidences in %.2f s", params.variant,
                 len(sequences), M.nnz, seconds)
        return model.bind(inputs)

    def known_items(self) -> np.ndarray:
        return np.flatnonzero(np.diff(self.MT.indptr)[:self.n_items] > 0).astype(np.int64)

    # -- scoring --------------------------------------------------------------------------------

    def position_scores(self, items: np.ndarray, offsets: np.ndarray, users: np.ndarray | None = None) -> np.ndarray:
        """``vote_scores`` with ``-inf`` for the items no neighbour holds: the model has nothing to say about
        them, so they are never recommended (a published row is always an item some neighbour session had)."""
        scores = self.vote_scores(items, offsets)
        scores[scores <= 0] = -np.inf
        return scores

    def vote_scores(self, items: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """The summed neighbour votes after every position (0 where no neighbour holds the item)."""
        items, offsets = np.asarray(items, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
        out = np.zeros((len(items), self.n_items), dtype=np.float32)
        lengths = np.diff(offsets)
        entries = lengths * (lengths + 1) // 2  # a sequence of length L has L prefixes, L(L+1)/2 clicks in all
        first = 0
        while first < len(lengths):  # blocks of whole sequences with at most ENTRY_BUDGET prefix clicks
            last = max(first + 1, int(np.searchsorted(np.cumsum(entries[first:]), ENTRY_BUDGET, side="right")) + first)
            lo, hi = offsets[first], offsets[last]
            if hi > lo:
                out[lo:hi] = self._block_scores(items[lo:hi], offsets[first:last + 1] - lo)
            first = last
        return out

    def _block_scores(self, items: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Scores ``(len(items), n_items)`` of the prefixes ending at every position of these sequences."""
        n_rows, n_sessions = len(items), self.M.shape[0]
        if n_sessions == 0:
            return np.zeros((n_rows, self.n_items), np.float32)
        row, click, first = prefix_entries(items, offsets)
        column = np.where((items >= 0) & (items < self.n_items), items, self.n_items)[click]
        # one entry per (prefix, distinct item), at the item's last click in the prefix
        order = np.lexsort((click, column, row))
        last = np.r_[(row[order][1:] != row[order][:-1]) | (column[order][1:] != column[order][:-1]), True]
        row, click, column = row[order][last], click[order][last], column[order][last]
        distinct = np.bincount(row, minlength=n_rows).astype(np.float64)  # |X| of each prefix
        if self.params.variant == "vsknn":
            weight = (click - first[row] + 1) / (np.arange(n_rows) - first + 1)[row]  # p(i) / n
        else:
            weight = np.ones(len(row))
        P = sp.csr_matrix((weight, (row, column)), shape=(n_rows, self.n_items + 1))  # (B, I + 1)
        overlap = (P @ self.MT).tocoo()  # (B, S): summed weights of the shared items of every candidate
        cand_row, cand, dot = overlap.row.astype(np.int64), overlap.col.astype(np.int64), overlap.data
        keep = dot > 0
        cand_row, cand, dot = cand_row[keep], cand[keep], dot[keep]
        # 1. the sample_size most recent candidates of each prefix
        order, rank = rank_within_rows(cand_row, (-self.recency[cand],))
        order = order[rank < self.params.sample_size]
        cand_row, cand, dot = cand_row[order], cand[order], dot[order]
        # 2. similarities, 3. the k most similar
        if self.params.variant == "vsknn":
            sim = dot / distinct[cand_row]
        else:
            sim = dot / np.sqrt(distinct[cand_row] * self.session_size[cand])
        order, rank = rank_within_rows(cand_row, (-self.recency[cand], -sim))
        order = order[rank < self.params.k]
        cand_row, cand, sim = cand_row[order], cand[order], sim[order]
        # 4. votes, divided by how far back the prefix last touched the neighbour
        if self.params.variant == "vsknn" and self.params.score_weighting == "div":
            sim = sim / self._steps_back(items, first, cand_row, cand)
        N = sp.csr_matrix((sim, (cand_row, cand)), shape=(n_rows, n_sessions))  # (B, S) sparse neighbour weights
        return (N @ self.M).toarray().astype(np.float32)  # (B, I)

    def _steps_back(self, items: np.ndarray, first: np.ndarray, row: np.ndarray, session: np.ndarray) -> np.ndarray:
        """For each (prefix ``row``, training ``session``) pair sharing an item: 1 if the prefix's last click
        is in the session, 2 if the click before it is the latest one that is, and so on."""
        steps = np.zeros(len(row), np.float64)
        pending = np.arange(len(row))
        back = 0
        while len(pending):
            position = row[pending] - back
            inside = position >= first[row[pending]]
            pending, position = pending[inside], position[inside]
            item = items[position]
            valid = (item >= 0) & (item < self.n_items)
            key = session[pending] * self.n_items + np.where(valid, item, 0)
            at = np.minimum(np.searchsorted(self._keys, key), max(len(self._keys) - 1, 0))
            found = valid & (self._keys[at] == key) if len(self._keys) else np.zeros(len(key), bool)
            steps[pending[found]] = back + 1
            pending = pending[~found]
            back += 1
        return steps

    # -- persistence ----------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "weights.npz", indptr=self.M.indptr.astype(np.int64), indices=self.M.indices.astype(np.int64),
                 starts=self.starts)
        write_meta(folder, **{**self.meta, "name": self.name, "n_items": self.n_items,
                              "params": self.params.model_dump(mode="json")})

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "SKNNModel":
        meta = read_meta(folder)
        with np.load(folder / "weights.npz", allow_pickle=False) as arrays:
            indptr, indices, starts = arrays["indptr"], arrays["indices"], arrays["starts"]
        model = cls(indptr, indices, starts, meta["n_items"], SKNNParams(**meta["params"]),
                    {k: v for k, v in meta.items() if k not in ("name", "params")})
        return model.bind(inputs)
