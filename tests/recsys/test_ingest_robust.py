"""Nothing a file can do breaks the lake (issue 14, classes 1-4): one row cannot move the reference
time, one file cannot crash the batch, nothing is skipped silently, and ids keep their value."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

import recsys.ingest
from recsys.config import ColumnMapping, IngestConfig
from recsys.ingest import DONE, REJECTED, IngestRejected, ingest, read_manifest
from recsys.lake import Lake, read_parquet_dir

NOW = dt.datetime(2024, 3, 20, tzinfo=dt.timezone.utc)
HEADER = "timestamp,user_id,item_id,event_type"


def _csv(path: Path, times: list[str], prefix: str = "u") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{t},{prefix}{n % 7},i{n % 5},view" for n, t in enumerate(times)]
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _days(start: dt.date, days: int, per_day: int) -> list[str]:
    return [f"{start + dt.timedelta(days=d)}T{h % 24:02d}:{h % 60:02d}:00Z" for d in range(days) for h in range(per_day)]


def _config(path: Path, **kwargs) -> IngestConfig:
    return IngestConfig(input=path, items_input=None, preset="sample", **kwargs)


def _reasons(lake: Lake) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in read_parquet_dir(lake.quarantine).to_pylist():
        out.setdefault(Path(row["source_file"]).name, []).append(row["reason"])
    return out


# --- class 1: the reference time --------------------------------------------------------------------

@pytest.mark.slow
def test_rows_far_past_the_newest_day_are_quarantined_and_never_move_the_reference(spark, tmp_path):
    lake, folder = Lake(tmp_path / "lake"), tmp_path / "in"
    # a historical log (9 days of 2017) with one row stamped "now": the example
    _csv(folder / "2017.csv", _days(dt.date(2017, 11, 25), 9, 20) + ["2024-03-19T23:00:00Z"])
    first = ingest(spark, _config(folder), lake, now=NOW)
    assert (first.rows_accepted, first.rows_quarantined) == (180, 1)
    [reason] = _reasons(lake)["2017.csv"]
    assert "ingest.max_future_days" in reason and "2017-12-03" in reason

    # the next night: a day after the lake's newest, and two rows (not one) stamped far later
    _csv(folder / "next.csv", _days(dt.date(2017, 12, 4), 1, 30) + ["2024-03-19T10:00:00Z", "2023-01-01T00:00:00Z"])
    second = ingest(spark, _config(folder), lake, now=NOW)
    assert (second.rows_accepted, second.rows_quarantined) == (30, 2)
    assert max(second.event_dates) == "2017-12-04"

    # a night whose rows all lie far past the lake: rejected with the setting named, nothing committed
    _csv(folder / "later.csv", _days(dt.date(2018, 6, 1), 2, 10))
    events_before = read_parquet_dir(lake.events).num_rows
    with pytest.raises(IngestRejected, match="ingest.max_future_days") as caught:
        ingest(spark, _config(folder), lake, now=NOW)
    assert "time" in str(caught.value)
    assert read_parquet_dir(lake.events).num_rows == events_before
    statuses = {Path(e.path).name: e.status for e in read_manifest(lake)}
    assert statuses["later.csv"] == REJECTED  # read again at the next ingest, after the operator's fix
    fixed = ingest(spark, _config(folder, max_future_days=400), lake, now=NOW)
    assert fixed.rows_accepted == 20


def test_times_outside_the_calendar_are_quarantined_not_a_crash(spark, tmp_path):
    mapping = ColumnMapping(event_time="timestamp", time_format="unix_s")
    # year 0 and year 10000 are valid Spark timestamps but overflow Python's dates
    outside = ["-62135596801", "-93723955200"]  # 0000-12-31, about the year -1000
    mixed = _csv(tmp_path / "in" / "mixed.csv", outside + ["253402300800"] + [str(1709287200 + 60 * n) for n in range(8)])
    alone = _csv(tmp_path / "alone" / "ancient.csv", outside)

    lake = Lake(tmp_path / "lake")
    result = ingest(spark, IngestConfig(input=mixed, items_input=None, preset=None, mapping=mapping), lake, now=NOW)
    assert (result.rows_accepted, result.rows_quarantined) == (8, 3) and result.balanced
    assert all("out of range" in r for r in _reasons(lake)["mixed.csv"])
    with pytest.raises(IngestRejected, match="out of range"):  # only such rows: rejected, not a crash
        ingest(spark, IngestConfig(input=alone, items_input=None, preset=None, mapping=mapping), Lake(tmp_path / "l2"), now=NOW)


# --- class 2: one file cannot crash the batch ----------------------------------------------------------

def _broken_files(folder: Path) -> dict[str, str]:
    """Files that crashed the whole ingest before; name -> a fragment of the reason they get."""
    folder.mkdir(parents=True, exist_ok=True)
    good = {"timestamp": "2024-03-01T10:00:00Z", "user_id": "u1", "item_id": "i1", "event_type": "view"}
    other = good | {"item_id": "i3"}
    (folder / "long_header.csv").write_text(HEADER + ",note" + "x" * 140_000 + "\n2024-03-01T10:00:00Z,u1,i2,view,n\n")
    (folder / "deep.jsonl").write_text(json.dumps(good) + "\n" + "[" * 100_000 + "\n")
    (folder / "huge_int.jsonl").write_text(json.dumps(other) + '\n{"user_id": ' + "9" * 5000 + "}\n")
    table = pa.table({k: [v] * 5000 for k, v in good.items()})
    pq.write_table(table, folder / "corrupt.parquet", compression="snappy", use_dictionary=False)
    data = bytearray((folder / "corrupt.parquet").read_bytes())
    data[200:2200] = b"\xff" * 2000  # the data pages, not the footer
    (folder / "corrupt.parquet").write_bytes(bytes(data))
    return {"deep.jsonl": "malformed JSON", "huge_int.jsonl": "malformed JSON", "corrupt.parquet": "file unreadable"}


def test_every_per_file_failure_is_quarantined_and_the_batch_goes_on(spark, tmp_path):
    folder, lake = tmp_path / "in", Lake(tmp_path / "lake")
    expect = _broken_files(folder)
    _csv(folder / "good.csv", _days(dt.date(2024, 3, 1), 1, 20))

    result = ingest(spark, _config(folder), lake, now=NOW)

    assert result.balanced and result.files_ingested == 5
    reasons = _reasons(lake)
    for name, fragment in expect.items():
        assert reasons[name] and all(fragment in r for r in reasons[name]), (name, reasons[name])
    assert "long_header.csv" not in reasons  # a first line over 128 KiB is read like any other
    accepted = {Path(p).name for p in read_parquet_dir(lake.events).column("source_file").to_pylist()}
    assert {"good.csv", "long_header.csv", "deep.jsonl", "huge_int.jsonl"} <= accepted
    statuses = {Path(e.path).name: e.status for e in read_manifest(lake)}
    assert statuses["corrupt.parquet"] == "failed" and statuses["good.csv"] == DONE
    assert result.files_failed == 1 and [Path(p).name for p in result.failed_files] == ["corrupt.parquet"]
    again = ingest(spark, _config(folder), lake, now=NOW)  # a failed file is not retried every night
    assert again.files_ingested == 0


def test_timestamp_arithmetic_cannot_overflow(spark, tmp_path):
    raw = tmp_path / "in" / "offsets.csv"
    raw.parent.mkdir()
    rows = [f"2016-05-09,u{n},i{n},{1000 * n}" for n in range(6)] + ["2016-05-09,u9,i9,9223372036854775807",
                                                                     "2016-05-09,u9,i9,-9223372036854775808"]
    raw.write_text("date,user,item,offset\n" + "\n".join(rows) + "\n")
    mapping = ColumnMapping(user_id="user", item_id="item", event_time="date", time_format="date_plus_offset_ms",
                            time_offset_column="offset", event_type=None)
    lake = Lake(tmp_path / "lake")
    result = ingest(spark, IngestConfig(input=raw, items_input=None, preset=None, mapping=mapping), lake, now=NOW)
    assert (result.rows_accepted, result.rows_quarantined) == (6, 2)
    assert all("timestamp" in r for r in _reasons(lake)["offsets.csv"])


@pytest.mark.parametrize("settings, field", [
    ({"preset": None, "mapping": {"event_type_values": {}}}, "event_type_values"),
    ({"max_late_days": 10**9}, "max_late_days"),
    ({"max_future_hours": 10**9}, "max_future_hours"),
    ({"max_future_days": 0}, "max_future_days"),
])
def test_a_config_that_cannot_work_fails_validation_naming_the_field(settings, field):
    with pytest.raises(ValidationError, match=field):
        IngestConfig(**settings)


# --- class 3: nothing is skipped silently; a file that changes while read waits -------------------------

def test_every_path_left_out_is_counted_and_named(spark, tmp_path, monkeypatch):
    folder, lake = tmp_path / "in", Lake(tmp_path / "lake")
    _csv(folder / "good.csv", _days(dt.date(2024, 3, 1), 1, 20))
    _csv(folder / "_SUCCESS.csv", ["2024-03-01T10:00:00Z"])
    _csv(folder / ".partial.csv", ["2024-03-01T10:00:00Z"])
    _csv(tmp_path / "elsewhere" / "linked.csv", ["2024-03-01T10:00:00Z"])
    (folder / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    os.mkfifo(folder / "pipe.csv")  # reading it would block the ingest
    _csv(folder / "locked" / "in_locked.csv", ["2024-03-01T10:00:00Z"])
    scandir = os.scandir

    def _denied(path=".", *args):  # root reads any folder, so an unreadable one is played
        if isinstance(path, (str, os.PathLike)) and Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path, *args)

    monkeypatch.setattr(os, "scandir", _denied)
    result = ingest(spark, _config(folder), lake, now=NOW)

    names = {Path(entry.split(" (", 1)[0]).name: entry for entry in result.skipped_paths}
    assert set(names) == {"_SUCCESS.csv", ".partial.csv", "link", "pipe.csv", "locked"}
    assert result.paths_skipped == 5 and result.rows_accepted == 20
    assert "symbolic link" in names["link"] and "Permission denied" in names["locked"]
    assert "not a regular file" in names["pipe.csv"] and "hidden" in names["_SUCCESS.csv"]


@pytest.mark.slow
def test_a_file_that_changes_or_vanishes_during_the_read_is_not_committed(spark, tmp_path, monkeypatch):
    folder, lake = tmp_path / "in", Lake(tmp_path / "lake")
    _csv(folder / "good.csv", _days(dt.date(2024, 3, 1), 1, 20))
    growing = _csv(folder / "growing.csv", _days(dt.date(2024, 3, 2), 1, 10), prefix="g")
    vanishing = _csv(folder / "vanishing.csv", _days(dt.date(2024, 3, 3), 1, 10), prefix="v")
    parse = recsys.ingest._parse

    def _meanwhile(spark, files, mapping):  # the copy goes on, the file is moved away, as Spark reads
        with open(growing, "a") as handle:
            handle.write("2024-03-02T23:00:00Z,g1,i1")  # a half-written last line: its id is cut short
        vanishing.unlink()
        return parse(spark, files, mapping)

    monkeypatch.setattr(recsys.ingest, "_parse", _meanwhile)
    result = ingest(spark, _config(folder), lake, now=NOW)

    assert result.rows_accepted == 20 and result.balanced
    assert result.files_changed == 2
    assert sorted(Path(p.split(" (", 1)[0]).name for p in result.changed_files) == ["growing.csv", "vanishing.csv"]
    assert {Path(p).name for p in read_parquet_dir(lake.events).column("source_file").to_pylist()} == {"good.csv"}
    assert {Path(e.path).name for e in read_manifest(lake)} == {"good.csv"}
    monkeypatch.setattr(recsys.ingest, "_parse", parse)
    later = ingest(spark, _config(folder), lake, now=NOW)  # the next night reads the finished file
    assert later.files_ingested == 1 and later.rows_read == 11


# --- class 4: ids keep their value --------------------------------------------------------------------

def test_ids_are_canonical_scalars_or_the_row_is_quarantined(spark, tmp_path):
    folder, lake = tmp_path / "in", Lake(tmp_path / "lake")
    folder.mkdir()
    time = "2024-03-01T10:00:00Z"
    good = [(7, 7.0), (7.0, "7"), ("7", 8), (1e20, 2.5)]
    bad = [({"id": 7}, 1, "not a string or a number"), (float("nan"), 1, "NaN"), (1, float("inf"), "infinite"),
           (True, 1, "boolean"), ([7], 1, "not a string or a number")]
    lines = [json.dumps({"timestamp": time, "user_id": u, "item_id": i, "event_type": "view"}) for u, i in good]
    lines += [json.dumps({"timestamp": time, "user_id": u, "item_id": i, "event_type": "view"}) for u, i, _ in bad]
    (folder / "ids.jsonl").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.table({"timestamp": [time] * 3, "user_id": [7.0, 8.0, float("nan")], "item_id": [1, 2, 3],
                             "event_type": ["cart"] * 3}), folder / "ids.parquet")

    result = ingest(spark, _config(folder), lake, now=NOW)

    events = read_parquet_dir(lake.events).to_pylist()
    pairs = sorted((e["user_id"], e["item_id"]) for e in events)
    assert pairs == sorted([("7", "7"), ("7", "8"), ("100000000000000000000", "2.5"), ("7", "1"), ("8", "2")])
    reasons = _reasons(lake)
    assert len(reasons["ids.jsonl"]) == len(bad) and len(reasons["ids.parquet"]) == 1
    for _, _, fragment in bad:
        assert any(fragment in r for r in reasons["ids.jsonl"]), (fragment, reasons["ids.jsonl"])
    assert "NaN" in reasons["ids.parquet"][0]
    assert result.rows_duplicate == 1  # 7/7.0 and 7.0/"7" are the same event
