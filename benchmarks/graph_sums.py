"""Summing the graph's edge weights: the exact decimal sum vs integer counts per pair-weight value, side by side.

Both make an edge's weight independent of the order in which Spark's partitions arrive (a plain double sum
would not, and the walks would change from run to run). The decimal plan casts every pair's weight to
``decimal(38,18)``; the counting plan (``recsys.graph.summed_edges`` with ``pair_weight_values``) counts each
edge's pairs of every possible weight (window x event-weight combinations) in integers and multiplies
once. The events are the embedded sample scaled up (``recsys.sample``, same planted structure), written
straight into a lake's ``events/`` with pyarrow, sessions cut at the 30-minute gap. The pairs are cached,
then both sums run interleaved ``--repeats`` times; the script checks that they agree to 1e-12.

    python benchmarks/graph_sums.py --millions 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.config import GraphConfig, SparkConfig  # noqa: E402
from recsys.graph import pair_weight_values, session_pairs, summed_edges, training_events  # noqa: E402
from recsys.lake import Lake  # noqa: E402
from recsys.sample import generate_sample  # noqa: E402
from recsys.spark import spark_session  # noqa: E402
from recsys.timewindow import TimeWindow  # noqa: E402


def write_events(lake: Lake, millions: float) -> int:
    """The scaled sample as lake events (27,000 users and 18,000 items per million events)."""
    users, items = int(27_000 * millions), int(18_000 * millions)
    events, _ = generate_sample(7, users, items, max(1, items // 100))
    seconds = events["timestamp"].cast(pa.int64()).to_numpy() // 1_000_000
    user = events["user_id"].to_numpy(zero_copy_only=False)
    order = np.lexsort((seconds, user))
    events, seconds, user = events.take(pa.array(order)), seconds[order], user[order]
    starts = np.ones(len(seconds), bool)
    starts[1:] = (user[1:] != user[:-1]) | (np.diff(seconds) > 1800)
    session = pc.binary_join_element_wise(events["user_id"], pa.array(np.cumsum(starts).astype(str)), "@")
    table = pa.table({"event_time": events["timestamp"], "user_id": events["user_id"], "session_id": session,
                      "item_id": events["item_id"], "event_type": events["event_type"],
                      "source_file": pa.array(["generated"] * len(seconds))})
    table = table.append_column("event_date", pc.cast(pc.cast(table["event_time"], pa.timestamp("us")), pa.date32()))
    pq.write_to_dataset(table, lake.events, partition_cols=["event_date"])
    return table.num_rows


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--millions", type=float, default=1.0, help="millions of events")
    cli.add_argument("--repeats", type=int, default=3)
    arguments = cli.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        lake = Lake(Path(folder))
        n_events = write_events(lake, arguments.millions)
        spark = spark_session(SparkConfig())
        config = GraphConfig()
        window = TimeWindow(dt.date(2024, 3, 1), dt.date(2024, 3, 15), dt.date(2024, 3, 15))
        events = training_events(spark, lake, window, None).cache()
        pairs = session_pairs(events, config).cache()
        n_pairs = pairs.count()
        values = pair_weight_values(spark, config)
        plans = {"decimal(38,18) sum": lambda: summed_edges(pairs, 0).toArrow(),
                 f"counts per value ({len(values)} values)": lambda: summed_edges(pairs, 0, values).toArrow()}
        times: dict[str, list[float]] = {name: [] for name in plans}
        tables = {}
        for _ in range(arguments.repeats):
            for name, plan in plans.items():
                started = time.perf_counter()
                tables[name] = plan()
                times[name].append(time.perf_counter() - started)
        exact, counted = (t.sort_by([("src", "ascending"), ("dst", "ascending")]) for t in tables.values())
        error = np.max(np.abs(exact["weight"].to_numpy() / counted["weight"].to_numpy() - 1))
        print(f"{n_events:,} events, {n_pairs:,} pairs, {exact.num_rows:,} edges; max relative difference {error:.1e}")
        base = statistics.median(next(iter(times.values())))
        for name, seconds in times.items():
            median = statistics.median(seconds)
            print(f"{name:32s} median {median:6.1f} s ({', '.join(f'{s:.1f}' for s in seconds)}); {base / median:.2f}x")
        assert error < 1e-12


if __name__ == "__main__":
    main()
