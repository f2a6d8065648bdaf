"""Most-popular baseline, for both tables: the floor every model must clear.

Item-to-item (from the item graph's statistics): ``score(a, b) = log(1 + events(b))`` over the
training window, whatever ``a`` is; an item never seen in training scores the fallback 0.0.

User-to-item (from the interactions): ``score(u, i) = |{users who interacted with i}|``, the same for
every user (RecBole's ``Pop``, counted over distinct users); the evaluation and publication remove the
user's own training items, so a user gets the most popular items they have not interacted with. Ties
go to the lower item index, as everywhere in the ranking code. The ranking reads the one popularity list per
user until ``n`` items remain after the user's exclusions (``recsys.ranking.top_k_with_fallback``), never
a dense users x items block.

The model serves the tables its inputs allow: item-to-item when ``inputs.table`` is given,
user-to-item when ``inputs.interactions`` is given. Having no epochs to validate, it uses the whole
training window's matrix (``inputs.user_history``, when given: the training part plus each user's
latest item that the learning curves of the other models hold out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.interactions import Interactions
from recsys.models.base import FALLBACK_SCORE, ITEM_TO_ITEM, USER_TO_ITEM, ItemModel, TrainingInputs, UserModel, \
    known_pairs, read_meta, top_n_rows, write_meta
from recsys.models.params import NoParams
from recsys.ranking import top_k_with_fallback_in_batches


class PopularModel(ItemModel, UserModel):
    name = "popular"
    serves = frozenset({ITEM_TO_ITEM, USER_TO_ITEM})  # what it can serve; each instance narrows it to its inputs

    def __init__(self, popularity: np.ndarray | None, user_popularity: np.ndarray | None = None,
                 user_ids: np.ndarray | None = None, item_ids: np.ndarray | None = None):
        # item side: log1p(events) per graph node, (n_nodes,); user side: distinct users per item, (n_items,)
        self.popularity = None if popularity is None else np.log1p(popularity.astype(np.float64)).astype(np.float32)
        self.user_popularity = None if user_popularity is None else user_popularity.astype(np.float32)
        self.user_ids, self.item_ids = user_ids, item_ids
        self.serves = frozenset({ITEM_TO_ITEM} if popularity is not None else set()) | \
            frozenset({USER_TO_ITEM} if user_popularity is not None else set())
        self.meta = {"serves": sorted(self.serves)}

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: NoParams) -> "PopularModel":
        if inputs.table is None and inputs.interactions is None:
            raise ValueError("popular needs the item graph, the interactions, or both")
        events = inputs.item_stats.column("events").to_numpy() if inputs.table is not None else None
        R = inputs.user_history if inputs.user_history is not None else inputs.interactions
        if R is None:
            return cls(events)
        return cls(events, R.item_degrees(), R.user_ids, R.item_ids)

    # -- item-to-item -----------------------------------------------------------------------------

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        scores = np.full(len(b), FALLBACK_SCORE, dtype=np.float32)
        known = known_pairs(a, b, len(self._item_side()))
        scores[known] = self.popularity[b[known]]
        return scores

    def known_items(self) -> np.ndarray:
        return np.arange(len(self._item_side()))

    def similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        top_idx, top_val = top_n_rows(self._item_side()[None, :], n + 1)
        idx = np.tile(top_idx, (len(nodes), 1))
        val = np.tile(top_val, (len(nodes), 1))
        keep = idx != nodes[:, None]
        # drop the node itself where it is among the top n+1, else the (n+1)-th
        keep[keep.sum(axis=1) > n, -1] = False
        idx, val = idx[keep].reshape(len(nodes), n), val[keep].reshape(len(nodes), n)
        unknown = (nodes < 0) | (nodes >= len(self.popularity))  # an item never seen gets no neighbours
        idx[unknown], val[unknown] = -1, 0.0
        return idx, val

    def _item_side(self) -> np.ndarray:
        if self.popularity is None:
            raise ValueError("this popular model was trained without the item graph: it serves only user_to_item")
        return self.popularity

    # -- user-to-item -----------------------------------------------------------------------------

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        if self.user_popularity is None:
            raise ValueError("this popular model was trained without interactions: it serves only item_to_item")
        return np.tile(self.user_popularity, (len(users), 1))  # (B, n_items): the same row for every user

    def exact_top_items(self, users: np.ndarray, n: int, exclude: Interactions | None = None,
                        batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """``top_items`` from the one popularity ranking: each user reads it only until ``n`` items remain
        after their own exclusions, never a row over the whole catalogue."""
        if self.user_popularity is None:
            raise ValueError("this popular model was trained without interactions: it serves only item_to_item")
        ranking = np.lexsort((np.arange(len(self.user_popularity)), -self.user_popularity))

        def no_candidates(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return np.zeros(len(batch) + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)

        masks = (exclude.indptr, exclude.indices) if exclude is not None else (None, None)
        return top_k_with_fallback_in_batches(no_candidates, users, n, ranking, self.user_popularity[ranking], *masks,
                                              batch_size=batch_size)

    # -- persistence ------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        write_meta(folder, **{**self.meta, "name": self.name})
        if self.popularity is not None:
            np.save(folder / "popularity.npy", self.popularity)
        if self.user_popularity is not None:
            np.save(folder / "user_popularity.npy", self.user_popularity)
            np.save(folder / "user_ids.npy", self.user_ids.astype(str))  # unicode arrays: no pickle
            np.save(folder / "item_ids.npy", self.item_ids.astype(str))

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "PopularModel":
        def array(name: str) -> np.ndarray | None:
            return np.load(folder / name, allow_pickle=False) if (folder / name).exists() else None

        model = cls.__new__(cls)
        model.popularity, model.user_popularity = array("popularity.npy"), array("user_popularity.npy")
        ids = array("user_ids.npy"), array("item_ids.npy")
        model.user_ids, model.item_ids = (None, None) if ids[0] is None else (ids[0].astype(object), ids[1].astype(object))
        model.meta = read_meta(folder)
        model.serves = frozenset(model.meta.get("serves", [ITEM_TO_ITEM]))  # folders saved before the user side: items only
        return model
