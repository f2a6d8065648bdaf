"""Most-popular baseline: every item's neighbours are the catalogue's most popular items.

Scoring rule: ``score(a, b) = log(1 + events(b))`` over the training window, whatever ``a`` is; an item
never seen in training scores the fallback 0.0. It is the floor every model must clear.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.models.base import FALLBACK_SCORE, ItemModel, TrainingInputs, known_pairs, top_n_rows, write_meta
from recsys.models.params import NoParams


class PopularModel(ItemModel):
    name = "popular"

    def __init__(self, popularity: np.ndarray):
        self.popularity = np.log1p(popularity.astype(np.float64)).astype(np.float32)  # (n_nodes,)

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: NoParams) -> "PopularModel":
        return cls(inputs.item_stats.column("events").to_numpy())

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        scores = np.full(len(b), FALLBACK_SCORE, dtype=np.float32)
        known = known_pairs(a, b, len(self.popularity))
        scores[known] = self.popularity[b[known]]
        return scores

    def known_items(self) -> np.ndarray:
        return np.arange(len(self.popularity))

    def similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        top_idx, top_val = top_n_rows(self.popularity[None, :], n + 1)
        idx = np.tile(top_idx, (len(nodes), 1))
        val = np.tile(top_val, (len(nodes), 1))
        keep = idx != nodes[:, None]
        # drop the node itself where it is among the top n+1, else the (n+1)-th
        keep[keep.sum(axis=1) > n, -1] = False
        idx, val = idx[keep].reshape(len(nodes), n), val[keep].reshape(len(nodes), n)
        unknown = (nodes < 0) | (nodes >= len(self.popularity))  # an item never seen gets no neighbours
        idx[unknown], val[unknown] = -1, 0.0
        return idx, val

    def save(self, folder: Path) -> None:
        write_meta(folder, name=self.name)
        np.save(folder / "popularity.npy", self.popularity)

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "PopularModel":
        model = cls.__new__(cls)
        model.popularity = np.load(folder / "popularity.npy", allow_pickle=False)
        return model
