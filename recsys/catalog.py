"""The run's item catalogue: every item a model may know, in one index space.

Indices ``0 .. n_nodes - 1`` are the training graph's nodes, in node order; after them come the
*cold* items: items in the lake's ``items/`` table that have some side information (category, brand
or price) but no event in the training graph (validation sessions are not in it), sorted by id. Models trained on interactions only
know the nodes; side-information models also give cold items a vector from their side information
alone (the cold-start case of Wang et al. 2018, "Billion-scale Commodity Embedding for E-commerce
Recommendation in Alibaba", section 2.4). Evaluation and publishing read item indices from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.transition import TransitionTable

CATALOG_FILE = "catalog.parquet"
SIDE_FIELDS = ("category", "brand", "price")


@dataclass(frozen=True)
class Catalog:
    item_ids: np.ndarray  # (n_items,) object
    n_nodes: int
    category: np.ndarray  # (n_items,) object, None where unknown
    brand: np.ndarray  # (n_items,) object, None where unknown
    price: np.ndarray  # (n_items,) float64, NaN where unknown

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_cold(self) -> int:
        return self.n_items - self.n_nodes

    @cached_property
    def _index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids.tolist())}

    def indices_of(self, items: list[str]) -> np.ndarray:
        """Catalogue index of each item id, -1 for items the catalogue does not hold."""
        index = self._index
        return np.array([index.get(item, -1) for item in items], dtype=np.int64)

    def to_arrow(self) -> pa.Table:
        return pa.table({
            "item_id": pa.array(self.item_ids.tolist(), pa.string()),
            "is_node": pa.array(np.arange(self.n_items) < self.n_nodes),
            "category": pa.array(self.category.tolist(), pa.string()),
            "brand": pa.array(self.brand.tolist(), pa.string()),
            "price": pa.array(self.price, pa.float64()),
        })

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.to_arrow(), folder / CATALOG_FILE)
        return folder / CATALOG_FILE

    @classmethod
    def load(cls, folder: Path) -> "Catalog":
        table = pq.read_table(folder / CATALOG_FILE)
        return cls(np.asarray(table.column("item_id").to_pylist(), dtype=object),
                   int(pc.sum(table.column("is_node")).as_py() or 0),
                   np.asarray(table.column("category").to_pylist(), dtype=object),
                   np.asarray(table.column("brand").to_pylist(), dtype=object),
                   table.column("price").to_numpy(zero_copy_only=False).astype(np.float64))


def build_catalog(table: TransitionTable, items: pa.Table | None) -> Catalog:
    """Graph nodes first (with whatever side information ``items`` has for them), then cold items."""
    nodes = table.item_ids
    side = _side_by_id(items)
    cold = sorted(set(side) - set(nodes.tolist()))
    ids = np.asarray(nodes.tolist() + cold, dtype=object)
    rows = [side.get(item, (None, None, None)) for item in ids.tolist()]
    return Catalog(ids, len(nodes),
                   np.asarray([r[0] for r in rows], dtype=object),
                   np.asarray([r[1] for r in rows], dtype=object),
                   np.asarray([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64))


def _side_by_id(items: pa.Table | None) -> dict[str, tuple]:
    """item id -> (category, brand, price) for items with at least one side field."""
    if items is None or items.num_rows == 0:
        return {}
    columns = [items.column(f).to_pylist() if f in items.column_names else [None] * items.num_rows for f in SIDE_FIELDS]
    price = [None if p is None or (isinstance(p, float) and np.isnan(p)) else p for p in columns[2]]
    return {item: (c, b, p) for item, c, b, p in zip(items.column("item_id").to_pylist(), columns[0], columns[1], price)
            if item is not None and (c is not None or b is not None or p is not None)}
