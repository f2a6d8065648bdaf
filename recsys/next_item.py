"""Next-item evaluation: every model that can answer, scored on the same predictions of the test days' sessions.

The protocol of the session-based recommendation literature (Hidasi et al. 2016, "Session-based
Recommendations with Recurrent Neural Networks", section 4; Ludewig & Jannach 2018, "Evaluation of
session-based recommendation algorithms"): the test sessions' items unseen in training are dropped,
then the sessions left shorter than two items; for every position after the first, a model ranks all
items given the session so far, and the item that actually came next is looked up in its top K.
Recall@K is the share of predictions whose next item is in the top K; MRR@K the mean of 1/rank,
0 beyond K. A sequence model answers from the whole prefix (``SequenceModel.position_scores``); an
item-to-item model answers from the prefix's last item with its neighbour list (``ItemModel.similar``,
what a site does with the published table), so popularity is the floor and item-kNN the same lookup
as the table.

Each figure comes with a 95% percentile bootstrap interval over test sessions (predictions of one
session are not independent; Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13) and
the bootstrap standard error, which the publication gate reads as it reads the AUC's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from recsys.lake import write_parquet_atomic
from recsys.models.base import ITEM_TO_ITEM, NEXT_ITEM, ItemModel, SequenceModel, TrainingInputs, top_n_rows
from recsys.sequences import Sequences
from recsys.train import TrainResult, load_model

log = logging.getLogger(__name__)

SCORE_CELLS = 1 << 24  # predictions x items scored at once


def prediction_sessions(sequences: Sequences) -> np.ndarray:
    """For each prediction of ``Sequences.positions``, the index of its sequence."""
    owner = np.repeat(np.arange(len(sequences)), sequences.lengths)
    return owner[sequences.positions()[1]]


def next_item_top_k(model: ItemModel, sequences: Sequences, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(top, targets, session)`` of every prediction (each position after the first of each sequence):
    the model's ``k`` best catalogue indices (-1 padded), the item that came next, and the sequence's index."""
    prefix_end, target_at = sequences.positions()
    targets, session = sequences.items[target_at], prediction_sessions(sequences)
    if isinstance(model, SequenceModel):
        top = _sequence_top_k(model, sequences, k)
    else:
        top = _item_top_k(model, sequences.items[prefix_end], k)
    return top, targets, session


def _item_top_k(model: ItemModel, last_items: np.ndarray, k: int) -> np.ndarray:
    unique, inverse = np.unique(last_items, return_inverse=True)
    neighbours, _ = model.similar(unique, k)
    return neighbours[inverse]


def _sequence_top_k(model: SequenceModel, sequences: Sequences, k: int) -> np.ndarray:
    """Scores of every position but each sequence's last (nothing follows it), in blocks of whole sequences."""
    rows_per_block = max(1, SCORE_CELLS // max(model.n_items, 1))
    ends = np.cumsum(sequences.lengths)  # positions up to and including each sequence
    tops = []
    first = 0
    while first < len(sequences):
        done = ends[first - 1] if first else 0
        last = max(first + 1, int(np.searchsorted(ends, done + rows_per_block, side="right")))
        block = sequences.take(np.arange(first, last))
        scores = model.position_scores(block.items, block.offsets, block.users)
        not_last = np.ones(len(block.items), bool)
        not_last[block.offsets[1:] - 1] = False
        tops.append(top_n_rows(np.asarray(scores[not_last], dtype=np.float32), k)[0])
        first = last
    return np.concatenate(tops) if tops else np.zeros((0, k), np.int64)


def target_ranks(top: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each target in its row of ``top``, 0 where it is not there."""
    hits = top == targets[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)


def next_item_metrics(top: np.ndarray, targets: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """``next_recall@K`` and ``next_mrr@K`` for each K (at most ``top``'s width), and the number of predictions."""
    ranks = target_ranks(top, targets)
    out: dict[str, float] = {"predictions": int(len(targets))}
    for k in ks:
        hit = (ranks > 0) & (ranks <= k)
        out[f"next_recall@{k}"] = float(hit.mean()) if len(ranks) else float("nan")
        out[f"next_mrr@{k}"] = float(np.where(hit, 1.0 / np.maximum(ranks, 1), 0.0).mean()) if len(ranks) else float("nan")
    return out


def bootstrap_intervals(ranks: np.ndarray, session: np.ndarray, n_sessions: int, ks: tuple[int, ...], resamples: int,
                        seed: int) -> dict[str, float]:
    """``<metric>_lo`` / ``_hi`` (2.5 and 97.5 percentiles) and ``<metric>_se`` of each next-item metric
    over ``resamples`` bootstrap samples of whole test sessions."""
    if not len(ranks) or resamples < 2:
        return {}
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_sessions, np.full(n_sessions, 1.0 / n_sessions), size=resamples).astype(np.float64)
    predictions = weights @ np.bincount(session, minlength=n_sessions)
    out: dict[str, float] = {}
    for k in ks:
        hit = (ranks > 0) & (ranks <= k)
        for name, values in ((f"next_recall@{k}", hit.astype(float)), (f"next_mrr@{k}", np.where(hit, 1.0 / np.maximum(ranks, 1), 0.0))):
            per_session = np.bincount(session, weights=values, minlength=n_sessions)
            samples = (weights @ per_session) / np.maximum(predictions, 1)
            out[f"{name}_lo"], out[f"{name}_hi"] = (float(v) for v in np.percentile(samples, [2.5, 97.5]))
            out[f"{name}_se"] = float(samples.std(ddof=1))
    return out


def score_next_items(model: ItemModel, sequences: Sequences, ks: tuple[int, ...], resamples: int, seed: int) -> dict:
    """One model's next-item metrics row (without context): the figures, their intervals, the counts."""
    top, targets, session = next_item_top_k(model, sequences, max(ks))
    row = {"model": model.name, "sessions": len(sequences), **next_item_metrics(top, targets, ks)}
    row.update(bootstrap_intervals(target_ranks(top, targets), session, len(sequences), ks, resamples, seed))
    return row


def evaluate_next_item(trained: TrainResult, inputs: TrainingInputs, sequences: Sequences, ks: tuple[int, ...],
                       resamples: int, seed: int, context: dict, metrics_path: Path) -> tuple[dict, ...]:
    """Every trained model that can answer (item-to-item and sequence models) on the same predictions of
    ``sequences``; writes ``next_item_metrics.parquet`` (when any model was scored) and returns its rows."""
    rows = []
    for trained_model in (m for m in trained.models if {ITEM_TO_ITEM, NEXT_ITEM} & set(m.serves)):
        model = load_model(trained_model.name, Path(trained_model.path), inputs)
        row = score_next_items(model, sequences, ks, resamples, seed)
        rows.append({**row, "train_seconds": trained_model.seconds, **context})
        log.info("evaluate next item: %s %s over %d predictions", model.name,
                 {k: round(v, 4) for k, v in row.items() if k.startswith("next_") and "@" in k and k[-3:] == "@20"},
                 row["predictions"])
    if rows:
        write_parquet_atomic(pa.Table.from_pylist(rows), metrics_path)
    return tuple(rows)


def headline_columns(row: dict, n: int) -> dict[str, float]:
    """The next-item figures an item-to-item metrics row carries, at N = ``publish.top_n``: ``next_recall``,
    ``next_mrr``, their standard errors and intervals, and ``predictions`` (the holdout size they stand on)."""
    out: dict[str, float] = {"predictions": int(row.get("predictions", 0))}
    for metric in ("next_recall", "next_mrr"):
        for suffix in ("", "_se", "_lo", "_hi"):
            out[f"{metric}{suffix}"] = float(row.get(f"{metric}@{n}{suffix}", float("nan")))
    return out
