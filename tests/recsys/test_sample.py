"""The embedded sample: deterministic, committed as generated, with the planted structure recoverable."""

from __future__ import annotations

import gzip
import re
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recsys.sample import generate_sample, main, product_line_of, write_sample
from tests.conftest import SAMPLE

GAP = 30 * 60  # the ingest stage's default session gap, seconds


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def sample() -> tuple[pa.Table, pa.Table]:
    return generate_sample()


@pytest.fixture(scope="module")
def sessions(sample) -> list[list[tuple[str, str]]]:
    """Each user's events cut at a 30-minute gap: per session, (item_id, event_type) in time order."""
    events, _ = sample
    seconds = events.column("timestamp").cast(pa.int64()).to_numpy() // 1_000_000
    users = events.column("user_id").to_numpy(zero_copy_only=False)
    order = np.lexsort((np.arange(len(users)), seconds, users))  # stable: keeps the file's order on ties
    seconds, users = seconds[order], users[order]
    starts = np.r_[True, (users[1:] != users[:-1]) | (np.diff(seconds) > GAP)]
    items = events.column("item_id").to_numpy(zero_copy_only=False)[order]
    kinds = events.column("event_type").to_numpy(zero_copy_only=False)[order]
    cut: list[list[tuple[str, str]]] = []
    for start, item, kind in zip(starts, items, kinds):
        if start:
            cut.append([])
        cut[-1].append((item, kind))
    return cut


def _lines(path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def test_committed_sample_is_what_the_generator_writes(written):
    events, items = written
    assert events.read_bytes() == (SAMPLE / "events.csv.gz").read_bytes()
    assert items.read_bytes() == (SAMPLE / "items.csv.gz").read_bytes()
    assert events.stat().st_size + items.stat().st_size < 4 * 2**20


def test_writing_twice_gives_identical_bytes(written, tmp_path):
    again = write_sample(tmp_path, seed=7)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]


def test_cli_with_another_seed_writes_other_files(written, tmp_path, capsys):
    main(["--out", str(tmp_path / "other"), "--seed", "8"])
    events, items = tmp_path / "other" / "events.csv.gz", tmp_path / "other" / "items.csv.gz"
    assert "events.csv.gz" in capsys.readouterr().out
    assert events.read_bytes() != written[0].read_bytes() and items.read_bytes() != written[1].read_bytes()


def test_same_seed_same_tables_other_seed_other_tables():
    small = {"n_users": 200, "n_items": 300, "days": 5}
    a, b, c = (generate_sample(seed=s, **small) for s in (3, 3, 4))
    assert a[0].equals(b[0]) and a[1].equals(b[1])
    assert not a[0].equals(c[0]) and not a[1].equals(c[1])
    days = pc.strftime(a[0].column("timestamp"), "%Y-%m-%d")
    assert pc.min(days).as_py() == "2024-03-01" and pc.max(days).as_py() <= "2024-03-06"


def test_columns_types_and_formats(sample, written):
    events, items = sample
    assert events.schema == pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("user_id", pa.string()),
                                       ("item_id", pa.string()), ("event_type", pa.string())])
    assert items.schema == pa.schema([("item_id", pa.string()), ("category", pa.string()), ("brand", pa.string()),
                                      ("price", pa.float64()), ("product_line", pa.int32())])
    assert all(column.null_count == 0 for table in (events, items) for column in table.columns)

    event_lines, item_lines = _lines(written[0]), _lines(written[1])
    assert event_lines[0] == "timestamp,user_id,item_id,event_type" and len(event_lines) == events.num_rows + 1
    assert item_lines[0] == "item_id,category,brand,price" and len(item_lines) == items.num_rows + 1
    row = re.compile(r"2024-03-(0[1-9]|1[0-4])T\d\d:\d\d:\d\dZ,u\d{5},i\d{4},(view|cart|purchase)")
    assert all(row.fullmatch(line) for line in event_lines[1:])
    assert all(re.fullmatch(r"i\d{4},c\d\d,b\d{3},\d+\.\d\d", line) for line in item_lines[1:])
    first = event_lines[1].split(",")
    assert first[0] == events.column("timestamp")[0].as_py().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first[1:] == [events.column(c)[0].as_py() for c in ("user_id", "item_id", "event_type")]


def test_rows_sorted_and_counts_in_range(sample):
    events, items = sample
    rows = list(zip(*(events.column(c).to_pylist() for c in events.column_names)))
    assert rows == sorted(rows)
    assert 100_000 <= events.num_rows <= 150_000
    assert pc.count_distinct(events.column("user_id")).as_py() == 3000
    assert items.num_rows == 2000 and pc.count_distinct(items.column("item_id")).as_py() == 2000
    assert set(events.column("item_id").to_pylist()) <= set(items.column("item_id").to_pylist())
    assert pc.count_distinct(items.column("category")).as_py() == 20
    days = pc.strftime(events.column("timestamp"), "%Y-%m-%d")
    assert pc.min(days).as_py() == "2024-03-01" and pc.max(days).as_py() == "2024-03-14"
    counts = Counter(events.column("event_type").to_pylist())
    assert set(counts) == {"view", "cart", "purchase"}
    assert 0.06 < counts["cart"] / counts["view"] < 0.10 and 0.30 < counts["purchase"] / counts["cart"] < 0.40


def test_catalogue_structure(sample):
    _, items = sample
    line = product_line_of(items)
    category = dict(zip(items.column("item_id").to_pylist(), items.column("category").to_pylist()))
    brand = dict(zip(items.column("item_id").to_pylist(), items.column("brand").to_pylist()))
    members: dict[int, list[str]] = defaultdict(list)
    for item, number in line.items():
        members[number].append(item)
    assert {len(m) for m in members.values()} <= set(range(8, 11))
    assert all(len({category[i] for i in m}) == 1 for m in members.values())  # a line lies inside one category
    brands_per_category: dict[str, set[str]] = defaultdict(set)
    for item, c in category.items():
        brands_per_category[c].add(brand[item])
    assert all(2 <= len(b) <= 5 for b in brands_per_category.values())
    price = np.array(items.column("price").to_pylist())
    assert (price > 0).all() and np.allclose(price, np.round(price, 2))
    by_category = defaultdict(list)
    for c, p in zip(items.column("category").to_pylist(), price):
        by_category[c].append(p)
    medians = [np.median(p) for p in by_category.values()]
    assert max(medians) > 2 * min(medians)  # the price level depends on the category


def test_sessions_at_a_30_minute_gap_recover_the_planted_ones(sample, sessions):
    events, items = sample
    seconds = events.column("timestamp").cast(pa.int64()).to_numpy() // 1_000_000
    users = events.column("user_id").to_numpy(zero_copy_only=False)
    order = np.lexsort((seconds, users))
    same_user = users[order][1:] == users[order][:-1]
    gaps = np.diff(seconds[order])[same_user]
    assert gaps.min() > 0 and not ((gaps >= 240) & (gaps <= 2 * 3600)).any()  # minutes inside, hours between

    category = dict(zip(items.column("item_id").to_pylist(), items.column("category").to_pylist()))
    line = product_line_of(items)
    views = [[item for item, kind in s if kind == "view"] for s in sessions]
    assert all(3 <= len(v) <= 15 for v in views)
    assert 8_000 < len(sessions) < 15_000
    in_category = [Counter(category[i] for i, _ in s).most_common(1)[0][1] / len(s) for s in sessions]
    in_line = [Counter(line[i] for i in v).most_common(1)[0][1] / len(v) for v in views]
    assert np.mean(in_category) > 0.9 and np.mean(in_line) > 0.65


def test_funnel_order_inside_every_session(sessions):
    for session in sessions:
        seen: set[tuple[str, str]] = set()
        for item, kind in session:
            need = {"cart": "view", "purchase": "cart"}.get(kind)
            assert need is None or (item, need) in seen, (item, kind, session)
            seen.add((item, kind))


def test_popularity_is_long_tailed(sample):
    events, _ = sample
    viewed = events.filter(pc.equal(events.column("event_type"), "view")).column("item_id").to_pylist()
    views = sorted(Counter(viewed).values(), reverse=True)
    assert views[0] > 20 * views[len(views) // 2]
    assert sum(views[: len(views) // 10]) > 0.4 * sum(views)  # the top 10% of items get a large share
