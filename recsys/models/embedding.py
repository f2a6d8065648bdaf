"""Item vectors -> item-to-item scores, shared by every embedding model.

Two scoring rules. ``cosine``: ``score(a, b) = cos(v_a, v_b)`` (word2vec and the skip-gram models).
``dot``: ``score(a, b) = left_a . right_b`` with ``left``/``right`` built so that the score is the
symmetric logit of matrix factorisation with biases (``recsys.models.mf``). An item without a vector
gets no neighbours and scores the model's fallback: 0.0 for cosine (what two unrelated vectors
score), the mean logit of random pairs for dot scoring (a logit has no natural zero). Only items in
``recommendable`` are ever recommended (a side-information model gives cold items a vector, so they
get neighbours, but never recommends an item nobody interacted with). Exact top-N search multiplies
one block of items at a time against the recommendable vectors, so memory is O(block x items), never
items x items; above ``publish.ann_min_items`` recommendable items the publish stage switches
``similar`` to an approximate search (``approximate_search``, ``recsys.ann``), and ``exact_similar``
stays the exhaustive one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.ann import VectorSearch
from recsys.models.base import FALLBACK_SCORE, ItemModel, TrainingInputs, known_pairs, read_meta, top_n_rows, write_meta

BLOCK_CELLS = 1 << 22  # ~16 MB of float32 scores per block


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


class EmbeddingModel(ItemModel):
    def __init__(self, name: str, vectors: np.ndarray, has_vector: np.ndarray, meta: dict | None = None,
                 normalized: bool = False, right: np.ndarray | None = None, recommendable: np.ndarray | None = None,
                 fallback: float = FALLBACK_SCORE):
        """``right`` given: dot scoring of ``vectors`` (left) with ``right``; else cosine of ``vectors``."""
        self.name = name
        self.fallback = float(fallback)
        self.has_vector = has_vector.astype(bool)  # (n_items,)
        self.left = vectors.astype(np.float32) if (normalized or right is not None) else unit_rows(vectors)
        self.right = self.left if right is None else right.astype(np.float32)
        self.recommendable = self.has_vector if recommendable is None else recommendable.astype(bool) & self.has_vector
        self.meta = meta or {}
        self._search = None  # (candidates, recsys.ann.VectorSearch) once approximate_search chose an index

    @property
    def scoring(self) -> str:
        return "cosine" if self.right is self.left else "dot"

    def known_items(self) -> np.ndarray:
        return np.flatnonzero(self.has_vector)

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        known = known_pairs(a, b, len(self.has_vector))
        known[known] = self.has_vector[a[known]] & self.has_vector[b[known]]
        scores = np.full(len(a), self.fallback, dtype=np.float32)
        scores[known] = np.einsum("ij,ij->i", self.left[a[known]], self.right[b[known]])
        return scores

    def approximate_search(self, min_items: int, threads: int = 1) -> VectorSearch | None:
        """From now on ``similar`` searches an HNSW index (``recsys.ann``) when at least ``min_items`` > 0
        items are recommendable; returns the index, or None (``similar`` stays exact)."""
        candidates = np.flatnonzero(self.recommendable)
        if min_items <= 0 or len(candidates) < min_items:
            self._search = None
            return None
        self._search = (candidates, VectorSearch(self.right[candidates], threads=threads))
        return self._search[1]

    def similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self._search is None:
            return self.exact_similar(nodes, n)
        candidates, search = self._search
        nodes = np.asarray(nodes, dtype=np.int64)
        out_idx, out_val = np.full((len(nodes), n), -1, dtype=np.int64), np.zeros((len(nodes), n), dtype=np.float32)
        asked = np.flatnonzero((nodes >= 0) & (nodes < len(self.has_vector)))
        asked = asked[self.has_vector[nodes[asked]]]
        if not len(asked):
            return out_idx, out_val
        chunk = nodes[asked]
        own = np.searchsorted(candidates, chunk)
        own = np.where((own < len(candidates)) & (candidates[np.minimum(own, len(candidates) - 1)] == chunk), own, -1)
        rows, scores = search.top_n(self.left[chunk], n, extra=(own >= 0).astype(np.int64),
                                    drop=lambda query, found: found == own[query])
        out_idx[asked] = np.where(rows >= 0, candidates[np.maximum(rows, 0)], -1)
        out_val[asked] = scores
        return out_idx, out_val

    def exact_similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        candidates = np.flatnonzero(self.recommendable)
        right = self.right[candidates]
        block = max(1, BLOCK_CELLS // max(len(candidates), 1))
        out_idx = np.full((len(nodes), n), -1, dtype=np.int64)
        out_val = np.zeros((len(nodes), n), dtype=np.float32)
        in_range = (nodes >= 0) & (nodes < len(self.has_vector))
        asked = np.flatnonzero(in_range)
        asked = asked[self.has_vector[nodes[asked]]] if len(candidates) else asked[:0]
        for lo in range(0, len(asked), block):
            rows = asked[lo:lo + block]
            chunk = nodes[rows]
            scores = self.left[chunk] @ right.T  # (block, candidates)
            own = np.searchsorted(candidates, chunk)
            is_candidate = (own < len(candidates)) & (candidates[np.minimum(own, len(candidates) - 1)] == chunk)
            scores[np.flatnonzero(is_candidate), own[is_candidate]] = -np.inf
            idx, val = top_n_rows(scores, n)
            out_idx[rows] = np.where(idx >= 0, candidates[np.maximum(idx, 0)], -1)
            out_val[rows] = val
        return out_idx, out_val

    def save(self, folder: Path) -> None:
        write_meta(folder, **{**self.meta, "name": self.name, "scoring": self.scoring, "fallback": self.fallback})
        np.save(folder / "vectors.npy", self.left)
        if self.scoring == "dot":
            np.save(folder / "right.npy", self.right)
        np.save(folder / "has_vector.npy", self.has_vector)
        np.save(folder / "recommendable.npy", self.recommendable)

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "EmbeddingModel":
        meta = read_meta(folder)
        name, scoring, fallback = meta.pop("name"), meta.pop("scoring", "cosine"), meta.pop("fallback", FALLBACK_SCORE)
        right = np.load(folder / "right.npy", allow_pickle=False) if scoring == "dot" else None
        recommendable = folder / "recommendable.npy"
        return cls(name, np.load(folder / "vectors.npy", allow_pickle=False),
                   np.load(folder / "has_vector.npy", allow_pickle=False), meta, normalized=True, right=right,
                   recommendable=np.load(recommendable, allow_pickle=False) if recommendable.exists() else None,
                   fallback=fallback)
