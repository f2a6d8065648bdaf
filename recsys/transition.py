"""The transition table the walks read: ``table[item] -> {neighbour: probability}`` over CSR arrays.

Rows are the graph's out-edges normalised to sum to one (DESIGN.md, "graph"). The arrays are the
storage, the mapping is the interface: a lookup slices one row, O(degree), and memory is O(edges).
Per-row alias tables (Walker 1977; Vose 1991) make each walk step O(1). ``to_networkx()`` exists for
inspection and tests only; walks never go through networkx.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.walk_kernel import build_alias

ARRAYS_FILE = "transition.npz"
VOCAB_FILE = "vocab.parquet"
ITEM_STATS_FILE = "item_stats.parquet"  # written beside the table by the graph stage


def load_item_stats(graph_dir: Path) -> pa.Table:
    """Per training item: events, users, purchases, in node order."""
    return pq.read_table(graph_dir / ITEM_STATS_FILE)


@dataclass(frozen=True, eq=False)
class TransitionTable(Mapping[str, dict[str, float]]):
    """Row-stochastic item graph. ``item_ids[i]`` is the item of node ``i``."""

    item_ids: np.ndarray  # (n,) object: item id strings, sorted
    indptr: np.ndarray  # (n+1,) int64
    indices: np.ndarray  # (E,) int32, neighbours of each row, ascending
    weights: np.ndarray  # (E,) float32, summed co-occurrence weights
    probs: np.ndarray  # (E,) float32, weights / row sum
    alias_prob: np.ndarray  # (E,) float32
    alias_idx: np.ndarray  # (E,) int32
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self._index:
            self._index.update({item: i for i, item in enumerate(self.item_ids.tolist())})

    @classmethod
    def from_edges(cls, item_ids: np.ndarray, src: np.ndarray, dst: np.ndarray, weight: np.ndarray) -> "TransitionTable":
        """Build from an edge list over node indices (each directed edge once)."""
        n = len(item_ids)
        order = np.lexsort((dst, src))
        src, dst, weight = src[order], dst[order].astype(np.int32), weight[order].astype(np.float32)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
        row_sums = np.bincount(src, weights=weight.astype(np.float64), minlength=n)
        degree = np.diff(indptr)
        row_sums = np.where(degree > 0, row_sums, 1.0)
        probs = (weight / np.repeat(row_sums, degree)).astype(np.float32)
        alias_prob, alias_idx = build_alias(indptr, weight)
        return cls(np.asarray(item_ids, dtype=object), indptr, dst, weight, probs, alias_prob, alias_idx)

    # --- Mapping interface -------------------------------------------------------------------
    def __getitem__(self, item: str) -> dict[str, float]:
        node = self._index[item]
        lo, hi = self.indptr[node], self.indptr[node + 1]
        return {self.item_ids[j]: float(p) for j, p in zip(self.indices[lo:hi], self.probs[lo:hi])}

    def __iter__(self) -> Iterator[str]:
        return iter(self.item_ids.tolist())

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    # --- arrays -------------------------------------------------------------------------------
    def index_of(self, item: str) -> int:
        return self._index[item]

    def indices_of(self, items: list[str], missing: int = -1) -> np.ndarray:
        return np.array([self._index.get(item, missing) for item in items], dtype=np.int64)

    @property
    def n_nodes(self) -> int:
        return len(self.item_ids)

    @property
    def n_edges(self) -> int:
        return len(self.indices)

    def row_sums(self) -> np.ndarray:
        """Summed edge weight of each row (0 for a node without neighbours)."""
        return np.bincount(np.repeat(np.arange(self.n_nodes), self.out_degree()), weights=self.weights.astype(np.float64),
                           minlength=self.n_nodes)

    def out_degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def nbytes(self) -> int:
        arrays = (self.indptr, self.indices, self.weights, self.probs, self.alias_prob, self.alias_idx)
        return sum(a.nbytes for a in arrays)

    def to_networkx(self):
        """A ``networkx.DiGraph`` with the weights and probabilities as edge attributes (tests only)."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(self.item_ids.tolist())
        for node, item in enumerate(self.item_ids.tolist()):
            lo, hi = self.indptr[node], self.indptr[node + 1]
            for j, w, p in zip(self.indices[lo:hi], self.weights[lo:hi], self.probs[lo:hi]):
                graph.add_edge(item, self.item_ids[j], weight=float(w), probability=float(p))
        return graph

    # --- persistence (no pickle) ------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / ARRAYS_FILE, indptr=self.indptr, indices=self.indices, weights=self.weights,
                 probs=self.probs, alias_prob=self.alias_prob, alias_idx=self.alias_idx)
        pq.write_table(pa.table({"index": np.arange(self.n_nodes, dtype=np.int32),
                                 "item_id": pa.array(self.item_ids.tolist(), pa.string())}), folder / VOCAB_FILE)
        return folder

    @classmethod
    def load(cls, folder: Path) -> "TransitionTable":
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as arrays:
            parts = {name: arrays[name] for name in arrays.files}
        vocab = pq.read_table(folder / VOCAB_FILE).sort_by("index")
        return cls(np.asarray(vocab.column("item_id").to_pylist(), dtype=object), **parts)
