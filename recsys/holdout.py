"""The evaluation holdout: co-occurring item pairs of the test days, and as many sampled non-pairs.

Runs on Spark (it reads the test days' events). Positives are the distinct unordered pairs that form
graph edges in test-day sessions (same window rule as the graph stage), at most ``max_pairs`` of them
(chosen by a seeded hash). Each positive ``(a, b)`` gets one negative ``(a, c)`` with ``c`` drawn
uniformly from the items of the test days, never an item that co-occurs with ``a`` there. Drawing
``c`` from the same days as ``b`` gives negatives the same chance as positives of holding an item
unseen in training; drawing it from the whole window would make unseen items (which every model
scores with its fallback) mark positives, and bias AUC. Pairs carry node indices of the training
graph, -1 for items unseen in training.
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

from recsys.config import EvaluateConfig, GraphConfig
from recsys.graph import events_between, session_pairs
from recsys.lake import Lake
from recsys.timewindow import TimeWindow
from recsys.transition import TransitionTable

log = logging.getLogger(__name__)

PAIRS_FILE = "pairs.parquet"


@dataclass(frozen=True)
class HoldoutResult:
    path: str
    test_events: int
    positives: int
    negatives: int


def build_holdout(spark: SparkSession, lake: Lake, window: TimeWindow, graph: GraphConfig, config: EvaluateConfig,
                  table: TransitionTable, seed: int, out: Path) -> HoldoutResult:
    test = events_between(spark, lake, window.test_from, window.run_date).cache()  # read once, used three times
    test_events = test.count()
    pairs = session_pairs(test, graph).where(F.col("src") < F.col("dst")).select("src", "dst").distinct()
    ranked = pairs.orderBy(F.xxhash64("src", "dst", F.lit(seed)), "src", "dst").limit(config.max_pairs)
    positives = ranked.orderBy("src", "dst").toArrow()
    test_items = test.select("item_id").distinct()
    pool = np.array(sorted(test_items.toArrow().column("item_id").to_pylist()), dtype=object)
    test.unpersist()
    holdout = _with_negatives(positives, pool, seed)
    holdout = holdout.append_column("a", pa.array(table.indices_of(holdout.column("src").to_pylist())))
    holdout = holdout.append_column("b", pa.array(table.indices_of(holdout.column("dst").to_pylist())))
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(holdout, out / PAIRS_FILE)
    n_pos = int(pc.sum(holdout.column("label")).as_py() or 0)
    result = HoldoutResult(str(out), test_events, n_pos, holdout.num_rows - n_pos)
    log.info("holdout: %d test-day events -> %d co-occurring pairs + %d sampled non-pairs", test_events,
             result.positives, result.negatives)
    return result


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
