"""Item-kNN baseline, for both tables: items that were consumed together are related.

Item-to-item (from the item graph): the cosine of co-occurrence, ``score(a, b) = w(a, b) / sqrt(W(a) * W(b))``
with ``w`` the graph's summed edge weight and ``W`` its row sum (Sarwar et al. 2001, "Item-based
collaborative filtering recommendation algorithms"; Linden et al. 2003, Amazon's item-to-item). Pairs
that never co-occurred score 0.0, as do unseen items; an item's neighbours are only the items it
co-occurred with, best first, ties to the lower item index (ranked for many items at once with one sort,
``recsys.ranking.best_first_per_row``).

User-to-item (from the interactions), as RecBole's ``ItemKNN`` (Aiolli 2013, "Efficient top-n
recommendation for very large scale binary rated datasets"; recbole/model/general_recommender/itemknn.py):
with ``R`` the binary users x items matrix, the similarity of items ``i`` and ``j`` is the cosine of
their columns, ``cos(i, j) = |U(i) & U(j)| / sqrt(|U(i)| |U(j)|)`` (shrink 0); each item ``i`` keeps only
its ``k`` most similar other items (``S[j, i] = cos(i, j)`` for those ``j``, 0 elsewhere), and
``score(u, i) = (R_u S)_i``, the summed similarity to ``i`` of the user's history items that are among
``i``'s neighbours. Deviations: no ``1e-6`` in the cosine's denominator (items without users have no
entries instead), and ties among equally similar neighbours go to the lower item index rather than
to ``argpartition``'s arbitrary order. ``S`` is computed sparsely, ``R^T R`` a block of item columns at a
time, so memory stays O(n_items * k) plus one block's co-occurrences; never a dense item x item matrix.
The top items of a user are ranked from the sparse ``R_u S`` with the zero-scored rest of the catalogue
behind it in index order (``recsys.ranking.top_k_with_fallback``), equal to ranking the dense row: the
work grows with the users' neighbour entries, never users x items.

The model serves the tables its inputs allow: item-to-item when ``inputs.table`` is given,
user-to-item when ``inputs.interactions`` is given. Having no epochs to validate, it uses the whole
training window's matrix (``inputs.user_history``, when given: the training part plus each user's
latest item that the learning curves of the other models hold out).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.interactions import Interactions
from recsys.models.base import FALLBACK_SCORE, ITEM_TO_ITEM, USER_TO_ITEM, ItemModel, TrainingInputs, UserModel, \
    known_pairs, read_meta, write_meta
from recsys.models.params import NoParams
from recsys.ranking import best_first_per_row, csr_row_offsets, fill_top_k, top_k_with_fallback_in_batches
from recsys.transition import TransitionTable

log = logging.getLogger(__name__)

NEIGHBOURS = 100  # similar items each item keeps (RecBole's default k)
BLOCK_WORK = 1 << 22  # multiply-adds of R^T R per column block: bounds one block's co-occurrence entries
SIMILAR_ENTRIES = 1 << 22  # graph entries that ``similar`` ranks at once


# -- the user side's similarity: pure array functions ------------------------------------------------

def binary_matrix(interactions: Interactions) -> sp.csr_matrix:
    """``R`` (users x items), 1.0 for every stored interaction whatever its weight."""
    R = interactions
    return sp.csr_matrix((np.ones(R.nnz, np.float32), R.indices, R.indptr), shape=(R.n_users, R.n_items))


def column_blocks(R: sp.csr_matrix, budget: int = BLOCK_WORK) -> list[tuple[int, int]]:
    """Consecutive item ranges ``[start, end)`` whose columns of ``R^T R`` cost at most ``budget``
    multiply-adds each (an item costing more alone is a block of its own). Item ``i`` costs the
    summed degrees of its users: the entries the product visits for its column."""
    work = R.T @ np.diff(R.indptr).astype(np.float64)  # (n_items,)
    done = np.concatenate([[0.0], np.cumsum(work)])
    blocks, start = [], 0
    while start < R.shape[1]:
        end = int(np.searchsorted(done, done[start] + budget, side="right")) - 1
        end = min(max(end, start + 1), R.shape[1])
        blocks.append((start, end))
        start = end
    return blocks


def top_k_per_target(target: np.ndarray, neighbour: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Mask of the ``k`` best entries of each target: highest score first, ties to the lower neighbour."""
    order = np.lexsort((neighbour, -score, target))
    sorted_target = target[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_target, sorted_target, side="left")
    keep = np.zeros(len(order), dtype=bool)
    keep[order[rank < k]] = True
    return keep


def top_k_cosine(R: sp.csr_matrix, k: int, budget: int = BLOCK_WORK) -> sp.csr_matrix:
    """``S`` (n_items x n_items, CSR, float32): column ``i`` holds ``cos(i, j)`` at row ``j`` for the ``k``
    items ``j != i`` most similar to ``i`` (only ``j`` sharing a user with ``i``: the cosine is then > 0)."""
    n_items = R.shape[1]
    norms = np.sqrt(np.asarray(R.multiply(R).sum(axis=0), dtype=np.float64).ravel())  # (n_items,)
    by_item = R.T.tocsr()  # (n_items, n_users)
    rows, cols, vals = [], [], []
    for start, end in column_blocks(R, budget):
        counts = (by_item[start:end] @ R).tocoo()  # (end - start, n_items): co-occurrences with every item
        target, neighbour = counts.row.astype(np.int64) + start, counts.col.astype(np.int64)
        other = target != neighbour
        target, neighbour = target[other], neighbour[other]
        cosine = counts.data[other].astype(np.float64) / (norms[target] * norms[neighbour])
        keep = top_k_per_target(target, neighbour, cosine, k)
        rows.append(neighbour[keep])
        cols.append(target[keep])
        vals.append(cosine[keep].astype(np.float32))
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    S = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items))
    S.sort_indices()
    return S


# -- the model ------------------------------------------------------------------------------------------

class ItemKNNModel(ItemModel, UserModel):
    name = "item_knn"
    serves = frozenset({ITEM_TO_ITEM, USER_TO_ITEM})  # what it can serve; each instance narrows it to its inputs

    def __init__(self, table: TransitionTable | None, interactions: Interactions | None = None, k: int = NEIGHBOURS):
        self.serves = frozenset()
        if table is not None:
            self._fit_items(table)
        if interactions is not None:
            self._fit_users(interactions, k)
        self.meta = {"serves": sorted(self.serves), "k": k}

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: NoParams) -> "ItemKNNModel":
        if inputs.table is None and inputs.interactions is None:
            raise ValueError("item_knn needs the item graph, the interactions, or both")
        return cls(inputs.table, inputs.user_history if inputs.user_history is not None else inputs.interactions)

    def _fit_items(self, table: TransitionTable) -> None:
        self.indptr, self.indices = table.indptr, table.indices
        row_sums = np.maximum(table.row_sums(), 1e-12)
        src = np.repeat(np.arange(table.n_nodes), table.out_degree())
        self.cosine = (table.weights / np.sqrt(row_sums[src] * row_sums[table.indices])).astype(np.float32)  # (E,)
        self.serves |= {ITEM_TO_ITEM}

    def _fit_users(self, interactions: Interactions, k: int) -> None:
        if k < 1:
            raise ValueError(f"item_knn keeps k >= 1 neighbours per item, got {k}")
        started = time.perf_counter()
        self.history = binary_matrix(interactions)  # (n_users, n_items)
        self.similarity = top_k_cosine(self.history, k)  # (n_items, n_items), <= k entries per column
        self.user_ids, self.item_ids = interactions.user_ids, interactions.item_ids
        self.serves |= {USER_TO_ITEM}
        log.info("item_knn: %d items, %d similarities kept (k=%d) in %.1f s", interactions.n_items,
                 self.similarity.nnz, k, time.perf_counter() - started)

    # -- item-to-item -----------------------------------------------------------------------------

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self._require(ITEM_TO_ITEM)
        scores = np.full(len(a), FALLBACK_SCORE, dtype=np.float32)
        for i in np.flatnonzero(known_pairs(a, b, len(self.indptr) - 1)):
            lo, hi = self.indptr[a[i]], self.indptr[a[i] + 1]
            pos = lo + np.searchsorted(self.indices[lo:hi], b[i])
            if pos < hi and self.indices[pos] == b[i]:
                scores[i] = self.cosine[pos]
        return scores

    def known_items(self) -> np.ndarray:
        self._require(ITEM_TO_ITEM)
        return np.flatnonzero(np.diff(self.indptr) > 0)

    def similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Each node's ``n`` neighbours by cosine, best first, ties to the lower item index; ``-1`` and 0.0
        pad (an unknown node gets only padding). Ranked ``SIMILAR_ENTRIES`` neighbour entries at a time."""
        self._require(ITEM_TO_ITEM)
        nodes = np.asarray(nodes, dtype=np.int64)
        out_idx = np.full((len(nodes), n), -1, dtype=np.int64)
        out_val = np.zeros((len(nodes), n), dtype=np.float32)
        rows = np.flatnonzero((nodes >= 0) & (nodes < len(self.indptr) - 1))
        entries_through = np.cumsum(self.indptr[nodes[rows] + 1] - self.indptr[nodes[rows]])
        lo = 0
        while lo < len(rows):
            before = entries_through[lo - 1] if lo else 0
            hi = max(lo + 1, int(np.searchsorted(entries_through, before + SIMILAR_ENTRIES, side="right")))
            sub_indptr, offsets = csr_row_offsets(self.indptr, nodes[rows[lo:hi]])
            ranked = best_first_per_row(np.repeat(rows[lo:hi], np.diff(sub_indptr)),
                                        self.indices[offsets].astype(np.int64), self.cosine[offsets], n)
            fill_top_k(*ranked, out_idx, out_val)
            lo = hi
        return out_idx, out_val

    # -- user-to-item -----------------------------------------------------------------------------

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        self._require(USER_TO_ITEM)
        block = self.history[np.asarray(users, dtype=np.int64)] @ self.similarity  # sparse (B, n_items)
        return block.toarray().astype(np.float32, copy=False)

    def exact_top_items(self, users: np.ndarray, n: int, exclude: Interactions | None = None,
                        batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """``top_items`` from each user's sparse scores (``R_u S``: the neighbours of the user's items only);
        every other item scores 0 and fills the remaining slots by ascending index, as the dense ranking
        would. The work is the users' neighbour entries, not users x catalogue."""
        self._require(USER_TO_ITEM)
        n_items = self.similarity.shape[0]

        def candidates(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            block = self.history[batch] @ self.similarity  # sparse (B, n_items)
            return block.indptr, block.indices, block.data

        masks = (exclude.indptr, exclude.indices) if exclude is not None else (None, None)
        return top_k_with_fallback_in_batches(candidates, users, n, np.arange(n_items), np.zeros(n_items, np.float32),
                                              *masks, batch_size=batch_size)

    def _require(self, table: str) -> None:
        if table not in self.serves:
            raise ValueError(f"this item_knn model was trained without the inputs of {table}; it serves {sorted(self.serves)}")

    # -- persistence ------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        # the item side is derived from the run's graph at load; the user side is stored
        write_meta(folder, **{**self.meta, "name": self.name})
        if USER_TO_ITEM in self.serves:
            for prefix, matrix in (("similarity", self.similarity), ("history", self.history)):
                np.save(folder / f"{prefix}_indptr.npy", matrix.indptr)
                np.save(folder / f"{prefix}_indices.npy", matrix.indices)
                np.save(folder / f"{prefix}_data.npy", matrix.data)
            np.save(folder / "user_ids.npy", self.user_ids.astype(str))  # unicode arrays: no pickle
            np.save(folder / "item_ids.npy", self.item_ids.astype(str))

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "ItemKNNModel":
        def array(name: str) -> np.ndarray:
            return np.load(folder / name, allow_pickle=False)

        meta = read_meta(folder)
        model = cls(None)
        model.meta = meta
        if ITEM_TO_ITEM in meta.get("serves", [ITEM_TO_ITEM]):  # folders saved before the user side: items only
            if inputs.table is not None:
                model._fit_items(inputs.table)
            else:
                log.warning("item_knn loaded without the item graph: it serves only user_to_item")
        if USER_TO_ITEM in meta.get("serves", []):
            model.user_ids, model.item_ids = array("user_ids.npy").astype(object), array("item_ids.npy").astype(object)
            n_users, n_items = len(model.user_ids), len(model.item_ids)
            for prefix, shape in (("similarity", (n_items, n_items)), ("history", (n_users, n_items))):
                matrix = sp.csr_matrix((array(f"{prefix}_data.npy"), array(f"{prefix}_indices.npy"),
                                        array(f"{prefix}_indptr.npy")), shape=shape)
                setattr(model, prefix, matrix)
            model.serves |= {USER_TO_ITEM}
        return model
