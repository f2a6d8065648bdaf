"""Graph stage on real Spark: edge weights by hand, the transition table against networkx."""

from __future__ import annotations

import datetime as dt

import networkx as nx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from benchmarks.graph_pairs import self_join_pairs as _naive_pairs  # the pre-change plan, the reference
from recsys.config import GraphConfig, IngestConfig, WindowConfig
from recsys.graph import GraphResult, build_graph, pair_weight_values, session_pairs, summed_edges
from recsys.ingest import ingest
from recsys.lake import Lake
from recsys.timewindow import resolve_window
from recsys.transition import TransitionTable
from tests.conftest import TAOBAO, dataset


def _events(spark, rows):
    return spark.createDataFrame(rows, "session_id string, item_id string, event_type string, event_time timestamp")


def _rows(frame) -> list[tuple]:
    return sorted(tuple(r) for r in frame.collect())


def _random_sessions(seed: int, lengths) -> list[tuple]:
    """Sessions of the given lengths over a few items (repeats give self pairs), all event types, and
    coarse times (ties, broken by item and type)."""
    rng = np.random.default_rng(seed)
    kinds = ["view", "cart", "purchase", "favorite"]
    rows = []
    for n, length in enumerate(lengths):
        items = max(2, int(rng.integers(1, 3 * length + 2)))
        rows += [(f"s{n}", f"i{rng.integers(0, items)}", kinds[rng.integers(0, 4)],
                  _t(0) + dt.timedelta(seconds=int(rng.integers(0, max(2, length // 2))))) for _ in range(length)]
    return rows


def _write_lake_events(lake: Lake, rows: list[tuple]) -> None:
    """Canonical events straight into the lake layout, one Parquet file per event date."""
    by_day: dict[dt.date, list[tuple]] = {}
    for row in rows:
        by_day.setdefault(row[3].date(), []).append(row)
    for day, day_rows in by_day.items():
        folder = lake.events / f"event_date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({
            "event_time": pa.array([r[3] for r in day_rows], pa.timestamp("us", tz="UTC")),
            "user_id": pa.array([f"u-{r[0]}" for r in day_rows], pa.string()),
            "session_id": pa.array([r[0] for r in day_rows], pa.string()),
            "item_id": pa.array([r[1] for r in day_rows], pa.string()),
            "event_type": pa.array([r[2] for r in day_rows], pa.string()),
            "source_file": pa.array(["test"] * len(day_rows), pa.string()),
        }), folder / "part-0.parquet")


def _t(minute: int) -> dt.datetime:
    return dt.datetime(2024, 3, 1, 10, minute, tzinfo=dt.timezone.utc)


def test_pair_weights_follow_window_decay_and_event_weights(spark):
    rows = [("s1", "a", "view", _t(0)), ("s1", "b", "cart", _t(1)), ("s1", "c", "view", _t(2)),
            ("s1", "d", "view", _t(3)), ("s2", "a", "view", _t(0)), ("s2", "b", "view", _t(1))]
    config = GraphConfig(window=2, decay=0.5, event_weights={"view": 1.0, "favorite": 2.0, "cart": 3.0, "purchase": 5.0})
    edges = {(r["src"], r["dst"]): r["weight"] for r in summed_edges(session_pairs(_events(spark, rows), config), 0).collect()}
    # s1: a-b d1 max(1,3)=3; a-c d2 1*0.5; b-c d1 3; b-d d2 3*0.5; c-d d1 1.  s2: a-b d1 1.
    expected = {("a", "b"): 4.0, ("a", "c"): 0.5, ("b", "c"): 3.0, ("b", "d"): 1.5, ("c", "d"): 1.0}
    assert edges == {**expected, **{(d, s): w for (s, d), w in expected.items()}}


def test_self_pairs_are_dropped_and_min_weight_filters(spark):
    rows = [("s", "a", "view", _t(0)), ("s", "a", "cart", _t(1)), ("s", "b", "view", _t(2)), ("t", "c", "view", _t(0)),
            ("t", "d", "view", _t(1))]
    config = GraphConfig(window=1, decay=1.0)
    edges = summed_edges(session_pairs(_events(spark, rows), config), min_weight=2.0).collect()
    assert {(r["src"], r["dst"]) for r in edges} == {("a", "b"), ("b", "a")}  # a(cart)-b = 3, c-d = 1 dropped


def test_transition_table_matches_networkx_stochastic_graph():
    items = np.array(["a", "b", "c", "d"], dtype=object)
    src, dst = np.array([0, 0, 1, 2, 2, 2]), np.array([1, 2, 0, 0, 1, 3])
    weight = np.array([1.0, 3.0, 2.0, 0.5, 0.5, 1.0])
    table = TransitionTable.from_edges(items, src, dst, weight)

    graph = nx.DiGraph()
    graph.add_nodes_from(items)
    graph.add_weighted_edges_from((items[s], items[d], w) for s, d, w in zip(src, dst, weight))
    stochastic = nx.stochastic_graph(graph, weight="weight")
    for item in items:
        expected = {nbr: data["weight"] for nbr, data in stochastic[item].items()}
        assert table[item] == pytest.approx(expected)
    assert table["d"] == {}  # a dead end
    assert set(table.to_networkx().edges) == set(graph.edges)


def test_transition_table_round_trips_through_files(tmp_path):
    items = np.array(["x", "y", "z"], dtype=object)
    table = TransitionTable.from_edges(items, np.array([0, 1, 1]), np.array([1, 0, 2]), np.array([1.0, 1.0, 3.0]))
    loaded = TransitionTable.load(table.save(tmp_path))
    assert dict(loaded) == dict(table)
    assert np.array_equal(loaded.alias_idx, table.alias_idx)


@pytest.mark.slow
def test_graph_stage_on_taobao_matches_networkx(spark, tmp_path):
    lake = Lake(tmp_path / "lake")
    ingest(spark, IngestConfig(input=dataset(TAOBAO), items_input=None, preset="taobao"), lake)
    window = resolve_window(WindowConfig(test_days=1), lake)
    result = build_graph(spark, GraphConfig(), lake, window, tmp_path / "graph")
    table = TransitionTable.load(tmp_path / "graph")

    assert result.nodes == table.n_nodes > 40000 and result.edges == table.n_edges > 50000
    graph = nx.DiGraph()
    for node in range(table.n_nodes):
        lo, hi = table.indptr[node], table.indptr[node + 1]
        graph.add_weighted_edges_from((table.item_ids[node], table.item_ids[j], float(w))
                                      for j, w in zip(table.indices[lo:hi], table.weights[lo:hi]))
    stochastic = nx.stochastic_graph(graph, weight="weight")
    rng = np.random.default_rng(0)
    for node in rng.choice(np.flatnonzero(table.out_degree() > 0), 500, replace=False):
        item = table.item_ids[node]
        assert table[item] == pytest.approx({n: d["weight"] for n, d in stochastic[item].items()}, rel=1e-5)
    # undirected co-occurrence: every edge exists both ways with the same weight
    assert all(graph[v][u]["weight"] == pytest.approx(d["weight"]) for u, v, d in list(graph.edges(data=True))[:2000])


@pytest.mark.slow
def test_edge_weights_are_exact_whatever_the_partitioning(spark):
    rng = np.random.default_rng(4)
    kinds = ["view", "cart", "purchase", "favorite"]
    rows = [(f"s{rng.integers(0, 40)}", f"i{rng.integers(0, 15)}", kinds[rng.integers(0, 4)], _t(int(m)))
            for m in rng.integers(0, 60, 3000)]
    config = GraphConfig(window=4, decay=0.7)
    events = _events(spark, rows)

    def edges(frame):
        return sorted(tuple(r) for r in summed_edges(session_pairs(frame, config), 0).collect())

    assert edges(events.repartition(1)) == edges(events.repartition(7, "item_id")) == edges(events.repartition(3))


@pytest.mark.slow
@pytest.mark.parametrize("window, decay", [(1, 1.0), (4, 0.7)])
def test_counting_pairs_per_weight_value_sums_as_the_exact_decimals_in_any_partitioning(spark, window, decay):
    events = _events(spark, _random_sessions(11, [2, 3, 5, 8, 13, 21, 34, 55] * 6))
    config = GraphConfig(window=window, decay=decay, max_session_length=100)
    values = pair_weight_values(spark, config)
    pairs = session_pairs(events, config)
    assert {r["weight"] for r in pairs.select("weight").distinct().collect()} <= set(values)
    exact = {(s, d): w for s, d, w in _rows(summed_edges(pairs, 0))}
    one, five = (_rows(summed_edges(session_pairs(events.repartition(n), config), 0, values)) for n in (1, 5))
    assert one == five  # bit for bit whatever the partitioning
    assert {(s, d) for s, d, _ in one} == set(exact)
    assert all(w == pytest.approx(exact[(s, d)], rel=1e-12) for s, d, w in one)
    partial = _rows(summed_edges(pairs, 0, values[1:]))  # a weight missing from the list still counts
    assert all(w == pytest.approx(exact[(s, d)], rel=1e-12) for s, d, w in partial) and len(partial) == len(exact)


@pytest.mark.slow
def test_validation_split_holds_out_whole_sessions_of_the_last_days(spark):
    from recsys.graph import ValidationSplit

    day = dt.date(2024, 3, 5)
    rows = []
    for n in range(400):
        first = day - dt.timedelta(days=1) if n % 2 else day  # odd sessions start the day before
        rows += [(f"s{n}", f"i{n % 7}", "view", dt.datetime.combine(first, dt.time(23, 50), dt.timezone.utc)),
                 (f"s{n}", f"i{(n + 1) % 7}", "view", dt.datetime.combine(day, dt.time(0, 5), dt.timezone.utc))]
    rows += [("early", "i1", "view", dt.datetime(2024, 3, 1, 10, tzinfo=dt.timezone.utc))]
    events = _events(spark, rows).withColumn("event_date", F.to_date("event_time"))
    split = ValidationSplit(day, day, 0.25, seed=3)
    held = {r["session_id"] for r in split.only(events).select("session_id").distinct().collect()}
    kept = split.without(events)
    assert 60 < len(held) < 140 and "early" not in held  # about a quarter of the sessions with an event that day
    assert not held & {r["session_id"] for r in kept.select("session_id").distinct().collect()}
    assert kept.count() + split.only(events).count() == events.count()  # whole sessions, both days
    again = ValidationSplit(day, day, 0.25, seed=3)
    assert held == {r["session_id"] for r in again.only(events).select("session_id").distinct().collect()}


@pytest.mark.parametrize("window, decay", [(1, 1.0), (3, 0.7), (5, 0.5)])
def test_session_pairs_equal_the_naive_self_join(spark, window, decay):
    lengths = [1, 2, 3, 4, 5, 6, 7, 9, 12, 17, 25, 40, 64, 1, 2, 3, 150]
    events = _events(spark, _random_sessions(window, lengths)).repartition(3)
    config = GraphConfig(window=window, decay=decay, max_session_length=max(lengths))
    pairs, naive = session_pairs(events, config), _naive_pairs(events, config)
    assert pairs.columns == naive.columns == ["src", "dst", "weight"]
    assert _rows(pairs) == _rows(naive)  # the same rows, weights bit for bit
    assert _rows(summed_edges(pairs, 0)) == _rows(summed_edges(naive, 0))


def test_a_session_of_20000_events_gives_every_pair_within_the_window(spark):
    length, window = 20_000, 3
    start = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    events = spark.range(length).select(
        F.lit("bot").alias("session_id"), F.concat(F.lit("i"), (F.col("id") % 3).cast("string")).alias("item_id"),
        F.lit("view").alias("event_type"),
        (F.lit(start) + F.make_dt_interval(secs=F.col("id").cast("decimal(18,6)"))).alias("event_time"))
    config = GraphConfig(window=window, max_session_length=length)
    # items cycle with period 3 = window: every pair at distance 3 is a self pair, the others are not
    expected = 2 * sum(length - d for d in range(1, window + 1)) - 2 * (length - 3)
    assert session_pairs(events, config).count() == expected
    assert session_pairs(events, config.model_copy(update={"max_session_length": length - 1})).count() == 0


@pytest.mark.slow
def test_sessions_longer_than_the_limit_give_no_pairs_and_are_counted(spark, tmp_path):
    rows = [(f"bot{b}", f"b{k % 4}", "view", dt.datetime(2024, 3, 1, 9, 0, k, tzinfo=dt.timezone.utc))
            for b in range(2) for k in range(30)]
    rows += [("s1", "a", "view", _t(0)), ("s1", "b", "cart", _t(1)), ("s1", "c", "view", _t(2)),
             ("s2", "a", "view", dt.datetime(2024, 3, 2, 8, tzinfo=dt.timezone.utc)),
             ("s2", "c", "purchase", dt.datetime(2024, 3, 2, 8, 1, tzinfo=dt.timezone.utc)),
             ("s3", "a", "view", dt.datetime(2024, 3, 3, 8, tzinfo=dt.timezone.utc)),  # the test day
             ("s3", "b", "view", dt.datetime(2024, 3, 3, 8, 1, tzinfo=dt.timezone.utc))]
    config = GraphConfig(window=2, decay=0.5, max_session_length=20)
    short = [r for r in rows if not r[0].startswith("bot")]
    pairs = session_pairs(_events(spark, rows), config)
    assert _rows(pairs) == _rows(_naive_pairs(_events(spark, short), config))
    assert not {r["src"] for r in pairs.collect()} & {"b0", "b1", "b2", "b3"}

    lake = Lake(tmp_path / "lake")
    _write_lake_events(lake, rows)
    window = resolve_window(WindowConfig(test_days=1, run_date_rule="last_day"), lake)  # the 2-event test day is whole
    result = build_graph(spark, config, lake, window, tmp_path / "graph")
    assert (result.long_sessions, result.long_session_events) == (2, 60)
    assert result.train_events == 65  # the item statistics still count every training event
    table = TransitionTable.load(tmp_path / "graph")
    # s1: a-b 3, b-c 3, a-c 1 * 0.5 (two views); s2: a-c 5
    assert table["a"] == pytest.approx({"b": 3 / 8.5, "c": 5.5 / 8.5})
    assert all(table[f"b{k}"] == {} for k in range(4))
    assert GraphResult("p", 1, 2, 3, 0).long_session_events == 0  # new fields last, with defaults

    relaxed = build_graph(spark, config.model_copy(update={"max_session_length": 30}), lake, window, tmp_path / "all")
    assert (relaxed.long_sessions, relaxed.long_session_events) == (0, 0)
    assert TransitionTable.load(tmp_path / "all")["b0"] != {}
