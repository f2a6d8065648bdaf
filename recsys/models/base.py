"""The interface every model implements, and what training gets to read.

A model is fitted from ``TrainingInputs`` and answers two questions in the graph's node index space:
how related two items are (``pair_scores``, used by evaluation) and which items are most related to
each item (``similar``, used by evaluation and publishing). An item the model knows nothing about has
index -1 or no vector; it scores the documented fallback ``0.0`` and has no neighbours.
Models persist as plain arrays and JSON (never pickle).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa

from recsys.catalog import CATALOG_FILE, Catalog, build_catalog
from recsys.transition import TransitionTable, load_item_stats

FALLBACK_SCORE = 0.0


@dataclass(frozen=True)
class TrainingInputs:
    graph_dir: Path
    walks_dir: Path
    work_dir: Path  # scratch space of this run (e.g. a text corpus for gensim)
    seed: int
    threads: int
    validation_dir: Path | None = None  # validation pairs for learning curves (``recsys.holdout``), if any

    @cached_property
    def table(self) -> TransitionTable:
        return TransitionTable.load(self.graph_dir)

    @cached_property
    def item_stats(self) -> pa.Table:
        return load_item_stats(self.graph_dir)

    @cached_property
    def catalog(self) -> Catalog:
        """Graph nodes, then cold items with side information (``recsys.catalog``)."""
        if (self.graph_dir / CATALOG_FILE).exists():
            return Catalog.load(self.graph_dir)
        return build_catalog(self.table, None)


class ItemModel(ABC):
    name: str

    @abstractmethod
    def known_items(self) -> np.ndarray:
        """Catalogue indices this model can recommend for (the anchors of its published rows)."""

    @abstractmethod
    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Relatedness of node pairs ``(a[i], b[i])``; -1 marks an unseen item -> FALLBACK_SCORE."""

    @abstractmethod
    def similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` related nodes for each of ``nodes`` (never the node itself), best first.

        Returns ``(neighbours, scores)`` of shape ``(len(nodes), n)``; -1 pads rows with fewer.
        """

    @abstractmethod
    def save(self, folder: Path) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "ItemModel": ...


def known_pairs(a: np.ndarray, b: np.ndarray, n_known: int) -> np.ndarray:
    """Pairs whose two indices are both among the first ``n_known`` (the items a model knows)."""
    return (a >= 0) & (b >= 0) & (a < n_known) & (b < n_known)


def top_n_rows(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``n`` largest finite entries per row, best first, ties by index.

    ``scores`` is one dense block of rows (a chunk of items x all items), never the whole matrix.
    """
    rows, cols = scores.shape
    k = min(n, cols)
    if k == 0:
        return np.full((rows, n), -1, np.int64), np.zeros((rows, n), np.float32)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < cols else np.tile(np.arange(cols), (rows, 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx, vals = np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
    idx = np.where(np.isfinite(vals), idx, -1)
    vals = np.where(np.isfinite(vals), vals, 0.0).astype(np.float32)
    if k < n:
        idx = np.pad(idx, ((0, 0), (0, n - k)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, n - k)))
    return idx, vals


def write_meta(folder: Path, **meta) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(folder: Path) -> dict:
    return json.loads((folder / "model.json").read_text())
