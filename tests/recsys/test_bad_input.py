"""A corpus of broken raw files, ingested together: nothing crashes, every line is accounted for,
each broken line lands in quarantine with a reason that says what is wrong, and every path that is
not read is named with its reason."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.config import IngestConfig
from recsys.ingest import ingest
from recsys.lake import Lake, read_parquet_dir

NOW = dt.datetime(2024, 3, 20, tzinfo=dt.timezone.utc)
HEADER = "timestamp,user_id,item_id,event_type"
ROW = "2024-03-01T10:00:{s:02d}Z,u{n},i{n},view"


def _rows(n: int, offset: int = 0) -> list[str]:
    return [ROW.format(s=i % 60, n=offset + i) for i in range(n)]


def _text(path: Path, text: str) -> None:
    path.write_text(text)


def _json(**fields) -> str:
    return json.dumps({"timestamp": "2024-03-01T11:00:00Z", "user_id": "u1", "item_id": "j1", "event_type": "view"} | fields)


# paths under the input that are not read: name -> a fragment of the reason IngestResult gives
SKIPPED = {"_SUCCESS": "hidden", ".in_progress.csv": "hidden", "linked_folder": "symbolic link to a folder",
           "a_fifo.csv": "not a regular file"}


def build_corpus(folder: Path) -> dict[str, tuple[int, int, str | None]]:
    """Write one file per kind of breakage; returns name -> (rows read, rows quarantined, reason fragment)."""
    folder.mkdir(parents=True)
    expect: dict[str, tuple[int, int, str | None]] = {}

    good = "\n".join([HEADER, *_rows(20, 1000)]) + "\n"
    with gzip.open(folder / "truncated.csv.gz", "wb") as handle:
        handle.write(("\n".join([HEADER, *_rows(5000, 2000)]) + "\n").encode())
    data = (folder / "truncated.csv.gz").read_bytes()
    (folder / "truncated.csv.gz").write_bytes(data[: len(data) // 2])
    expect["truncated.csv.gz"] = (-1, 1, "file unreadable")  # rows before the cut are kept; one row says where it broke

    _text(folder / "semicolons.csv", "\n".join(r.replace(",", ";") for r in [HEADER, *_rows(3, 3000)]) + "\n")
    expect["semicolons.csv"] = (3, 3, "lacks required column")
    _text(folder / "header_only.csv", HEADER + "\n")
    expect["header_only.csv"] = (0, 0, None)
    _text(folder / "empty.csv", "")
    expect["empty.csv"] = (0, 0, None)
    _text(folder / "no_item_column.csv", "timestamp,user_id,event_type\n2024-03-01T10:00:00Z,u1,view\n")
    expect["no_item_column.csv"] = (1, 1, "lacks required column")
    _text(folder / "extra_columns.csv", HEADER + ",referrer,device\n" + "\n".join(r + ",x,y" for r in _rows(4, 4000)) + "\n")
    expect["extra_columns.csv"] = (4, 0, None)
    (folder / "bom.csv").write_bytes(b"\xef\xbb\xbf" + ("\n".join([HEADER, *_rows(3, 5000)]) + "\n").encode())
    expect["bom.csv"] = (3, 0, None)
    (folder / "latin1.csv").write_bytes((HEADER + "\n").encode() + "2024-03-01T10:00:00Z,u\xe9,i1,view\n".encode("latin-1")
                                        + (ROW.format(s=1, n=6000) + "\n").encode())
    expect["latin1.csv"] = (2, 1, "not valid UTF-8")
    _text(folder / "null_ids.csv", f"{HEADER}\n2024-03-01T10:00:00Z,,i1,view\n2024-03-01T10:00:00Z,u1,NA,view\n")
    expect["null_ids.csv"] = (2, 2, "null")
    _text(folder / "bad_times.csv", f"{HEADER}\nyesterday,u1,i1,view\n2024-13-45T99:00:00Z,u1,i1,view\n")
    expect["bad_times.csv"] = (2, 2, "unparseable timestamp")
    _text(folder / "future.csv", f"{HEADER}\n2099-01-01T00:00:00Z,u1,i1,view\n")
    expect["future.csv"] = (1, 1, "in the future")
    _text(folder / "ancient.csv", f"{HEADER}\n2001-01-01T00:00:00Z,u1,i1,view\n")
    expect["ancient.csv"] = (1, 1, "older than any training window")
    _text(folder / "unknown_types.csv", f"{HEADER}\n2024-03-01T10:00:00Z,u1,i1,teleport\n2024-03-01T10:00:00Z,u1,i1,\n")
    expect["unknown_types.csv"] = (2, 2, "unknown event type")
    _text(folder / "long_strings.csv", f"{HEADER}\n2024-03-01T10:00:00Z,{'u' * 100_000},i1,view\n")
    expect["long_strings.csv"] = (1, 1, "longer than")
    _text(folder / "ragged.csv", f"{HEADER}\n2024-03-01T10:00:00Z,u1,i1\n2024-03-01T10:00:00Z,u1,i1,view,extra\n")
    expect["ragged.csv"] = (2, 2, "expected 4 fields")
    _text(folder / "broken.jsonl", '{"timestamp": "2024-03-01T10:00:00Z", "user_id": "u1", "item_id": "i9", "event_type": "view"}\n'
                                   '{"timestamp": "2024-03-01T10:00:00Z", "user_id": \n[1, 2]\n')
    expect["broken.jsonl"] = (3, 2, "JSON")
    (folder / "garbage.parquet").write_bytes(b"PAR1 this is not parquet at all")
    expect["garbage.parquet"] = (1, 1, "unreadable Parquet")
    # issue 14: each of these crashed the whole ingest, or was read wrong, or was left out silently
    _text(folder / "long_header.csv", HEADER + ",note" + "x" * 140_000 + "\n" + ROW.format(s=2, n=7000) + ",n\n")
    expect["long_header.csv"] = (1, 0, None)  # a first line over the csv module's 128 KiB field limit
    _text(folder / "deep.jsonl", "[" * 100_000 + "\n")
    expect["deep.jsonl"] = (1, 1, "malformed JSON")  # nesting deeper than Python's stack
    _text(folder / "huge_number.jsonl", '{"user_id": ' + "9" * 5000 + "}\n")
    expect["huge_number.jsonl"] = (1, 1, "malformed JSON")  # over Python's 4300-digit int limit
    pq.write_table(pa.table({"timestamp": ["2024-03-01T10:00:00Z"] * 5000, "user_id": ["u1"] * 5000,
                             "item_id": ["i1"] * 5000, "event_type": ["view"] * 5000}),
                   folder / "corrupt_pages.parquet", compression="snappy", use_dictionary=False)
    data = bytearray((folder / "corrupt_pages.parquet").read_bytes())
    data[200:2200] = b"\xff" * 2000  # a valid footer over broken data pages
    (folder / "corrupt_pages.parquet").write_bytes(bytes(data))
    expect["corrupt_pages.parquet"] = (1, 1, "file unreadable")
    _text(folder / "ids.jsonl", "\n".join([_json(user_id=7.0), _json(user_id={"id": 7}), _json(user_id=float("nan")),
                                           _json(user_id=True), _json(user_id=[7])]) + "\n")
    expect["ids.jsonl"] = (5, 4, "user id")  # 7.0 is the id "7"; an object, NaN, a boolean and a list are no ids
    _text(folder / "stamped_now.csv", f"{HEADER}\n2024-03-19T23:00:00Z,u1,i1,view\n")
    expect["stamped_now.csv"] = (1, 1, "ingest.max_future_days")  # cannot become the newest event
    _text(folder / "_SUCCESS", "")
    _text(folder / ".in_progress.csv", good)
    (folder.parent / "outside").mkdir()
    _text(folder.parent / "outside" / "elsewhere.csv", good)
    (folder / "linked_folder").symlink_to(folder.parent / "outside", target_is_directory=True)
    os.mkfifo(folder / "a_fifo.csv")
    (folder / "a_directory.csv").mkdir()  # a folder where a file was expected: nothing to read, nothing crashes
    _text(folder / "good.csv", good)
    _text(folder / "good_copy_under_another_name.csv", good)  # same bytes: ingested once
    expect["good.csv"] = (20, 0, None)
    return expect


@pytest.mark.slow
def test_broken_corpus_is_quarantined_with_reasons_and_balances(spark, tmp_path):
    expect = build_corpus(tmp_path / "raw")
    lake = Lake(tmp_path / "lake")

    config = IngestConfig(input=tmp_path / "raw", items_input=None, preset="sample", max_future_days=7)
    result = ingest(spark, config, lake, now=NOW)

    assert result.balanced
    assert result.files_found == len(expect) + 1 and result.files_ingested == len(expect)
    skipped = {Path(entry.split(" (", 1)[0]).name: entry for entry in result.skipped_paths}
    assert result.paths_skipped == len(SKIPPED) and set(skipped) == set(SKIPPED)
    assert all(fragment in skipped[name] for name, fragment in SKIPPED.items()), skipped
    assert [Path(p).name for p in result.failed_files] == ["corrupt_pages.parquet", "garbage.parquet", "truncated.csv.gz"]
    quarantine = read_parquet_dir(lake.quarantine).to_pylist()
    events = read_parquet_dir(lake.events).to_pylist()
    reasons: dict[str, list[str]] = defaultdict(list)
    for row in quarantine:
        reasons[Path(row["source_file"]).name].append(row["reason"])
    accepted: dict[str, int] = defaultdict(int)
    for row in events:
        accepted[Path(row["source_file"]).name] += 1
    for name, (read, quarantined, fragment) in expect.items():
        assert len(reasons[name]) == quarantined, (name, reasons[name])
        assert fragment is None or all(fragment in r for r in reasons[name]), (name, reasons[name])
        if read >= 0:
            assert accepted[name] + quarantined == read, name
    assert accepted["truncated.csv.gz"] > 0  # what came before the cut is kept
    assert "good_copy_under_another_name.csv" not in accepted
    assert all(r["line"] >= 1 and r["raw"] is not None or "unreadable" in r["reason"] for r in quarantine)
