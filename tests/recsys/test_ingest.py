"""Ingest on real Spark: accounting with malformed rows, formats, sessions, manifest, presets."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recsys import ingest as ingest_module
from recsys.config import ColumnMapping, IngestConfig
from recsys.ingest import IngestRejected, ingest
from recsys.lake import Lake, read_parquet_dir
from tests.conftest import DATASETS, TAOBAO, dataset

NOW = dt.datetime(2024, 3, 20, tzinfo=dt.timezone.utc)
HEADER = "timestamp,user_id,item_id,event_type\n"
GOOD = [
    "2024-03-01T10:00:00Z,u1,a,view",
    "2024-03-01T10:05:00Z,u1,b,view",
    "2024-03-01T10:06:00Z,u1,b,cart",
    "2024-03-01T12:00:00Z,u1,c,view",  # > 30 min later: a new session
    "2024-03-02T09:00:00Z,u2,a,view",
]
BAD = {
    "2024-03-01T10:00:00Z,u3,a": "expected 4 fields, got 3",
    "not-a-time,u3,a,view": "unparseable timestamp",
    "2024-03-01T10:00:00Z,,a,view": "null user id",
    "2024-03-01T10:00:00Z,u3,NA,view": "null item id",
    "2024-03-01T10:00:00Z,u3,a,teleport": "unknown event type: teleport",
    "2099-01-01T00:00:00Z,u3,a,view": "in the future",
    f"2024-03-01T10:00:00Z,{'x' * 300},a,view": "user id longer than",
}


def _data_lines(path: Path) -> int:
    """Lines after the header, counting a last line without a newline."""
    return len(path.read_text().splitlines()) - 1


def _config(path: Path, **kwargs) -> IngestConfig:
    return IngestConfig(input=path, items_input=None, preset="sample", **kwargs)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.slow
def test_accounting_balances_with_malformed_rows(spark, tmp_path):
    more = [f"2024-03-0{day}T08:00:00Z,u9,z{day},view" for day in (3, 4, 5)]  # good rows: a batch mostly quarantined is rejected
    rows = GOOD + more + [GOOD[0]] + list(BAD)  # one exact duplicate
    raw = _write(tmp_path / "in" / "log.csv", HEADER + "\n".join(rows) + "\n")
    lake = Lake(tmp_path / "lake")

    result = ingest(spark, _config(raw), lake, now=NOW)

    assert (result.rows_read, result.rows_accepted, result.rows_quarantined, result.rows_duplicate) == (16, 8, 7, 1)
    assert result.balanced
    quarantine = read_parquet_dir(lake.quarantine).to_pylist()
    by_raw = {row["raw"]: row for row in quarantine}
    for text, reason in BAD.items():
        assert reason in by_raw[text]["reason"], (text, by_raw[text]["reason"])
        assert by_raw[text]["source_file"] == str(raw.resolve())
    assert by_raw["not-a-time,u3,a,view"]["line"] == 1 + len(GOOD) + len(more) + 1 + 2  # header + good + duplicate + 2nd bad


def test_events_follow_the_canonical_contract(spark, tmp_path):
    raw = _write(tmp_path / "log.csv", HEADER + "\n".join(GOOD) + "\n")
    lake = Lake(tmp_path / "lake")
    ingest(spark, _config(raw), lake, now=NOW)

    events = pq.read_table(lake.events, partitioning="hive")
    assert events.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert {f.name for f in events.schema} == {"event_time", "user_id", "session_id", "item_id", "event_type",
                                               "source_file", "event_date"}
    assert sorted(p.name for p in lake.events.iterdir() if p.is_dir()) == ["event_date=2024-03-01", "event_date=2024-03-02"]
    for column in ("event_time", "user_id", "session_id", "item_id", "event_type", "source_file"):
        assert events.column(column).null_count == 0
    sessions = Counter(zip(events.column("user_id").to_pylist(), events.column("session_id").to_pylist()))
    assert sorted(sessions.values()) == [1, 1, 3]  # u1: 3 events then a gap of 114 min; u2: one event


def test_the_first_copy_by_file_and_line_is_kept_and_copies_do_not_move_sessions(spark, tmp_path):
    folder = tmp_path / "in"
    _write(folder / "a.csv", HEADER + "2024-03-01T10:00:00Z,u1,x,view\n2024-03-01T10:40:00Z,u1,y,view\n")
    _write(folder / "b.csv", HEADER + "\n".join([
        "2024-03-01T10:40:00Z,u1,y,view",  # copy of a.csv line 3
        "2024-03-01T10:40:00Z,u1,y,cart",  # same time, another type: an event of its own
        "2024-03-01T10:00:00Z,u1,x,view",  # two copies of a.csv line 2
        "2024-03-01T10:00:00Z,u1,x,view",
        "2024-03-01T11:05:00Z,u1,z,view",  # 25 min after 10:40: same session
    ]) + "\n")
    lake = Lake(tmp_path / "lake")

    result = ingest(spark, _config(folder), lake, now=NOW)

    assert (result.rows_read, result.rows_accepted, result.rows_duplicate) == (7, 4, 3)
    events = pq.read_table(lake.events, partitioning="hive").to_pylist()
    kept = {(e["item_id"], e["event_type"]): (Path(e["source_file"]).name, e["session_id"]) for e in events}
    assert kept == {("x", "view"): ("a.csv", "u1@20240301T100000"), ("y", "view"): ("a.csv", "u1@20240301T104000"),
                    ("y", "cart"): ("b.csv", "u1@20240301T104000"), ("z", "view"): ("b.csv", "u1@20240301T104000")}


def test_per_file_counts_quarantine_the_valid_rows_outside_the_time_limits():
    day = 19_800  # days since 1970-01-01
    counts = [ingest_module._Count("a", day, "valid", 5), ingest_module._Count("a", day + 9, "valid", 2),
              ingest_module._Count("a", day - 31, "valid", 3), ingest_module._Count("a", None, "bad", 1),
              ingest_module._Count("b", None, "broke", 1), ingest_module._Count("b", day - 30, "valid", 4)]

    assert ingest_module._per_file_counts(counts, day, max_late_days=30) == {"a": (11, 6), "b": (5, 1)}
    assert ingest_module._per_file_counts(counts, None, max_late_days=30) == {"a": (11, 1), "b": (5, 1)}
    assert ingest_module._valid_rows_by_day(counts) == {day: 5, day + 9: 2, day - 31: 3, day - 30: 4}


def test_second_run_over_same_folder_ingests_nothing(spark, tmp_path):
    folder = tmp_path / "in"
    _write(folder / "day1.csv", HEADER + "\n".join(GOOD[:3]) + "\n")
    _write(folder / "copy-of-day1.csv", HEADER + "\n".join(GOOD[:3]) + "\n")  # same bytes, second name
    lake = Lake(tmp_path / "lake")

    first = ingest(spark, _config(folder), lake, now=NOW)
    second = ingest(spark, _config(folder), lake, now=NOW)
    _write(folder / "day2.csv", HEADER + GOOD[4] + "\n")
    third = ingest(spark, _config(folder), lake, now=NOW)

    assert (first.files_ingested, first.rows_accepted) == (1, 3)
    assert (second.files_ingested, second.rows_read) == (0, 0)
    assert (third.files_ingested, third.rows_accepted) == (1, 1)
    assert read_parquet_dir(lake.events).num_rows == 4


def test_jsonl_gzip_and_parquet_inputs(spark, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    records = [dict(zip(["timestamp", "user_id", "item_id", "event_type"], r.split(","))) for r in GOOD]
    with gzip.open(folder / "a.jsonl.gz", "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in records[:3]) + "\n{broken json\n")
    pq.write_table(pa.Table.from_pylist(records[3:]), folder / "b.parquet")

    result = ingest(spark, _config(folder), Lake(tmp_path / "lake"), now=NOW)

    assert (result.rows_read, result.rows_accepted, result.rows_quarantined) == (6, 5, 1)


def test_file_missing_a_required_column_is_quarantined_whole(spark, tmp_path):
    raw = _write(tmp_path / "log.csv", "timestamp,user_id,event_type\n2024-03-01T10:00:00Z,u1,view\n")
    lake = Lake(tmp_path / "lake")
    with pytest.raises(IngestRejected, match="1 of 1 rows read were quarantined"):
        ingest(spark, _config(raw), lake, now=NOW)
    reason = read_parquet_dir(lake.quarantine).column("reason")[0].as_py()
    assert "lacks required column" in reason and "item_id" in reason


def test_custom_mapping_with_session_column_and_side_information(spark, tmp_path):
    raw = _write(tmp_path / "log.tsv", "when\twho\twhat\tsess\tcat\n1709287200\tu1\ta\ts1\tshoes\n1709287260\tu1\tb\ts1\t\n")
    mapping = ColumnMapping(delimiter="\t", user_id="who", item_id="what", event_time="when", time_format="unix_s",
                            event_type=None, session_id="sess", category="cat")
    lake = Lake(tmp_path / "lake")
    result = ingest(spark, IngestConfig(input=raw, items_input=None, preset=None, mapping=mapping), lake, now=NOW)
    events = read_parquet_dir(lake.events)
    assert result.rows_accepted == 2
    assert set(events.column("session_id").to_pylist()) == {"s1"}
    assert set(events.column("event_type").to_pylist()) == {"view"}
    items = {r["item_id"]: r["category"] for r in read_parquet_dir(lake.items).to_pylist()}
    assert items == {"a": "shoes", "b": None}


@pytest.mark.slow
def test_taobao_preset_quarantines_stray_rows(spark, tmp_path):
    lake = Lake(tmp_path / "lake")
    config = IngestConfig(input=dataset(TAOBAO), items_input=None, preset="taobao")
    result = ingest(spark, config, lake)

    assert result.rows_read == 84287 and result.balanced
    start = 1511539200  # 2017-11-25 00:00 China time (UTC+8), the log's documented start
    with open(TAOBAO) as handle:
        expected = sum(1 for line in list(handle)[1:] if int(line.rsplit(",", 1)[1]) < start)
    reasons = Counter(read_parquet_dir(lake.quarantine).column("reason").to_pylist())
    assert sum(reasons.values()) == result.rows_quarantined == expected > 0
    assert all("before the log's valid range" in r for r in reasons)
    assert result.event_dates[0] == "2017-11-24" and result.event_dates[-1] == "2017-12-03"
    events = read_parquet_dir(lake.events)
    assert pc.min(events.column("event_time")).as_py() >= dt.datetime(2017, 11, 24, 16, tzinfo=dt.timezone.utc)
    items = read_parquet_dir(lake.items)
    assert 55233 - result.rows_quarantined <= items.num_rows <= 55233
    assert items.column("category").null_count == 0


@pytest.mark.slow
def test_diginetica_and_rees46_presets(spark, tmp_path):
    digi = ingest(spark, IngestConfig(input=dataset(DATASETS / "diginetica" / "sample_train-item-views.csv"),
                                      items_input=dataset(DATASETS / "diginetica" / "product-categories.csv"),
                                      preset="diginetica"), Lake(tmp_path / "d"))
    rees = ingest(spark, IngestConfig(input=dataset(DATASETS / "rees46" / "2019-Oct-sample.csv"),
                                      items_input=None, preset="rees46"), Lake(tmp_path / "r"))
    assert digi.rows_read == _data_lines(DATASETS / "diginetica" / "sample_train-item-views.csv") and digi.balanced
    assert digi.rows_accepted > 12000
    categories = read_parquet_dir(Lake(tmp_path / "d").items)  # itemId;categoryId through the preset's items layout
    assert categories.num_rows == _data_lines(DATASETS / "diginetica" / "product-categories.csv")
    assert categories.column("category").null_count == 0 and categories.column("brand").null_count == categories.num_rows
    assert rees.rows_read == _data_lines(DATASETS / "rees46" / "2019-Oct-sample.csv") == 1000 and rees.balanced
    assert rees.rows_accepted > 950
    items = read_parquet_dir(Lake(tmp_path / "r").items)
    assert items.column("brand").null_count < items.num_rows and items.column("price").null_count == 0
