"""The raw log readers one function at a time, on small files: fields, line numbers and reject reasons.

The end-to-end view through Spark (accounting, quarantine) is in ``test_ingest.py`` and
``test_bad_input.py``; here each parser's output rows are checked directly, without Spark.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys import raw_files
from recsys.raw_files import (PARSED_SCHEMA, ColumnMapping, detect_format, make_file_parser, parse_file,
                              required_columns, source_columns)

HEADER = "timestamp,user_id,item_id,event_type"
ROWS = ["2024-03-01T10:00:00Z,u1,a,view", "2024-03-01T10:05:00Z,u2,b,cart", "2024-03-01T10:06:00Z,u3,c,purchase"]


def _parsed(path: Path, file_format: str = "csv", mapping: ColumnMapping | None = None) -> list[dict]:
    batches = list(parse_file(path, file_format, mapping or ColumnMapping()))
    assert all(batch.schema == PARSED_SCHEMA for batch in batches)
    return [row for batch in batches for row in batch.to_pylist()]


def _fields(row: dict) -> tuple:
    return row["time_raw"], row["user_id"], row["item_id"], row["event_type_raw"]


def _expected(line: str) -> tuple:
    return tuple(line.split(","))


@pytest.mark.parametrize("name, default, expected", [
    ("log.csv", "jsonl", "csv"), ("LOG.TSV.GZ", "jsonl", "csv"), ("log.txt", "parquet", "csv"),
    ("log.jsonl.gz", "csv", "jsonl"), ("log.json", "csv", "jsonl"), ("log.ndjson", "csv", "jsonl"),
    ("log.parquet", "csv", "parquet"), ("log.dat", "jsonl", "jsonl"), ("log.gz", "parquet", "parquet"),
])
def test_detect_format_by_suffix_else_the_default(name, default, expected):
    assert detect_format(Path(name), default) == expected


def test_source_and_required_columns_follow_the_mapping():
    mapping = ColumnMapping(user_id="who", item_id="what", event_time="day", time_format="date_plus_offset_ms",
                            time_offset_column="ms", event_type=None, session_id="sess", brand="maker")
    assert source_columns(mapping) == {"user_id": "who", "item_id": "what", "time_raw": "day", "time_offset": "ms",
                                       "event_type_raw": None, "session_raw": "sess", "category": None,
                                       "brand": "maker", "price": None}
    assert required_columns(mapping) == ["who", "what", "day", "ms", "sess"]  # side columns are optional
    assert required_columns(ColumnMapping()) == ["user_id", "item_id", "timestamp", "event_type"]


def test_csv_with_header_picks_columns_by_name_and_keeps_line_and_text(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("event_type,extra,item_id,timestamp,user_id\n" + "view,x, a ,2024-03-01T10:00:00Z,u1\n"
                    + "cart,y,NA,2024-03-01T10:01:00Z,\n")
    rows = _parsed(path)
    assert [r["line"] for r in rows] == [2, 3]  # the header is line 1
    assert _fields(rows[0]) == ("2024-03-01T10:00:00Z", "u1", "a", "view")  # values stripped
    assert _fields(rows[1]) == ("2024-03-01T10:01:00Z", None, None, "cart")  # null markers and "" -> None
    assert rows[0]["raw"] == "view,x, a ,2024-03-01T10:00:00Z,u1"
    assert {r["source_file"] for r in rows} == {str(path)} and {r["reason"] for r in rows} == {None}
    assert rows[0]["session_raw"] is None and rows[0]["category"] is None  # not mapped


def test_csv_without_header_reads_the_first_line_as_data(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("\n".join(ROWS) + "\n")
    mapping = ColumnMapping(header=False, columns=("timestamp", "user_id", "item_id", "event_type"))
    rows = _parsed(path, mapping=mapping)
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert [_fields(r) for r in rows] == [_expected(line) for line in ROWS]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_custom_delimiter_and_a_quoted_field_holding_it(tmp_path, delimiter):
    path = tmp_path / "log.txt"
    path.write_text(delimiter.join(HEADER.split(",")) + "\n"
                    + delimiter.join(["2024-03-01T10:00:00Z", f'"u{delimiter}1"', "a", "view"]) + "\n")
    (row,) = _parsed(path, mapping=ColumnMapping(delimiter=delimiter))
    assert row["reason"] is None and row["user_id"] == f"u{delimiter}1" and row["event_type_raw"] == "view"


def test_gzip_is_detected_by_its_magic_bytes_whatever_the_name(tmp_path):
    text = "\n".join([HEADER, *ROWS]) + "\n"
    plain, zipped, disguised = tmp_path / "a.csv", tmp_path / "b.csv.gz", tmp_path / "c.csv"
    plain.write_text(text)
    for path in (zipped, disguised):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    expected = [(r["line"], r["raw"], _fields(r)) for r in _parsed(plain)]
    assert expected == [(n + 2, line, _expected(line)) for n, line in enumerate(ROWS)]
    for path in (zipped, disguised):
        assert [(r["line"], r["raw"], _fields(r)) for r in _parsed(path)] == expected


def test_truncated_gzip_keeps_the_lines_before_the_cut_and_says_where_it_broke(tmp_path):
    path = tmp_path / "cut.csv.gz"
    lines = [f"2024-03-01T10:00:00Z,u{n},i{n},view" for n in range(3000)]
    with gzip.open(path, "wb") as handle:
        handle.write(("\n".join([HEADER, *lines]) + "\n").encode())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    rows = _parsed(path)
    good, last = rows[:-1], rows[-1]
    assert 0 < len(good) < len(lines)
    assert [r["line"] for r in rows] == list(range(2, 2 + len(rows)))  # every line once, in order
    assert all(r["reason"] is None and r["raw"] == lines[r["line"] - 2] for r in good)
    assert last["raw"] is None and last["user_id"] is None
    assert last["reason"].startswith(f"file unreadable after line {last['line'] - 1}: ")


def test_ragged_rows_name_the_field_counts(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("\n".join([HEADER, "2024-03-01T10:00:00Z,u1,a", ROWS[0], ROWS[1] + ",extra"]) + "\n")
    assert [(r["line"], r["reason"]) for r in _parsed(path)] == [
        (2, "expected 4 fields, got 3"), (3, None), (4, "expected 4 fields, got 5")]


def test_malformed_csv_and_empty_lines_are_rejected_row_by_row(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("\n".join([HEADER, '2024-03-01T10:00:00Z,"u1,a,view', "", "   ", ROWS[0]]) + "\n")
    rows = _parsed(path)
    assert rows[0]["line"] == 2 and rows[0]["reason"].startswith("malformed CSV: ")
    assert [(r["line"], r["reason"]) for r in rows[1:]] == [(3, "empty line"), (4, "empty line"), (5, None)]
    assert all(r["user_id"] is None for r in rows[:3])  # a rejected row carries no fields


def test_bad_utf8_rejects_only_that_line_and_keeps_a_readable_copy(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(f"{HEADER}\n{ROWS[0]}\n".encode() + "2024-03-01T10:00:00Z,u\xe9,b,view\n".encode("latin-1")
                     + f"{ROWS[2]}\n".encode())
    rows = _parsed(path)
    assert [(r["line"], r["reason"] is None) for r in rows] == [(2, True), (3, False), (4, True)]
    assert rows[1]["reason"].startswith("line is not valid UTF-8 (") and "at byte 22" in rows[1]["reason"]
    assert rows[1]["raw"] == "2024-03-01T10:00:00Z,u\ufffd,b,view" and rows[1]["user_id"] is None


def test_a_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    csv_path, json_path = tmp_path / "bom.csv", tmp_path / "bom.jsonl"
    csv_path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(["timestamp,user_id,item_id,event_type", ROWS[0]]) + "\n").encode())
    record = dict(zip(HEADER.split(","), ROWS[0].split(",")))
    json_path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(record) + "\n").encode())
    (from_csv,) = _parsed(csv_path)
    (from_json,) = _parsed(json_path, "jsonl")
    assert from_csv["reason"] is None and _fields(from_csv) == _expected(ROWS[0])
    assert from_json["reason"] is None and _fields(from_json) == _expected(ROWS[0])


def test_a_header_without_a_required_column_rejects_every_row(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("timestamp;user_id;item_id;event_type\n" + "\n".join(r.replace(",", ";") for r in ROWS) + "\n")
    rows = _parsed(path)  # the default delimiter is ",": the header is one column
    assert [r["line"] for r in rows] == [2, 3, 4]
    assert all(r["reason"].startswith("file lacks required column(s) ['user_id', 'item_id', 'timestamp', 'event_type']")
               for r in rows)


def test_an_unreadable_header_still_accounts_for_every_data_line(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes("timestamp,user_\xe9d,item_id,event_type\n".encode("latin-1") + ("\n".join(ROWS) + "\n").encode())
    lines = [r["line"] for r in _parsed(path)]
    # "every line read comes out exactly once": the data lines 2..4 each with a reason (no usable header)
    assert len(lines) == len(set(lines)) and {2, 3, 4} <= set(lines) <= {1, 2, 3, 4}, lines
    assert all(r["reason"] is not None for r in _parsed(path))
    assert "the header line is unreadable" in _parsed(path)[0]["reason"]


def test_json_lines_fields_and_reasons(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [json.dumps({"timestamp": "2024-03-01T10:00:00Z", "user_id": 7, "item_id": "a", "event_type": "view",
                         "extra": [1]}),
             json.dumps({"timestamp": "2024-03-01T10:01:00Z", "user_id": "u2", "item_id": None, "event_type": "NA"}),
             '{"timestamp": "2024-03-01T10:02:00Z", "user_id": ', "[1, 2]", ""]
    path.write_text("\n".join(lines) + "\n")
    rows = _parsed(path, "jsonl")
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]  # no header in JSON lines
    assert _fields(rows[0]) == ("2024-03-01T10:00:00Z", "7", "a", "view") and rows[0]["reason"] is None
    assert _fields(rows[1]) == ("2024-03-01T10:01:00Z", "u2", None, None) and rows[1]["reason"] is None
    assert rows[2]["reason"].startswith("malformed JSON: ") and rows[2]["raw"] == lines[2]
    assert [r["reason"] for r in rows[3:]] == ["JSON line is not an object", "empty line"]


def test_parquet_rows_are_numbered_and_kept_as_json(tmp_path):
    path = tmp_path / "log.parquet"
    records = [dict(zip(HEADER.split(","), line.split(","))) for line in ROWS]
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=2)
    rows = _parsed(path, "parquet")
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert [_fields(r) for r in rows] == [_expected(line) for line in ROWS]
    assert [json.loads(r["raw"]) for r in rows] == records


def test_parquet_without_a_required_column_or_not_parquet_at_all(tmp_path):
    missing, garbage = tmp_path / "missing.parquet", tmp_path / "garbage.parquet"
    pq.write_table(pa.table({"timestamp": ["2024-03-01T10:00:00Z"] * 2, "user_id": ["u1", "u2"],
                             "event_type": ["view", "view"]}), missing)
    garbage.write_bytes(b"PAR1 not really parquet")
    rows = _parsed(missing, "parquet")
    assert [r["line"] for r in rows] == [1, 2]
    assert all(r["reason"] == "file lacks required column(s) ['item_id']" and r["user_id"] is None for r in rows)
    (broken,) = _parsed(garbage, "parquet")
    assert broken["line"] == 1 and broken["raw"] is None and broken["reason"].startswith("unreadable Parquet file: ")


def test_batches_are_flushed_at_the_batch_size_without_losing_a_row(tmp_path, monkeypatch):
    monkeypatch.setattr(raw_files, "BATCH_ROWS", 3)
    path = tmp_path / "log.csv"
    path.write_text("\n".join([HEADER, *(ROWS * 3), "bad"]) + "\n")
    batches = list(parse_file(path, "csv", ColumnMapping()))
    assert [b.num_rows for b in batches] == [3, 3, 3, 1]
    assert [line for b in batches for line in b.column("line").to_pylist()] == list(range(2, 12))


def test_file_parser_reads_each_listed_file_with_its_format(tmp_path):
    csv_path, json_path = tmp_path / "a.csv", tmp_path / "b.data"
    csv_path.write_text(f"{HEADER}\n{ROWS[0]}\n")
    json_path.write_text(json.dumps(dict(zip(HEADER.split(","), ROWS[1].split(",")))) + "\n")
    parse_files = make_file_parser(ColumnMapping().model_dump_json())
    files = pa.record_batch({"path": [str(csv_path), str(json_path)], "format": ["csv", "jsonl"]})
    rows = [row for batch in parse_files(iter([files])) for row in batch.to_pylist()]
    assert [(r["source_file"], r["line"], _fields(r)) for r in rows] == [
        (str(csv_path), 2, _expected(ROWS[0])), (str(json_path), 1, _expected(ROWS[1]))]
