"""The graph stage: sessions in the training window -> weighted item graph and transition table.

Runs on Spark. Two events of one session at distance ``d <= window`` (in time order) form an edge
between their items weighted ``max(w(type_a), w(type_b)) * decay**(d-1)``; edges are undirected
(stored both ways), summed over all sessions, and dropped below ``min_weight``. Sessions with more
than ``max_session_length`` events (bots, crawlers) give no edges; ``GraphResult`` counts them. The
pairs cost O(events * window), however long a session is. Only the summed edge list (O(edges))
reaches the driver, where it becomes CSR arrays (``recsys.transition``). This is the session
co-occurrence graph of Wang et al. 2018, "Billion-scale Commodity Embedding for E-commerce
Recommendation in Alibaba", section 2.2.

Beside the graph it writes the user x item matrix of the whole training window (``user_items``, saved
as CSR arrays by ``recsys.interactions.save_user_items``) that the user-to-item models train on, and,
when a sequence model is listed, the window's sessions as item sequences (``session_sequences``).

The stage also writes the run's item catalogue (``recsys.catalog``: the nodes, then the cold items of
``items/``). When learning curves are wanted, a ``ValidationSplit`` holds whole sessions of the last
training days out of the graph, so the validation pairs they give were never trained on.
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

from recsys.catalog import build_catalog
from recsys.config import GraphConfig, SequencesConfig
from recsys.interactions import save_user_items
from recsys.lake import Lake, read_parquet_dir
from recsys.sequences import Sequences, save_sequences, sequences_from_events
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
    cold_items: int = 0
    validation_events: int = 0
    long_sessions: int = 0
    long_session_events: int = 0
    users: int = 0  # rows of the user x item matrix written beside the graph
    interactions: int = 0  # its distinct (user, item) pairs
    sequences: int = 0  # sessions written as item sequences for the sequence models (0: none listed)


@dataclass(frozen=True)
class ValidationSplit:
    """Sessions with an event between ``first_day`` and ``last_day`` whose seeded hash falls in
    ``share``: held out of training whole (all their events, any day) for learning curves."""

    first_day: dt.date
    last_day: dt.date
    share: float
    seed: int

    def _held_out(self, events: DataFrame) -> DataFrame:
        bucket = F.pmod(F.xxhash64(F.col("session_id"), F.lit(self.seed)), F.lit(10_000))
        in_days = events.where(F.col("event_date").between(F.lit(self.first_day), F.lit(self.last_day)))
        return in_days.select("session_id").distinct().where(bucket < F.lit(int(round(self.share * 10_000))))

    def without(self, events: DataFrame) -> DataFrame:
        return events.join(self._held_out(events), on="session_id", how="left_anti")

    def only(self, events: DataFrame) -> DataFrame:
        return events.join(self._held_out(events), on="session_id", how="left_semi")


def events_between(spark: SparkSession, lake: Lake, first: dt.date, last: dt.date) -> DataFrame:
    events = spark.read.parquet(str(lake.events))
    return events.where(F.col("event_date").between(F.lit(first), F.lit(last)))


def session_pairs(events: DataFrame, config: GraphConfig) -> DataFrame:
    """Ordered item pairs (src, dst, weight) of events at distance 1..window in a session, both ways.

    Events are ordered in their session by (event_time, item_id, event_type). Each event reads the
    item and weight of the ``window`` events after it with ``lead`` (one sort per session, no join),
    so the work is O(events * window) whatever a session's length. Sessions with more events than
    ``config.max_session_length`` (bots, crawlers) give no pairs.
    """
    weights = F.create_map(*[F.lit(x) for kv in sorted(config.event_weights.items()) for x in kv])
    session = Window.partitionBy("session_id")
    order = session.orderBy("event_time", "item_id", "event_type")
    weighted = events.select("session_id", "event_time", "item_id", "event_type",
                             weights[F.col("event_type")].alias("w"))
    ahead = [F.count(F.lit(1)).over(session).alias("_events")]
    for d in range(1, config.window + 1):
        ahead += [F.lead("item_id", d).over(order).alias(f"_item{d}"), F.lead("w", d).over(order).alias(f"_w{d}")]
    near = weighted.select("item_id", "w", *ahead).where(F.col("_events") <= config.max_session_length)
    pairs = []
    for d in range(1, config.window + 1):
        this, other = F.col("item_id"), F.col(f"_item{d}")
        weight = _pair_weight(F.col("w"), F.col(f"_w{d}"), config.decay, F.lit(d - 1)).alias("weight")
        pairs += [F.struct(this.alias("src"), other.alias("dst"), weight),
                  F.struct(other.alias("src"), this.alias("dst"), weight)]
    # a pair past the session's end has a null item, and null != x is not true: both are dropped here
    return near.select(F.inline(F.array(*pairs))).where(F.col("src") != F.col("dst"))


def _pair_weight(w_a: F.Column, w_b: F.Column, decay: float, steps: F.Column) -> F.Column:
    return F.greatest(w_a, w_b) * F.pow(F.lit(decay), steps)


def pair_weight_values(spark: SparkSession, config: GraphConfig) -> list[float]:
    """Every weight a pair of ``session_pairs`` can have, computed by Spark with the same expression so that
    they compare equal to the pairs' own: the larger of two event weights times ``decay**(d-1)``."""
    weights = sorted({float(w) for w in config.event_weights.values()})
    rows = [(a, b, float(d - 1)) for a in weights for b in weights for d in range(1, config.window + 1)]
    frame = spark.createDataFrame(rows, "a double, b double, steps double")
    return sorted({r[0] for r in frame.select(_pair_weight(F.col("a"), F.col("b"), config.decay, F.col("steps"))).collect()})


def long_sessions(events: DataFrame, max_length: int) -> tuple[int, int]:
    """Sessions with more than ``max_length`` events, and their events: what ``session_pairs`` leaves out."""
    lengths = events.groupBy("session_id").count().where(F.col("count") > max_length)
    row = lengths.agg(F.count("*").alias("sessions"), F.sum("count").alias("events")).first()
    return int(row["sessions"] or 0), int(row["events"] or 0)


def summed_edges(pairs: DataFrame, min_weight: float, values: list[float] | None = None) -> DataFrame:
    """Sum each edge's contributions so that the weights do not depend on the order in which Spark's
    partitions arrive (floating-point sums would, and the walks with them).

    With ``values`` (``pair_weight_values``: the few weights a pair can have) each edge counts its pairs
    of every value, in integers, and its weight is the sum of count x value in the order of ``values``:
    one integer aggregation, 1.4x faster than the exact decimal sum used without them at 1M events on a
    quiet machine, 3x on a loaded one (benchmarks/graph_sums.py). A pair whose weight is not among ``values`` still counts, through a plain sum.
    """
    if not values:
        exact = F.sum(F.col("weight").cast("decimal(38,18)")).cast("double")
        edges = pairs.groupBy("src", "dst").agg(exact.alias("weight"))
    else:
        counts = [F.sum(F.when(F.col("weight") == F.lit(v), 1).otherwise(0)).alias(f"_n{i}") for i, v in enumerate(values)]
        other = F.sum(F.when(~F.col("weight").isin(values), F.col("weight"))).alias("_other")
        weight = F.coalesce(F.col("_other"), F.lit(0.0))
        for i, v in enumerate(values):
            weight = weight + F.col(f"_n{i}") * F.lit(v)
        edges = pairs.groupBy("src", "dst").agg(*counts, other).select("src", "dst", weight.alias("weight"))
    return edges.where(F.col("weight") >= min_weight) if min_weight > 0 else edges


def training_events(spark: SparkSession, lake: Lake, window: TimeWindow, validation: ValidationSplit | None) -> DataFrame:
    events = events_between(spark, lake, window.train_from, window.train_until)
    return validation.without(events) if validation else events


def build_graph(spark: SparkSession, config: GraphConfig, lake: Lake, window: TimeWindow, out: Path,
                validation: ValidationSplit | None = None, sequences: SequencesConfig | None = None) -> GraphResult:
    """Write the transition table, item statistics and catalogue of the training window to ``out``; with
    ``sequences``, also the window's sessions as item sequences (``recsys.sequences``)."""
    events = training_events(spark, lake, window, validation).cache()
    stats = _item_stats(events)
    n_long, long_events = long_sessions(events, config.max_session_length)
    edges = summed_edges(session_pairs(events, config), config.min_weight, pair_weight_values(spark, config)).toArrow()
    events.unpersist()
    table = _transition_table(stats, edges)
    table.save(out)
    pq.write_table(stats, out / ITEM_STATS_FILE)
    catalog = build_catalog(table, read_parquet_dir(lake.items) if _has_items(lake) else None)
    catalog.save(out)
    window_events = events_between(spark, lake, window.train_from, window.train_until)
    held_out = validation.only(window_events).count() if validation else 0
    matrix = save_user_items(user_items(window_events, config.event_weights), out)
    n_sequences = 0
    if sequences is not None:
        train_sequences = session_sequences(window_events, sequences, catalog.item_ids, config.max_session_length)
        save_sequences(train_sequences, out)
        n_sequences = len(train_sequences)
    result = GraphResult(path=str(out), nodes=table.n_nodes, edges=table.n_edges,
                         train_events=int(pc.sum(stats.column("events")).as_py() or 0),
                         isolated_nodes=int((table.out_degree() == 0).sum()), cold_items=catalog.n_cold,
                         validation_events=held_out, long_sessions=n_long, long_session_events=long_events,
                         users=matrix.n_users, interactions=matrix.nnz, sequences=n_sequences)
    log.info("graph: %s -> %d nodes, %d directed edges (%d nodes without neighbours) from %d events "
             "(%d held out for validation; %d events of %d sessions longer than %d left out); "
             "%d cold items with side information; at %s", window.describe(), result.nodes, result.edges,
             result.isolated_nodes, result.train_events, held_out, long_events, n_long, config.max_session_length,
             result.cold_items, out)
    return result


def user_items(events: DataFrame, event_weights: dict[str, float]) -> pa.Table:
    """One row per (user, item) of the events: how many events, their summed event-type weight (exact,
    as the edges), and the time of the last one in unix seconds; sorted by user then item id."""
    weights = F.create_map(*[F.lit(x) for kv in sorted(event_weights.items()) for x in kv])
    exact = F.sum(weights[F.col("event_type")].cast("decimal(38,18)")).cast("double")
    pairs = events.groupBy("user_id", "item_id").agg(
        F.count("*").alias("events"), exact.alias("weight"), F.max("event_time").cast("long").alias("last_seen"))
    return pairs.orderBy("user_id", "item_id").toArrow()


def session_sequences(events: DataFrame, settings: SequencesConfig, item_ids: np.ndarray,
                      max_length: int | None = None, min_length: int = 1) -> Sequences:
    """The sessions of ``events`` as item sequences in time order (``recsys.sequences``): only
    ``settings.event_types`` when given, repeats collapsed as ``settings`` says, items mapped to their
    index in ``item_ids`` (others dropped), sessions of more than ``max_length`` events (bots) left out.
    Spark sorts the events (in the graph's order within a session); the driver gets one Arrow table."""
    if settings.event_types:
        events = events.where(F.col("event_type").isin(list(settings.event_types)))
    rows = events.select("session_id", "user_id", "item_id", F.col("event_time").cast("long").alias("t"),
                         "event_time", "event_type") \
        .orderBy("session_id", "event_time", "item_id", "event_type").drop("event_time", "event_type").toArrow()
    return sequences_from_events(rows, pa.array(list(item_ids), pa.string()), settings.collapse_repeats, max_length,
                                 min_length)


def _has_items(lake: Lake) -> bool:
    return lake.items.exists() and any(lake.items.rglob("*.parquet"))


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

