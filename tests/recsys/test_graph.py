"""Graph stage on real Spark: edge weights by hand, the transition table against networkx."""

from __future__ import annotations

import datetime as dt

import networkx as nx
import numpy as np
import pytest
from pyspark.sql import functions as F

from recsys.config import GraphConfig, IngestConfig, WindowConfig
from recsys.graph import build_graph, session_pairs, summed_edges
from recsys.ingest import ingest
from recsys.lake import Lake
from recsys.timewindow import resolve_window
from recsys.transition import TransitionTable
from tests.conftest import TAOBAO, dataset


def _events(spark, rows):
    return spark.createDataFrame(rows, "session_id string, item_id string, event_type string, event_time timestamp")


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
