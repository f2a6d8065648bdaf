"""The graph stage's co-occurrence pairs: the ``lead`` plan vs the old self-join, side by side in one run.

Ingests a log into a temporary lake (default: the Taobao head with the ``taobao`` preset), optionally
adds one synthetic bot session of ``--bot-events`` events, caches the events, then times
``summed_edges(pairs, 0).toArrow()`` for
  1. ``recsys.graph.session_pairs``: each event reads the next ``window`` events with ``lead``,
     O(L * window) per session of L events;
  2. the pre-change plan (``self_join_pairs`` below): row_number per session, then a self-join on the
     session with a position range, O(L^2) per session;
interleaved, ``--repeats`` times after one warm-up each, and checks that both give the same edges with
the same weights. ``max_session_length`` is set to the longest session, so the new code drops nothing
(the old plan had no limit). The old plan is skipped for a bot session above ``--max-old-bot`` events.

    python benchmarks/graph_pairs.py                      # Taobao head: the figures in docs/benchmarks.md
    python benchmarks/graph_pairs.py --bot-events 3000    # plus one bot session of 3,000 events
    python benchmarks/graph_pairs.py --bot-events 50000   # the new plan alone (old one skipped)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.config import GraphConfig, IngestConfig, SparkConfig  # noqa: E402
from recsys.graph import session_pairs, summed_edges  # noqa: E402
from recsys.ingest import ingest  # noqa: E402
from recsys.lake import Lake  # noqa: E402
from recsys.spark import spark_session  # noqa: E402

TAOBAO_HEAD = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "taobao" / "UserBehavior_head.csv"
COLUMNS = ["session_id", "item_id", "event_type", "event_time"]


def self_join_pairs(events: DataFrame, config: GraphConfig) -> DataFrame:
    """The pre-change plan of ``session_pairs`` (the peer): number each session's events by (event_time,
    item_id, event_type) and self-join on the session with ``a.pos < b.pos <= a.pos + window``, which
    compares every pair of a session's events: O(L^2) per session. It has no session length limit."""
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


def bot_session(spark: SparkSession, n_events: int) -> DataFrame:
    """One session of ``n_events`` views, one a second, cycling over 101 items (no self pairs)."""
    start = dt.datetime(2017, 11, 25, tzinfo=dt.timezone.utc)
    return spark.range(n_events).select(
        F.lit("bot").alias("session_id"), F.concat(F.lit("bot"), (F.col("id") % 101).cast("string")).alias("item_id"),
        F.lit("view").alias("event_type"),
        (F.lit(start) + F.make_dt_interval(secs=F.col("id").cast("decimal(18,6)"))).alias("event_time"))


def timed(plan, events: DataFrame, config: GraphConfig) -> tuple[float, pa.Table]:
    started = time.perf_counter()
    edges = summed_edges(plan(events, config), 0).toArrow()
    return time.perf_counter() - started, edges


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--input", type=Path, default=TAOBAO_HEAD, help="raw log to ingest")
    cli.add_argument("--preset", default="taobao", help="ingest column preset of --input")
    cli.add_argument("--bot-events", type=int, default=0, help="events of one synthetic bot session (0: none)")
    cli.add_argument("--max-old-bot", type=int, default=5000, help="skip the old O(L^2) plan above this bot size")
    cli.add_argument("--window", type=int, default=GraphConfig().window)
    cli.add_argument("--repeats", type=int, default=5)
    args = cli.parse_args()
    print(f"load average at start (1, 5, 15 min): {load()}")

    started = time.perf_counter()
    spark = spark_session(SparkConfig(master="local[2]", shuffle_partitions=4))
    print(f"Spark session (local[2], 4 shuffle partitions) in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp) / "lake")
        started = time.perf_counter()
        result = ingest(spark, IngestConfig(input=args.input, items_input=None, preset=args.preset), lake)
        print(f"ingest: {result.rows_accepted:,} events of {args.input.name} in {time.perf_counter() - started:.1f} s")
        events = spark.read.parquet(str(lake.events)).select(*COLUMNS)
        if args.bot_events:
            events = events.unionByName(bot_session(spark, args.bot_events))
        events = events.cache()
        lengths = events.groupBy("session_id").count()
        stats = lengths.agg(F.count("*").alias("n"), F.sum("count").alias("events"), F.max("count").alias("max")).first()
        config = GraphConfig(window=args.window, max_session_length=max(GraphConfig().max_session_length, stats["max"]))
        print(f"events: {stats['events']:,} in {stats['n']:,} sessions, longest {stats['max']:,} "
              f"(bot session: {args.bot_events:,} events); window {config.window}, "
              f"max_session_length {config.max_session_length:,}")

        plans = {"lead (new)": session_pairs}
        if args.bot_events > args.max_old_bot:
            print(f"self-join (old) skipped: its join compares all {args.bot_events:,}^2 = {args.bot_events ** 2:,} "
                  f"event pairs of the bot session (O(L^2)); raise --max-old-bot to run it")
        else:
            plans["self-join (old)"] = self_join_pairs
        seconds: dict[str, list[float]] = {name: [] for name in plans}
        edges = {}
        for name, plan in plans.items():  # warm-up: plan compilation, Python workers, caches
            warm, edges[name] = timed(plan, events, config)
            print(f"warm-up {name}: {warm:.2f} s, {edges[name].num_rows:,} edges")
        for r in range(args.repeats):  # interleaved, alternating which plan goes first
            for name in (list(plans) if r % 2 == 0 else list(plans)[::-1]):
                t, _ = timed(plans[name], events, config)
                seconds[name].append(t)
        events.unpersist()

    if len(edges) == 2:
        new, old = (e.sort_by([("src", "ascending"), ("dst", "ascending")]) for e in edges.values())
        assert all(new[c].equals(old[c]) for c in ("src", "dst", "weight")), "the two plans' edge lists differ"
        print(f"edge lists identical: {new.num_rows:,} edges, same weights")
    print()
    print(f"| plan | min s | median s | edges |   ({args.repeats} repeats after one warm-up each)")
    print("|---|---:|---:|---:|")
    for name, ts in seconds.items():
        print(f"| {name} | {min(ts):.2f} | {statistics.median(ts):.2f} | {edges[name].num_rows:,} |")
    if len(seconds) == 2:
        new_t, old_t = seconds.values()
        print(f"\nold / new: min {min(old_t) / min(new_t):.2f}x, median {statistics.median(old_t) / statistics.median(new_t):.2f}x")
    print(f"load average at end (1, 5, 15 min): {load()}")
    spark.stop()


if __name__ == "__main__":
    main()
