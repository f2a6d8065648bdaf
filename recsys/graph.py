"""The graph stage: sessions in the training window -> weighted item graph and transition table.

Runs on Spark. Two events of one session at distance ``d <= window`` (in time order) form an edge
between their items weighted ``max(w(type_a), w(type_b)) * decay**(d-1)``; edges are undirected
(stored both ways), summed over all sessions, and dropped below ``min_weight``. Only the summed edge
list (O(edges)) reaches the driver, where it becomes CSR arrays (``recsys.transition``). This is the
session co-occurrence graph of Wang et al. 2018, "Billion-scale Commodity Embedding for
E-commerce Recommendation in Alibaba", section 2.2.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recsys.config import GraphConfig
from recsys.lake import Lake
from recsys.timewindow import TimeWindow
from recsys.transition import ITEM_STATS_FILE, TransitionTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GraphResult:
    path: str
    nodes: int
    edges: int
    train_events: int
    isolated_nodes: int


def events_between(spark: SparkSession, lake: Lake, first: dt.date, last: dt.date) -> DataFrame:
    events = spark.read.parquet(str(lake.events))
    return events.where(F.col("event_date").between(F.lit(first), F.lit(last)))


def session_pairs(events: DataFrame, config: GraphConfig) -> DataFrame:
    """Ordered item pairs (src, dst, weight) of events at distance 1..window in a session, both ways."""
    weights = F.create_map(*[F.lit(x) for kv in sorted(config.event_weights.items()) for x in kv])
    order = Window.partitionBy("session_id").orderBy("event_time", "item_id", "event_type")
    positioned = events.select("session_id", "item_id", weights[F.col("event_type")].alias("w"),
                               F.row_number().over(order).alias("pos"))
    a, b = positioned.alias("a"), positioned.alias("b")
    joined = a.join(b, (F.col("a.session_id") == F.col("b.session_id"))
                    & (F.col("b.pos") > F.col("a.pos")) & (F.col("b.pos") <= F.col("a.pos") + config.window))
    distance = F.col("b.pos") - F.col("a.pos")
    pairs = joined.where(F.col("a.item_id") != F.col("b.item_id")).select(
        F.col("a.item_id").alias("src"), F.col("b.item_id").alias("dst"),
        (F.greatest("a.w", "b.w") * F.pow(F.lit(config.decay), distance - 1)).alias("weight"))
    return pairs.unionByName(pairs.select(F.col("dst").alias("src"), F.col("src").alias("dst"), "weight"))


def summed_edges(pairs: DataFrame, min_weight: float) -> DataFrame:
    """Sum each edge's contributions exactly (as decimals), so the weights do not depend on the order
    in which Spark's partitions arrive: floating-point sums would, and the walks with them."""
    exact = F.sum(F.col("weight").cast("decimal(38,18)")).cast("double")
    edges = pairs.groupBy("src", "dst").agg(exact.alias("weight"))
    return edges.where(F.col("weight") >= min_weight) if min_weight > 0 else edges


def build_graph(spark: SparkSession, config: GraphConfig, lake: Lake, window: TimeWindow, out: Path) -> GraphResult:
    """Write the transition table and item statistics of the training window to ``out``."""
    events = events_between(spark, lake, window.train_from, window.train_until).cache()
    stats = _item_stats(events)
    edges = summed_edges(session_pairs(events, config), config.min_weight).toArrow()
    events.unpersist()
    table = _transition_table(stats, edges)
    table.save(out)
    pq.write_table(stats, out / ITEM_STATS_FILE)
    result = GraphResult(path=str(out), nodes=table.n_nodes, edges=table.n_edges,
                         train_events=int(pc.sum(stats.column("events")).as_py() or 0),
                         isolated_nodes=int((table.out_degree() == 0).sum()))
    log.info("graph: %s -> %d nodes, %d directed edges (%d nodes without neighbours) from %d events, at %s",
             window.describe(), result.nodes, result.edges, result.isolated_nodes, result.train_events, out)
    return result


def _item_stats(events: DataFrame) -> pa.Table:
    """Per training item: events, distinct users and purchases, sorted by item id (the node order)."""
    stats = events.groupBy("item_id").agg(
        F.count("*").alias("events"),
        F.countDistinct("user_id").alias("users"),
        F.sum(F.when(F.col("event_type") == "purchase", 1).otherwise(0)).alias("purchases"),
    )
    return stats.orderBy("item_id").toArrow()


def _transition_table(stats: pa.Table, edges: pa.Table) -> TransitionTable:
    item_ids = np.asarray(stats.column("item_id").to_pylist(), dtype=object)
    vocab = stats.column("item_id")
    src = pc.index_in(edges.column("src"), value_set=vocab).to_numpy().astype(np.int64)
    dst = pc.index_in(edges.column("dst"), value_set=vocab).to_numpy().astype(np.int64)
    weight = edges.column("weight").to_numpy()
    return TransitionTable.from_edges(item_ids, src, dst, weight)

