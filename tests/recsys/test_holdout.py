"""The evaluation holdout: sampled non-pairs and catalogue indices without Spark, then the whole holdout
on Spark from a tiny hand-made lake whose co-occurring pairs are known by hand."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.catalog import build_catalog
from recsys.config import EvaluateConfig, GraphConfig
from recsys.holdout import _indexed, _with_negatives, build_holdout, load_holdout
from recsys.lake import Lake
from recsys.timewindow import TimeWindow
from recsys.transition import TransitionTable

UTC = dt.timezone.utc


def _pairs(pairs: list[tuple[str, str]]) -> pa.Table:
    return pa.table({"src": pa.array([a for a, _ in pairs], pa.string()), "dst": pa.array([b for _, b in pairs], pa.string())})


def _pool(items: str) -> np.ndarray:
    return np.array(sorted(items), dtype=object)


def _split_rows(table: pa.Table) -> tuple[list[tuple], list[tuple]]:
    rows = list(zip(table.column("src").to_pylist(), table.column("dst").to_pylist(), table.column("label").to_pylist()))
    return [r[:2] for r in rows if r[2] == 1], [r[:2] for r in rows if r[2] == 0]


# --- _with_negatives -------------------------------------------------------------------------------

POSITIVES = [("a", "b"), ("a", "c"), ("b", "c"), ("b", "d"), ("e", "f"), ("a", "g")]
POOL = "abcdefgh"


@pytest.mark.parametrize("seed", range(40))
def test_each_positive_gets_one_negative_never_itself_never_linked(seed):
    table = _with_negatives(_pairs(POSITIVES), _pool(POOL), seed)
    positives, negatives = _split_rows(table)
    assert positives == POSITIVES  # kept as given, in order
    assert [a for a, _ in negatives] == [a for a, _ in POSITIVES]  # (a, b) -> (a, c), one each
    linked = set(POSITIVES) | {(b, a) for a, b in POSITIVES}
    for a, c in negatives:
        assert c != a and (a, c) not in linked and c in POOL, (a, c)
    assert table.schema.field("label").type == pa.int8()


def test_negatives_are_deterministic_for_a_seed():
    first = _with_negatives(_pairs(POSITIVES), _pool(POOL), 7)
    assert first.equals(_with_negatives(_pairs(POSITIVES), _pool(POOL), 7))
    others = [_split_rows(_with_negatives(_pairs(POSITIVES), _pool(POOL), s))[1] for s in (8, 9, 10)]
    assert any(o != _split_rows(first)[1] for o in others)  # the seed matters


def test_negatives_are_uniform_over_the_allowed_items():
    table = _with_negatives(_pairs([("a", "b")] * 3000), _pool("abcde"), 3)
    counts = Counter(c for _, c in _split_rows(table)[1])
    assert set(counts) == {"c", "d", "e"}
    assert all(abs(n / 3000 - 1 / 3) < 0.03 for n in counts.values()), counts


def test_no_positives_no_negatives():
    table = _with_negatives(_pairs([]), _pool("abc"), 1)
    assert table.num_rows == 0 and table.column_names == ["src", "dst", "label"]


@pytest.mark.xfail(strict=True, reason="holdout._with_negatives keeps its 100th rejected draw when no item is "
                                       "allowed, so a linked item (here a positive) is emitted as a non-pair")
def test_a_positive_without_any_allowed_negative_never_gets_a_linked_one():
    # One test-day session a, b, c: every item co-occurs with every other; nothing can be a non-pair.
    table = _with_negatives(_pairs([("a", "b"), ("a", "c"), ("b", "c")]), _pool("abc"), 1)
    linked = {("a", "b"), ("a", "c"), ("b", "c"), ("b", "a"), ("c", "a"), ("c", "b")}
    assert all(c != a and (a, c) not in linked for a, c in _split_rows(table)[1])


# --- _indexed --------------------------------------------------------------------------------------

def _catalog():
    """Nodes n0, n1, n2 (n1 with side information); cold items c0, c1; x has an items row without side information."""
    ids = np.array(["n0", "n1", "n2"], dtype=object)
    table = TransitionTable.from_edges(ids, np.array([0, 1]), np.array([1, 0]), np.ones(2))
    items = pa.table({"item_id": ["c1", "n1", "c0", "x"], "category": ["k", "k", None, None],
                      "brand": [None, None, "z", None], "price": pa.array([None, 2.0, None, None], pa.float64())})
    return build_catalog(table, items)


def test_indexed_gives_catalogue_indices_and_the_split():
    catalog = _catalog()
    assert catalog.item_ids.tolist() == ["n0", "n1", "n2", "c0", "c1"] and catalog.n_nodes == 3
    pairs = pa.table({"src": ["n0", "n2", "n0", "c0", "x", "n1"], "dst": ["n1", "n0", "c1", "c1", "n0", "zz"],
                      "label": pa.array([1, 0, 1, 0, 1, 0], pa.int8())})
    out = _indexed(pairs, catalog)
    assert out.select(["src", "dst", "label"]).equals(pairs)  # the pairs themselves untouched, in order
    assert out.column("a").to_pylist() == [0, 2, 0, 3, -1, 1]
    assert out.column("b").to_pylist() == [1, 0, 4, 4, 0, -1]
    assert out.column("split").to_pylist() == ["seen", "seen", "cold", "cold", "unknown", "unknown"]
    assert out.schema.field("a").type == pa.int64() and out.schema.field("split").type == pa.string()


# --- build_holdout on a tiny lake ------------------------------------------------------------------

COLUMNS = ("event_time", "user_id", "session_id", "item_id", "event_type", "source_file")


def _lake(root: Path, events: list[tuple[str, str, str]]) -> Lake:
    """Canonical events from (ISO time in UTC, session, item) rows, one Parquet file per event day."""
    by_day: dict[str, list[tuple]] = {}
    for when, session, item in events:
        moment = dt.datetime.fromisoformat(when).replace(tzinfo=UTC)
        by_day.setdefault(moment.date().isoformat(), []).append((moment, f"u-{session}", session, item, "view", "raw.csv"))
    lake = Lake(root)
    for day, rows in by_day.items():
        folder = lake.events / f"event_date={day}"
        folder.mkdir(parents=True)
        types = [pa.timestamp("us", tz="UTC")] + [pa.string()] * (len(COLUMNS) - 1)
        table = pa.table({name: pa.array(values, kind) for name, kind, values in zip(COLUMNS, types, zip(*rows))})
        pq.write_table(table, folder / "part.parquet")
    return lake


WINDOW = TimeWindow(train_from=dt.date(2024, 3, 1), test_from=dt.date(2024, 3, 2), run_date=dt.date(2024, 3, 3))
EVENTS = [  # listed out of time order on purpose
    ("2024-03-02T10:03:00", "s1", "d"), ("2024-03-02T10:00:00", "s1", "a"), ("2024-03-02T10:02:00", "s1", "c"),
    ("2024-03-02T10:01:00", "s1", "b"),  # s1: a b c d -> window 2: ab ac bc bd cd (not ad)
    # s2: b a b -> ab again; b-b (distance 2) is no pair
    ("2024-03-03T09:00:00", "s2", "b"), ("2024-03-03T09:01:00", "s2", "a"), ("2024-03-03T09:02:00", "s2", "b"),
    ("2024-03-03T11:00:00", "s3", "e"),  # a lone event: in the pool, in no pair
    # s4 crosses midnight into the test days: x is a training event, so only yz
    ("2024-03-01T23:59:00", "s4", "x"), ("2024-03-02T00:01:00", "s4", "y"), ("2024-03-02T00:02:00", "s4", "z"),
    ("2024-03-01T12:00:00", "t1", "p"), ("2024-03-01T12:01:00", "t1", "q"),  # a training day pair
    ("2024-03-04T08:00:00", "t2", "u"), ("2024-03-04T08:01:00", "t2", "v"),  # after the run date
]
TEST_PAIRS = {("a", "b"), ("a", "c"), ("b", "c"), ("b", "d"), ("c", "d"), ("y", "z")}
TEST_ITEMS = set("abcdeyz")


def _graph_catalog():
    """Training nodes a b c p q x; d is a cold item (side information only); e y z are unknown."""
    ids = np.array(["a", "b", "c", "p", "q", "x"], dtype=object)
    table = TransitionTable.from_edges(ids, np.array([3, 4]), np.array([4, 3]), np.ones(2))
    return build_catalog(table, pa.table({"item_id": ["d"], "category": ["k"]}))


def test_holdout_is_the_test_days_pairs_with_as_many_non_pairs(spark, tmp_path):
    lake = _lake(tmp_path / "lake", EVENTS)
    result = build_holdout(spark, lake, WINDOW, GraphConfig(window=2), EvaluateConfig(), _graph_catalog(), seed=5,
                           out=tmp_path / "holdout")
    table = load_holdout(tmp_path / "holdout")
    positives, negatives = _split_rows(table)

    assert (result.test_events, result.positives, result.negatives) == (10, 6, 6)
    assert sorted(positives) == sorted(TEST_PAIRS) and all(a < b for a, b in positives)
    assert sorted(a for a, _ in negatives) == sorted(a for a, _ in positives)
    linked = TEST_PAIRS | {(b, a) for a, b in TEST_PAIRS}
    assert all(c in TEST_ITEMS and c != a and (a, c) not in linked for a, c in negatives), negatives
    indexed = {(r["src"], r["dst"]): (r["a"], r["b"], r["split"]) for r in table.to_pylist() if r["label"] == 1}
    # catalogue: nodes a b c p q x are 0..5, cold d is 6; e y z are unknown (-1)
    assert indexed == {("a", "b"): (0, 1, "seen"), ("a", "c"): (0, 2, "seen"), ("b", "c"): (1, 2, "seen"),
                       ("b", "d"): (1, 6, "cold"), ("c", "d"): (2, 6, "cold"), ("y", "z"): (-1, -1, "unknown")}
    assert result.path == str(tmp_path / "holdout")


def test_a_test_day_without_co_occurrences_gives_an_empty_holdout(spark, tmp_path):
    lake = _lake(tmp_path / "lake", [("2024-03-01T10:00:00", "t", "p"), ("2024-03-01T10:01:00", "t", "q"),
                                     ("2024-03-02T10:00:00", "s1", "a"), ("2024-03-03T10:00:00", "s2", "b")])
    result = build_holdout(spark, lake, WINDOW, GraphConfig(), EvaluateConfig(), _graph_catalog(), seed=1,
                           out=tmp_path / "holdout")
    assert (result.test_events, result.positives, result.negatives) == (2, 0, 0)
    assert load_holdout(tmp_path / "holdout").num_rows == 0


# A hub: a co-occurs with each of b01..b12 in two-event sessions (12 pairs, all anchored at a); f is a lone
# event, the only item that never co-occurs with a.
HUB_EVENTS = [(f"2024-03-02T10:{n:02d}:00", f"s{n}", item) for n in range(1, 13) for item in ("a", f"b{n:02d}")]
HUB_EVENTS += [("2024-03-03T10:00:00", "lone", "f"), ("2024-03-01T10:00:00", "t", "p"), ("2024-03-01T10:01:00", "t", "q")]
HUB_PAIRS = {("a", f"b{n:02d}") for n in range(1, 13)}


def _hub_holdout(spark, lake: Lake, seed: int, out: Path) -> pa.Table:
    build_holdout(spark, lake, WINDOW, GraphConfig(), EvaluateConfig(max_pairs=10), _graph_catalog(), seed, out)
    return load_holdout(out)


@pytest.fixture(scope="module")
def hub(spark, tmp_path_factory) -> tuple[Lake, pa.Table]:
    """The hub lake and its holdout with seed 11, built once for the tests below (neither changes them)."""
    root = tmp_path_factory.mktemp("hub")
    lake = _lake(root / "lake", HUB_EVENTS)
    return lake, _hub_holdout(spark, lake, 11, root / "holdout")


def test_max_pairs_caps_the_positives_with_a_seeded_choice(spark, hub, tmp_path):
    lake, table = hub
    positives, negatives = _split_rows(table)
    assert len(positives) == len(set(positives)) == 10 and set(positives) <= HUB_PAIRS
    assert len(negatives) == 10 and all(a == "a" and c != "a" for a, c in negatives)
    assert _hub_holdout(spark, lake, 11, tmp_path / "again").equals(table)


@pytest.mark.xfail(strict=True, reason="holdout: negatives avoid only the positives kept under max_pairs, so a "
                                       "co-occurring pair that the cap dropped can be sampled as a non-pair")
def test_non_pairs_never_co_occur_even_when_max_pairs_drops_some(hub):
    _, negatives = _split_rows(hub[1])
    # allowed for anchor a: f only (b01..b12 all co-occur with a); the buggy draw takes a dropped b 2 times in 3
    assert [c for _, c in negatives] == ["f"] * 10
