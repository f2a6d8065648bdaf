"""The evaluation holdout: co-occurring item pairs of the test days, and as many sampled non-pairs.

Runs on Spark (it reads the test days' events). Positives are the distinct unordered pairs that form
graph edges in test-day sessions (same window rule as the graph stage), at most ``max_pairs`` of them
(chosen by a seeded hash). Each positive ``(a, b)`` gets one negative ``(a, c)`` with ``c`` drawn
uniformly from the items of the test days, never an item that co-occurs with ``a`` there. Drawing
``c`` from the same days as ``b`` gives negatives the same chance as positives of holding an item
unseen in training; drawing it from the whole window would make unseen items (which every model
scores with its fallback) mark positives, and bias AUC. Pairs carry catalogue indices
(``recsys.catalog``: graph nodes first, then cold items with side information), -1 for items the
catalogue lacks, and a ``split``: ``seen`` (both items trained), ``cold`` (both in the catalogue, one
or both known only by side information) or ``unknown``.

``build_validation`` makes the same kind of pairs from the sessions a ``ValidationSplit`` held out
of the training days, keeping only pairs of two graph nodes: the learning curves' data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys.catalog import CATALOG_FILE, Catalog
from recsys.config import EvaluateConfig, GraphConfig, SequencesConfig
from recsys.graph import ValidationSplit, events_between, session_pairs, session_sequences
from recsys.lake import PAIRS_FILE, Lake
from recsys.sequences import Sequences, holdout_sessions
from recsys.timewindow import TimeWindow

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class HoldoutResult:
    path: str
    test_events: int
    positives: int
    negatives: int


@dataclass(frozen=True)
class ValidationResult:
    path: str
    events: int
    positives: int
    negatives: int


def build_holdout(spark: SparkSession, lake: Lake, window: TimeWindow, graph: GraphConfig, config: EvaluateConfig,
                  catalog: Catalog, seed: int, out: Path) -> HoldoutResult:
    test = events_between(spark, lake, window.test_from, window.run_date).cache()  # read once, used three times
    test_events = test.count()
    positives, pool = _positives_and_pool(test, graph, config.max_pairs, seed)
    test.unpersist()
    holdout = _indexed(_with_negatives(positives, pool, seed), catalog)
    _write(holdout, out)
    n_pos = int(pc.sum(holdout.column("label")).as_py() or 0)
    result = HoldoutResult(str(out), test_events, n_pos, holdout.num_rows - n_pos)
    log.info("holdout: %d test-day events -> %d co-occurring pairs + %d sampled non-pairs", test_events,
             result.positives, result.negatives)
    return result


def user_test_items(spark: SparkSession, lake: Lake, window: TimeWindow) -> pa.Table:
    """The distinct (user_id, item_id) pairs of the test days: the user-to-item evaluation's ground truth."""
    test = events_between(spark, lake, window.test_from, window.run_date)
    return test.select("user_id", "item_id").distinct().orderBy("user_id", "item_id").toArrow()


def next_item_sessions(spark: SparkSession, lake: Lake, window: TimeWindow, settings: SequencesConfig, catalog: Catalog,
                   max_session_length: int, max_sessions: int, seed: int) -> Sequences:
    """The test days' sessions for next-item evaluation (``recsys.sequences.holdout_sessions``): built as the
    training sequences are, items unseen in training (not graph nodes) dropped, then sessions under 2 items."""
    events = events_between(spark, lake, window.test_from, window.run_date)
    sessions = session_sequences(events, settings, catalog.item_ids, max_session_length)
    known = np.arange(catalog.n_items) < catalog.n_nodes
    return holdout_sessions(sessions, known, max_sessions, seed)


def build_validation(spark: SparkSession, lake: Lake, window: TimeWindow, graph: GraphConfig, split: ValidationSplit,
                     max_pairs: int, catalog: Catalog, graph_dir: Path, seed: int, out: Path) -> ValidationResult:
    """Pairs of the held-out validation sessions whose two items are graph nodes, with sampled non-pairs
    drawn from the sessions' graph items. Pairs are formed on the whole sessions (the holdout's rule),
    then kept when both items are nodes."""
    held_out = split.only(events_between(spark, lake, window.train_from, window.train_until)).cache()
    events = held_out.count()
    nodes = spark.read.parquet(str(graph_dir / CATALOG_FILE)).where("is_node").select("item_id")
    positives, pool = _positives_and_pool(held_out, graph, max_pairs, seed, only_items=nodes)
    held_out.unpersist()
    pairs = _indexed(_with_negatives(positives, pool, seed), catalog)
    _write(pairs, out)
    n_pos = int(pc.sum(pairs.column("label")).as_py() or 0)
    log.info("validation: %d held-out events -> %d pairs of trained items + %d sampled non-pairs", events, n_pos,
             pairs.num_rows - n_pos)
    return ValidationResult(str(out), events, n_pos, pairs.num_rows - n_pos)


def _positives_and_pool(events, graph: GraphConfig, max_pairs: int, seed: int,
                        only_items=None) -> tuple[pa.Table, np.ndarray]:
    """Distinct co-occurring pairs (at most ``max_pairs``, chosen by a seeded hash) and the items to draw
    negatives from; with ``only_items``, both restricted to those items."""
    pairs = session_pairs(events, graph).where(F.col("src") < F.col("dst")).select("src", "dst").distinct()
    items = events.select("item_id").distinct()
    if only_items is not None:
        allowed = F.broadcast(only_items)
        pairs = pairs.join(allowed.withColumnRenamed("item_id", "src"), "src", "left_semi").join(
            allowed.withColumnRenamed("item_id", "dst"), "dst", "left_semi")
        items = items.join(allowed, "item_id", "left_semi")
    ranked = pairs.orderBy(F.xxhash64("src", "dst", F.lit(seed)), "src", "dst").limit(max_pairs)
    positives = ranked.orderBy("src", "dst").select("src", "dst").toArrow()
    pool = np.array(sorted(items.toArrow().column("item_id").to_pylist()), dtype=object)
    return positives, pool


def _indexed(pairs: pa.Table, catalog: Catalog) -> pa.Table:
    a = catalog.indices_of(pairs.column("src").to_pylist())
    b = catalog.indices_of(pairs.column("dst").to_pylist())
    split = np.where((a < 0) | (b < 0), "unknown",
                     np.where((a < catalog.n_nodes) & (b < catalog.n_nodes), "seen", "cold"))
    return pairs.append_column("a", pa.array(a)).append_column("b", pa.array(b)).append_column(
        "split", pa.array(split.tolist(), pa.string()))


def _write(pairs: pa.Table, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pairs, out / PAIRS_FILE)


def _with_negatives(positives: pa.Table, pool: np.ndarray, seed: int) -> pa.Table:
    src = positives.column("src").to_pylist()
    dst = positives.column("dst").to_pylist()
    linked = set(zip(src, dst)) | set(zip(dst, src))
    rng = np.random.default_rng(seed)
    negatives = []
    for a in src:
        for _ in range(100):
            c = pool[rng.integers(len(pool))]
            if c != a and (a, c) not in linked:
                break
        negatives.append(c)
    return pa.table({
        "src": pa.array(src + src, pa.string()),
        "dst": pa.array(dst + negatives, pa.string()),
        "label": pa.array([1] * len(src) + [0] * len(src), pa.int8()),
    })


def load_holdout(folder: Path) -> pa.Table:
    return pq.read_table(folder / PAIRS_FILE)
