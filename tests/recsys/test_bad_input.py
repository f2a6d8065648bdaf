"""A corpus of broken raw files, ingested together: nothing crashes, every line is accounted for,
and each broken line lands in quarantine with a reason that says what is wrong."""

from __future__ import annotations

import datetime as dt
import gzip
from collections import defaultdict
from pathlib import Path

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
    (folder / "a_directory.csv").mkdir()  # a folder where a file was expected: nothing to read, nothing crashes
    _text(folder / "good.csv", good)
    _text(folder / "good_copy_under_another_name.csv", good)  # same bytes: ingested once
    expect["good.csv"] = (20, 0, None)
    return expect


@pytest.mark.slow
def test_broken_corpus_is_quarantined_with_reasons_and_balances(spark, tmp_path):
    expect = build_corpus(tmp_path / "raw")
    lake = Lake(tmp_path / "lake")

    result = ingest(spark, IngestConfig(input=tmp_path / "raw", items_input=None, preset="sample"), lake, now=NOW)

    assert result.balanced
    assert result.files_found == len(expect) + 1 and result.files_ingested == len(expect)
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
