"""Item co-occurrence baseline (item-kNN): items that shared sessions in training are related.

Scoring rule: the cosine of co-occurrence, ``score(a, b) = w(a, b) / sqrt(W(a) * W(b))`` with ``w`` the
graph's summed edge weight and ``W`` its row sum (Sarwar et al. 2001, "Item-based collaborative
filtering recommendation algorithms"; Linden et al. 2003, Amazon's item-to-item). Pairs that never
co-occurred score 0.0, as do unseen items; an item's neighbours are only the items it co-occurred with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.models.base import FALLBACK_SCORE, ItemModel, TrainingInputs, known_pairs, top_n_rows, write_meta
from recsys.models.params import NoParams
from recsys.transition import TransitionTable


class ItemKNNModel(ItemModel):
    name = "item_knn"

    def __init__(self, table: TransitionTable):
        self.indptr, self.indices = table.indptr, table.indices
        row_sums = np.maximum(table.row_sums(), 1e-12)
        src = np.repeat(np.arange(table.n_nodes), table.out_degree())
        self.cosine = (table.weights / np.sqrt(row_sums[src] * row_sums[table.indices])).astype(np.float32)  # (E,)

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: NoParams) -> "ItemKNNModel":
        return cls(inputs.table)

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        scores = np.full(len(a), FALLBACK_SCORE, dtype=np.float32)
        for i in np.flatnonzero(known_pairs(a, b, len(self.indptr) - 1)):
            lo, hi = self.indptr[a[i]], self.indptr[a[i] + 1]
            pos = lo + np.searchsorted(self.indices[lo:hi], b[i])
            if pos < hi and self.indices[pos] == b[i]:
                scores[i] = self.cosine[pos]
        return scores

    def known_items(self) -> np.ndarray:
        return np.flatnonzero(np.diff(self.indptr) > 0)

    def similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        out_idx = np.full((len(nodes), n), -1, dtype=np.int64)
        out_val = np.zeros((len(nodes), n), dtype=np.float32)
        for row, node in enumerate(nodes):
            if node < 0 or node >= len(self.indptr) - 1:
                continue
            lo, hi = self.indptr[node], self.indptr[node + 1]
            if hi > lo:
                idx, val = top_n_rows(self.cosine[None, lo:hi], n)
                found = idx[0] >= 0
                out_idx[row, found[: n]] = self.indices[lo:hi][idx[0][found]]
                out_val[row, found[: n]] = val[0][found]
        return out_idx, out_val

    def save(self, folder: Path) -> None:
        write_meta(folder, name=self.name, note="derived from the run's graph; nothing else to store")

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "ItemKNNModel":
        return cls(inputs.table)
