"""Ingest on real Spark, reading a file again: after a corrected mapping, after a changed one, and on
demand (``reingest``); the new read replaces the old one's events and quarantine rows, whether the
process dies before or after its commit."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recsys.config import ColumnMapping, IngestConfig
from recsys.ingest import (DONE, REJECTED, IngestRejected, ingest, live_reads, read_manifest, reingest,
                           remove_unfinished_batches)
from recsys.lake import Lake, read_parquet_dir

NOW = dt.datetime(2024, 3, 20, tzinfo=dt.timezone.utc)
START = 1709287200  # 2024-03-01T10:00:00Z
MAPPING = ColumnMapping(user_id="user", item_id="item", event_time="ts", time_format="unix_s", event_type="action",
                        category="cat")


def _log(path: Path, rows: list[tuple[int, str, str, str]]) -> Path:
    """(minute, user, item, action) rows, each item in category 'shoes'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{START + 60 * minute},{user},{item},{action},shoes" for minute, user, item, action in rows]
    path.write_text("\n".join(["ts,user,item,action,cat", *lines]) + "\n")
    return path


def _config(path: Path, mapping: ColumnMapping = MAPPING) -> IngestConfig:
    return IngestConfig(input=path, items_input=None, preset=None, mapping=mapping)


def _events(lake: Lake) -> Counter:
    table = read_parquet_dir(lake.events)
    return Counter(zip(*(table.column(c).to_pylist() for c in ("source_file", "user_id", "item_id", "event_type"))))


def _quarantine_per_file(lake: Lake) -> Counter:
    if not any(lake.quarantine.glob("*/*.parquet")):
        return Counter()
    return Counter(read_parquet_dir(lake.quarantine).column("source_file").to_pylist())


CLICKS = [(n, f"u{n % 3}", f"i{n % 4}", "view") for n in range(8)] + [(9, "", "i1", "view"), (10, "", "i2", "view")]


@pytest.mark.slow
def test_a_corrected_mapping_reads_the_rejected_file_again_and_replaces_the_failed_attempt(spark, tmp_path):
    raw = _log(tmp_path / "in" / "clicks.csv", CLICKS)
    lake = Lake(tmp_path / "lake")
    with pytest.raises(IngestRejected):
        ingest(spark, _config(raw, MAPPING.model_copy(update={"time_format": "iso"})), lake, now=NOW)

    fixed = ingest(spark, _config(raw), lake, now=NOW)
    again = ingest(spark, _config(raw), lake, now=NOW)

    assert (fixed.files_ingested, fixed.rows_accepted, fixed.rows_quarantined) == (1, 8, 2)
    assert sum(_events(lake).values()) == 8
    assert _quarantine_per_file(lake) == {str(raw.resolve()): 2}  # the failed attempt's 10 rows are replaced
    assert {r["item_id"]: r["category"] for r in read_parquet_dir(lake.items).to_pylist()} == \
        {f"i{n}": "shoes" for n in range(4)}
    assert (again.files_ingested, again.files_skipped) == (0, 1)
    reads = live_reads(read_manifest(lake))
    assert [[e.status for e in r] for r in reads.values()] == [[DONE]]
    assert sorted(e.status for e in read_manifest(lake)) == [DONE, REJECTED]


@pytest.mark.slow
def test_a_changed_mapping_replaces_the_files_events_instead_of_doubling_them(spark, tmp_path):
    rows = [(n, f"u{n % 3}", f"i{n % 4}", "view") for n in range(8)] + [(8, "u1", "i1", "buy"), (9, "u2", "i3", "buy")]
    raw = _log(tmp_path / "in" / "orders.csv", rows)
    lake = Lake(tmp_path / "lake")
    views_only = MAPPING.model_copy(update={"event_type_values": {"view": "view"}})
    with_buys = MAPPING.model_copy(update={"event_type_values": {"view": "view", "buy": "purchase"}})

    first = ingest(spark, _config(raw, views_only), lake, now=NOW)
    second = ingest(spark, _config(raw, with_buys), lake, now=NOW)

    assert (first.rows_accepted, first.rows_quarantined) == (8, 2)
    assert (second.files_ingested, second.rows_accepted, second.rows_quarantined, second.rows_duplicate) == (1, 10, 0, 0)
    assert second.rows_replaced == 8
    types = Counter(t for (_, _, _, t), n in _events(lake).items() for _ in range(n))
    assert types == {"view": 8, "purchase": 2}
    assert _quarantine_per_file(lake) == Counter()
    assert spark.read.parquet(str(lake.events)).count() == 10  # Spark reads the rewritten lake as pyarrow does


@pytest.mark.slow
def test_reingest_replaces_one_files_rows_and_keeps_the_others(spark, tmp_path):
    folder = tmp_path / "in"
    a = _log(folder / "a.csv", [(n, "u1", f"i{n}", "view") for n in range(4)] + [(5, "", "i1", "view")])
    b = _log(folder / "b.csv", [(n, "u2", f"i{n}", "view") for n in range(3)] + [(5, "", "i2", "view")])
    lake = Lake(tmp_path / "lake")
    ingest(spark, _config(folder), lake, now=NOW)
    before = _events(lake)

    again = reingest(spark, _config(folder), lake, a, now=NOW)

    assert (again.files_ingested, again.rows_accepted, again.rows_quarantined, again.rows_replaced) == (1, 4, 1, 4)
    assert _events(lake) == before  # a's rows once (the new read's), b's untouched
    assert _quarantine_per_file(lake) == {str(a.resolve()): 1, str(b.resolve()): 1}
    reads = live_reads(read_manifest(lake))
    assert sorted((Path(r[0].path).name, len(r)) for r in reads.values()) == [("a.csv", 1), ("b.csv", 1)]
    # the file edited in place (new bytes, same path): reingest replaces what the path gave before
    _log(a, [(n, "u1", f"i{n}", "view") for n in range(2)])
    edited = reingest(spark, _config(folder), lake, a, now=NOW)
    assert (edited.rows_accepted, edited.rows_replaced) == (2, 4)
    assert sum(n for (source, *_), n in _events(lake).items() if source == str(a.resolve())) == 2
    assert _quarantine_per_file(lake) == {str(b.resolve()): 1}


def _two_files_ingested(spark, tmp_path) -> tuple[Path, Path, Lake, Counter]:
    folder = tmp_path / "in"
    a = _log(folder / "a.csv", [(n, "u1", f"i{n}", "view") for n in range(4)])
    b = _log(folder / "b.csv", [(n, "u2", f"i{n}", "view") for n in range(3)])
    lake = Lake(tmp_path / "lake")
    ingest(spark, _config(folder), lake, now=NOW)
    _log(a, [(n, "u1", f"i{n}", "cart") for n in range(4)])  # what the new read will find
    return folder, a, lake, _events(lake)


@pytest.mark.slow
def test_a_reingest_killed_before_its_commit_leaves_the_old_rows(spark, tmp_path, monkeypatch):
    import recsys.ingest

    folder, a, lake, before = _two_files_ingested(spark, tmp_path)
    monkeypatch.setattr(recsys.ingest._Manifest, "write", _killed)  # dies where the manifest would be written
    with pytest.raises(_Killed):
        reingest(spark, _config(folder), lake, a, now=NOW)
    monkeypatch.undo()

    remove_unfinished_batches(lake)  # what the next ingest does first
    assert _events(lake) == before
    assert len(read_manifest(lake)) == 2


@pytest.mark.slow
def test_a_reingest_killed_after_its_commit_leaves_the_new_rows(spark, tmp_path, monkeypatch):
    import recsys.ingest

    folder, a, lake, before = _two_files_ingested(spark, tmp_path)
    delete = recsys.ingest._delete
    monkeypatch.setattr(recsys.ingest, "_delete", lambda paths: _killed() if paths else delete(paths))
    with pytest.raises(_Killed):
        reingest(spark, _config(folder), lake, a, now=NOW)  # committed, the replaced files not yet deleted
    monkeypatch.undo()

    remove_unfinished_batches(lake)
    expected = Counter({k: n for k, n in before.items() if k[0] != str(a.resolve())})
    expected.update({(str(a.resolve()), "u1", f"i{n}", "cart"): 1 for n in range(4)})
    assert _events(lake) == expected


class _Killed(Exception):
    pass


def _killed(*args, **kwargs):
    raise _Killed


def test_a_manifest_written_before_mapping_digests_counts_as_done_under_any_mapping(spark, tmp_path):
    raw = _log(tmp_path / "in" / "clicks.csv", CLICKS[:4])
    lake = Lake(tmp_path / "lake")
    ingest(spark, _config(raw), lake, now=NOW)
    [file] = lake.manifest.glob("*.parquet")
    old_columns = ["path", "size", "sha256", "rows", "batch_id", "ingested_at"]
    pq.write_table(pq.read_table(file).select(old_columns), file)

    later = ingest(spark, _config(raw, MAPPING.model_copy(update={"category": None})), lake, now=NOW)

    assert (later.files_ingested, later.files_skipped) == (0, 1)
