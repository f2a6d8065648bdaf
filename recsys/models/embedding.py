"""Item vectors -> item-to-item scores by cosine similarity, shared by every embedding model.

Scoring rule: ``score(a, b) = cos(v_a, v_b)``; an item without a vector scores the fallback 0.0
(what two unrelated vectors score) and gets no neighbours. Top-N search multiplies one block of
items at a time against all vectors, so memory is O(block x items), never items x items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.models.base import FALLBACK_SCORE, ItemModel, TrainingInputs, read_meta, top_n_rows, write_meta

BLOCK_CELLS = 1 << 22  # ~16 MB of float32 scores per block


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


class EmbeddingModel(ItemModel):
    def __init__(self, name: str, vectors: np.ndarray, has_vector: np.ndarray, meta: dict | None = None,
                 normalized: bool = False):
        self.name = name
        self.has_vector = has_vector.astype(bool)  # (n_nodes,)
        self.unit = vectors.astype(np.float32) if normalized else _unit_rows(vectors)  # (n_nodes, d)
        self.meta = meta or {}

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        known = (a >= 0) & (b >= 0)
        known[known] = self.has_vector[a[known]] & self.has_vector[b[known]]
        scores = np.full(len(a), FALLBACK_SCORE, dtype=np.float32)
        scores[known] = np.einsum("ij,ij->i", self.unit[a[known]], self.unit[b[known]])
        return scores

    def similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        n_items = len(self.unit)
        block = max(1, BLOCK_CELLS // max(n_items, 1))
        out_idx = np.full((len(nodes), n), -1, dtype=np.int64)
        out_val = np.zeros((len(nodes), n), dtype=np.float32)
        for lo in range(0, len(nodes), block):
            chunk = nodes[lo:lo + block]
            scores = self.unit[chunk] @ self.unit.T  # (block, n_items)
            scores[:, ~self.has_vector] = -np.inf
            scores[np.arange(len(chunk)), chunk] = -np.inf
            idx, val = top_n_rows(scores, n)
            no_vector = ~self.has_vector[chunk]
            idx[no_vector], val[no_vector] = -1, 0.0
            out_idx[lo:lo + block], out_val[lo:lo + block] = idx, val
        return out_idx, out_val

    def save(self, folder: Path) -> None:
        write_meta(folder, name=self.name, **self.meta)
        np.save(folder / "vectors.npy", self.unit)
        np.save(folder / "has_vector.npy", self.has_vector)

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "EmbeddingModel":
        meta = read_meta(folder)
        name = meta.pop("name")
        return cls(name, np.load(folder / "vectors.npy", allow_pickle=False),
                   np.load(folder / "has_vector.npy", allow_pickle=False), meta, normalized=True)
