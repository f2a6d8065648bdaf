"""Skip-gram with side information: an item's vector combines embeddings of its id and of its
category, brand and price bucket; two ways of combining them, both registered.

``side_info_avg`` averages the parts with equal weights (BGE with side information, "SI" in Wang et
al. 2018, "Billion-scale Commodity Embedding for E-commerce Recommendation in Alibaba", section
2.3); ``eges`` learns per-item weights over the parts, a softmax of one learned logit per item and
part (EGES, same paper, equation 6). Training is skip-gram with negative sampling on the walks
(``recsys.models.negative_sampling``): the centre vector is the weighted sum of the item's part
embeddings, the context vector is per item. The closed-form step spreads the centre's gradient over
the parts by their weights and, for EGES, moves each logit by ``a_k (w_k - h) . dh``.

Cold start: a catalogue item that never appears in the walks but has side information gets the
equal-weight average of its side parts that training has touched (its id embedding was never trained),
as in section 2.4 of the paper. Cold items get neighbours but are never recommended themselves.

Without any side information (no item has a category, brand or price: the log carries none and no
items file was given) both models reduce to skip-gram on item ids. They still train, so a listed
model always has a row in the metrics, but they warn: in the log and in ``meta["warnings"]``, which
the train stage hands on to the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from recsys.catalog import Catalog
from recsys.models.base import TrainingInputs
from recsys.models.curves import ValidationCurve, curve_json
from recsys.models.embedding import EmbeddingModel, unit_rows
from recsys.models.negative_sampling import (Trainable, UnigramNegatives, WalkPairs, negative_sampling_step,
                                             schedule_of, torch_threads, train_pairs)
from recsys.models.params import SideInfoParams

BLOCK = 65536
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemParts:
    """Rows of one shared part table for each catalogue item: ``rows[i, p]`` (-1 where item i lacks part p)."""

    rows: np.ndarray  # (n_items, n_parts) int64
    names: tuple[str, ...]  # part names, "id" first
    n_rows: int

    @property
    def mask(self) -> np.ndarray:
        return self.rows >= 0


def price_buckets(price: np.ndarray, buckets: int) -> np.ndarray:
    """Quantile bucket of each price (-1 where unknown)."""
    known = ~np.isnan(price)
    out = np.full(len(price), -1, dtype=np.int64)
    if known.any():
        edges = np.unique(np.quantile(price[known], np.linspace(0, 1, buckets + 1)[1:-1]))
        out[known] = np.searchsorted(edges, price[known], side="right")
    return out


def _codes(values: np.ndarray) -> np.ndarray:
    """Dense codes of non-null values in sorted order of the values; -1 for null."""
    present = np.array([v is not None for v in values], dtype=bool)
    out = np.full(len(values), -1, dtype=np.int64)
    if present.any():
        _, out[present] = np.unique(values[present].astype(str), return_inverse=True)
    return out


def item_parts(catalog: Catalog, buckets: int) -> ItemParts:
    """The id part (graph nodes only) and each side field the catalogue has for some item."""
    ids = np.where(np.arange(catalog.n_items) < catalog.n_nodes, np.arange(catalog.n_items), -1)
    columns, names, offset = [ids], ["id"], catalog.n_nodes
    for name, codes in (("category", _codes(catalog.category)), ("brand", _codes(catalog.brand)),
                        ("price", price_buckets(catalog.price, buckets))):
        if (codes >= 0).any():
            columns.append(np.where(codes >= 0, codes + offset, -1))
            names.append(name)
            offset += int(codes.max()) + 1
    return ItemParts(np.stack(columns, axis=1), tuple(names), offset)


class SideInfoTrainer(Trainable):
    def __init__(self, parts: ItemParts, n_nodes: int, dim: int, learned_weights: bool, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.rows = torch.from_numpy(parts.rows)
        self.mask = self.rows >= 0
        self.parts = (torch.rand(parts.n_rows, dim, generator=generator) - 0.5) / dim
        self.context = torch.zeros(n_nodes, dim)
        self.logits = torch.zeros(n_nodes, parts.rows.shape[1]) if learned_weights else None

    def weights(self, items: torch.Tensor) -> torch.Tensor:
        """Softmax of the learned logits over an item's parts (EGES), else equal weights; items
        without logits (cold items) always get equal weights."""
        mask = self.mask[items]
        equal = mask / mask.sum(1, keepdim=True).clamp(min=1)
        if self.logits is None:
            return equal
        learned = items < len(self.logits)
        if not learned.all():
            out = equal.clone()
            out[learned] = self.weights(items[learned])
            return out
        return torch.softmax(self.logits[items].masked_fill(~mask, float("-inf")), dim=1)

    def _combine(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Part rows (B, P), their mask, weights (B, P), part embeddings (B, P, d) and the item vectors (B, d)."""
        rows = self.rows[items]
        mask = rows >= 0
        a = self.weights(items)
        w = self.parts[rows.clamp(min=0)]
        return rows, mask, a, w, (a[..., None] * w).sum(1)

    def step(self, centres: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor, lr: float) -> float:
        rows, mask, a, w, h = self._combine(centres)
        dh, _, loss = negative_sampling_step(h, contexts, negatives, self.context, lr)
        if self.logits is not None:
            d_logits = a * ((w - h[:, None, :]) * dh[:, None, :]).sum(2)
            self.logits.index_add_(0, centres, d_logits.masked_fill(~mask, 0.0))
        self.parts.index_add_(0, rows[mask], (a[..., None] * dh[:, None, :])[mask])
        return loss

    def node_vectors(self, nodes: np.ndarray) -> np.ndarray:
        return self._combine(torch.from_numpy(nodes))[4].numpy()

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        unique, inverse = np.unique(np.r_[a, b], return_inverse=True)
        unit = unit_rows(self.node_vectors(unique))
        return np.einsum("ij,ij->i", unit[inverse[:len(a)]], unit[inverse[len(a):]])


def catalog_vectors(trainer: SideInfoTrainer, parts: ItemParts, walked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of every catalogue item: walked nodes from all their parts, the rest (cold items and
    nodes without walks) from the side parts training touched, with equal weights."""
    n_items = len(parts.rows)
    trained_rows = np.zeros(parts.n_rows, dtype=bool)
    walked_rows = parts.rows[walked]
    trained_rows[walked_rows[walked_rows >= 0]] = True
    side = np.where(parts.rows[:, 1:] >= 0, parts.rows[:, 1:], 0)
    side_ok = (parts.rows[:, 1:] >= 0) & trained_rows[side]
    vectors = np.zeros((n_items, trainer.parts.shape[1]), dtype=np.float32)
    table = trainer.parts.numpy()
    for lo in range(0, len(walked), BLOCK):
        vectors[walked[lo:lo + BLOCK]] = trainer.node_vectors(walked[lo:lo + BLOCK])
    has_vector = np.zeros(n_items, dtype=bool)
    has_vector[walked] = True
    cold = np.flatnonzero(~has_vector & side_ok.any(1))
    for lo in range(0, len(cold), BLOCK):
        items = cold[lo:lo + BLOCK]
        ok = side_ok[items]
        summed = (table[side[items]] * ok[..., None]).sum(1)
        vectors[items] = summed / ok.sum(1, keepdims=True)
    has_vector[cold] = True
    return vectors, has_vector


def missing_side_information(name: str, parts: ItemParts) -> list[str]:
    """The warning a side-information model gives when the catalogue has no side field at all."""
    if parts.names != ("id",):
        return []
    return [f"{name}: no item has side information (category, brand or price), so it trains on item ids "
            f"only, as skipgram does; map the log's side columns (ingest.mapping category/brand/price) or "
            f"give an items file (ingest.items_input), or leave {name} out of train.models"]


def fit_side_info(inputs: TrainingInputs, params: SideInfoParams, learned_weights: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    catalog = inputs.catalog
    parts = item_parts(catalog, params.price_buckets)
    warnings = missing_side_information("eges" if learned_weights else "side_info_avg", parts)
    for warning in warnings:
        log.warning("%s", warning)
    source = WalkPairs(inputs.flat_walks, catalog.n_nodes, params.window, params.sample)
    walked = np.flatnonzero(source.counts > 0)
    trainer = SideInfoTrainer(parts, catalog.n_nodes, params.vector_size, learned_weights, inputs.seed)
    trainer.trained = source.counts > 0
    with torch_threads(inputs.threads):
        records = train_pairs(trainer, source, UnigramNegatives(source.counts), schedule_of(params, len(walked)),
                              inputs.seed, ValidationCurve.of(inputs.validation), params.patience, inputs.progress)
    vectors, has_vector = catalog_vectors(trainer, parts, walked)
    recommendable = np.zeros(len(has_vector), dtype=bool)
    recommendable[walked] = True
    meta = {"params": params.model_dump(), "threads": inputs.threads, "curve": curve_json(records),
            "parts": list(parts.names), "cold_items_with_vector": int(has_vector[catalog.n_nodes:].sum()),
            "warnings": warnings}
    if learned_weights:
        mean = trainer.weights(torch.from_numpy(walked)).mean(0).numpy() if len(walked) else np.zeros(len(parts.names))
        meta["mean_part_weights"] = {name: round(float(w), 4) for name, w in zip(parts.names, mean)}
    return vectors, has_vector, recommendable, meta


class SideInfoAvgModel(EmbeddingModel):
    @classmethod
    def fit(cls, inputs: TrainingInputs, params: SideInfoParams) -> "SideInfoAvgModel":
        vectors, has_vector, recommendable, meta = fit_side_info(inputs, params, learned_weights=False)
        return cls("side_info_avg", vectors, has_vector, meta, recommendable=recommendable)


class EGESModel(EmbeddingModel):
    @classmethod
    def fit(cls, inputs: TrainingInputs, params: SideInfoParams) -> "EGESModel":
        vectors, has_vector, recommendable, meta = fit_side_info(inputs, params, learned_weights=True)
        return cls("eges", vectors, has_vector, meta, recommendable=recommendable)
