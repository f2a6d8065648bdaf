"""The sequences the graph stage writes and the evaluate stage's test sessions, on Spark, against a
plain Python reading of the same lake (YooChoose clicks: real sessions; and a hand-made lake for types)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys.catalog import Catalog
from recsys.config import GraphConfig, IngestConfig, SequencesConfig, WindowConfig
from recsys.graph import build_graph, session_sequences
from recsys.holdout import next_item_sessions
from recsys.ingest import ingest
from recsys.lake import Lake
from recsys.sequences import load_sequences
from recsys.timewindow import resolve_window
from tests.conftest import DATASETS

YOOCHOOSE_TEST = DATASETS / "yoochoose" / "yoochoose-clicks-100k_test.txt"


def _reference(lake: Lake, first: dt.date, last: dt.date, item_index: dict[str, int], collapse: bool) -> list:
    """(user, item indices in time order, ties by item id) per session, unknown items dropped, repeats collapsed."""
    events = pq.read_table(lake.events).to_pylist()
    by_session, user_of = defaultdict(list), {}
    for e in events:
        if str(first) <= str(e["event_date"]) <= str(last):
            by_session[e["session_id"]].append((e["event_time"], e["item_id"], e["event_type"]))
            user_of[e["session_id"]] = e["user_id"]
    out = []
    for session, rows in by_session.items():
        items = [item_index[i] for _, i, _ in sorted(rows) if i in item_index]
        if collapse:
            items = [x for n, x in enumerate(items) if n == 0 or x != items[n - 1]]
        if items:
            out.append((user_of[session], items))
    return sorted(out)


@pytest.mark.slow
def test_graph_stage_writes_the_windows_sessions_as_sequences(spark, tmp_path):
    lake = Lake(tmp_path / "lake")
    ingest(spark, IngestConfig(input=YOOCHOOSE_TEST, items_input=None, preset="gru4rec"), lake)
    window = resolve_window(WindowConfig(test_days=1, train_days=30, run_date_rule="last_day"), lake)
    result = build_graph(spark, GraphConfig(max_session_length=10_000), lake, window, tmp_path / "graph",
                         sequences=SequencesConfig())
    sequences, catalog = load_sequences(tmp_path / "graph"), Catalog.load(tmp_path / "graph")
    assert result.sequences == len(sequences) > 500

    index = {item: i for i, item in enumerate(catalog.item_ids)}
    expected = _reference(lake, window.train_from, window.train_until, index, collapse=True)
    assert sorted((str(u), sequences.sequence(s).tolist()) for s, u in enumerate(sequences.users)) == expected
    assert np.all(np.diff(sequences.starts) >= 0)  # in time order, as session-parallel batches take them

    tests = next_item_sessions(spark, lake, window, SequencesConfig(), catalog, 10_000, 100_000, seed=0)
    known = _reference(lake, window.test_from, window.run_date, {i: n for i, n in index.items() if n < catalog.n_nodes},
                       collapse=True)
    assert sorted(tests.sequence(s).tolist() for s in range(len(tests))) == sorted(v for _, v in known if len(v) >= 2)


def test_event_types_and_repeats_are_chosen_by_the_settings(spark, tmp_path):
    def at(minute):
        return dt.datetime(2024, 3, 1, 10, minute, tzinfo=dt.timezone.utc)

    rows = [("s1", "u1", "a", "view", at(0)), ("s1", "u1", "a", "view", at(1)), ("s1", "u1", "b", "cart", at(2)),
            ("s1", "u1", "c", "view", at(3)), ("s2", "u2", "c", "purchase", at(4)), ("s2", "u2", "a", "view", at(5))]
    events = spark.createDataFrame(rows, "session_id string, user_id string, item_id string, event_type string, "
                                         "event_time timestamp")
    ids = np.array(["a", "b", "c"], dtype=object)
    every = session_sequences(events, SequencesConfig(), ids)
    assert [every.sequence(s).tolist() for s in range(len(every))] == [[0, 1, 2], [2, 0]]
    kept = session_sequences(events, SequencesConfig(collapse_repeats=False), ids)
    assert kept.sequence(0).tolist() == [0, 0, 1, 2]
    views = session_sequences(events, SequencesConfig(event_types=("view",)), ids)
    assert [views.sequence(s).tolist() for s in range(len(views))] == [[0, 2], [0]]
    assert views.users.tolist() == ["u1", "u2"] and every.starts[1] - every.starts[0] == 240
    assert len(session_sequences(events, SequencesConfig(), ids, max_length=3)) == 1  # s1 has 4 events
