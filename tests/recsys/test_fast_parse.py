"""The column-wise parser (``parse_file``) against the per-line reference (``parse_file(..., fast=False)``):
the same rows, line numbers, raw text and reasons, on tricky files and a random corpus; byte ranges that
together give the file's rows.

The reference parsers are the ones the quarantine tests pinned before the column-wise path existed;
every line the column-wise path cannot read exactly goes through them, so any difference here is a bug.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pyarrow as pa
import pytest

from recsys import raw_files
from recsys.raw_files import PARSED_SCHEMA, ColumnMapping, file_ranges, parse_file

HEADER = "timestamp,user_id,item_id,event_type"


def _table(path: Path, file_format: str, mapping: ColumnMapping, fast: bool, start: int = 0,
           end: int | None = None) -> pa.Table:
    batches = list(parse_file(path, file_format, mapping, start, end, fast=fast))
    assert all(batch.schema == PARSED_SCHEMA for batch in batches)
    return pa.Table.from_batches(batches, schema=PARSED_SCHEMA).combine_chunks()


def _assert_same(path: Path, mapping: ColumnMapping, file_format: str = "csv") -> pa.Table:
    reference = _table(path, file_format, mapping, fast=False)
    fast = _table(path, file_format, mapping, fast=True)
    if not fast.equals(reference):
        for old, new in zip(reference.to_pylist(), fast.to_pylist()):
            assert new == old
        assert fast.num_rows == reference.num_rows
    return fast


def _write(path: Path, data: bytes, compress: bool) -> Path:
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path


TRICKY = "\n".join([
    HEADER,
    "2024-03-01T10:00:00Z,u1,a,view",
    '2024-03-01T10:00:01Z,"u2",b,view',  # quoted
    '2024-03-01T10:00:02Z,"u,3",c,view',  # delimiter inside quotes
    '2024-03-01T10:00:03Z,u4,"d""x",view',  # doubled quote
    '2024-03-01T10:00:04Z,u5,"unclosed,view',  # malformed
    '2024-03-01T10:00:05Z,u6,e"x,view',  # quote inside a field
    "2024-03-01T10:00:06Z,u7,f,view\r",  # CRLF
    "2024-03-01T10:00:07Z,u8,g,view\r\r",  # two carriage returns
    "",  # blank
    "   \t ",  # whitespace only
    "\x1c\x1d",  # Python whitespace Arrow would not strip
    "\u3000",  # wide whitespace only
    "2024-03-01T10:00:08Z,\u3000u9\u3000,h,view",  # wide whitespace around a value
    "2024-03-01T10:00:09Z,\xa0u10,h,view",
    "2024-03-01T10:00:10Z,ü11,é,view",  # non-ASCII, no whitespace
    "2024-03-01T10:00:11Z,u12,i",  # too few fields
    "2024-03-01T10:00:12Z,u13,j,view,extra",  # too many
    "2024-03-01T10:00:13Z, u14 , k ,view",  # trimmed values
    "2024-03-01T10:00:14Z,\tu15\x0b,\x0cl,view",
    "2024-03-01T10:00:15Z,NA,m,view",  # null markers
    "2024-03-01T10:00:16Z,u16,null,NULL",
    "2024-03-01T10:00:17Z,,n,None",  # empty id
    "2024-03-01T10:00:18Z, ,o,",
    "2024-03-01T10:00:19Z,u17,p\x00,view",  # NUL
    "2024-03-01T10:00:20Z,u18,q\rr,view",  # carriage return inside
    ",,,",
    ",",
    "x",
    "2024-03-01T10:00:21Z,u19,s,view",  # last line without a newline
]).encode()
BAD_UTF8 = b"2024-03-01T10:00:22Z,u\xff20,t,view\n2024-03-01T10:00:23Z,u21,\xc3,view\n"


@pytest.mark.parametrize("compress", [False, True])
def test_tricky_lines_read_the_same(tmp_path, compress):
    data = TRICKY.replace(b"\n2024-03-01T10:00:21Z", b"\n" + BAD_UTF8 + b"2024-03-01T10:00:21Z")
    fast = _assert_same(_write(tmp_path / "log.csv", data, compress), ColumnMapping())
    reasons = fast.column("reason").to_pylist()
    assert reasons.count(None) >= 8 and "empty line" in reasons
    assert any(r and r.startswith("expected 4 fields") for r in reasons)
    assert any(r and r.startswith("line is not valid UTF-8") for r in reasons)
    assert any(r and r.startswith("malformed CSV") for r in reasons)


@pytest.mark.parametrize("compress", [False, True])
def test_bom_crlf_and_trailing_newlines(tmp_path, compress):
    data = b"\xef\xbb\xbf" + HEADER.encode() + b"\r\n2024-03-01T10:00:00Z,u1,a,view\r\n\r\n\n"
    _assert_same(_write(tmp_path / "log.csv", data, compress), ColumnMapping())
    headless = ColumnMapping(header=False, columns=("timestamp", "user_id", "item_id", "event_type"))
    fast = _assert_same(_write(tmp_path / "h.csv", b"\xef\xbb\xbf2024-03-01T10:00:00Z,u1,a,view\n", compress), headless)
    assert fast.column("time_raw").to_pylist() == ["2024-03-01T10:00:00Z"]


@pytest.mark.parametrize("mapping, text", [
    (ColumnMapping(delimiter="::", header=False, columns=("user_id", "item_id", "rating", "timestamp"),
                   event_type=None, time_format="unix_s"),
     "1::10::5::978300760\n2::20::3\n3::\"30\"::4::978300761\n4:::40::1::1\n 5 :: 50 ::2::1\n::::\n"),
    (ColumnMapping(delimiter="\t"), HEADER.replace(",", "\t") + "\n2024\tu1\ta\tview\n2024\t u2\t\"b\"\tcart\n\t\t\t\n"),
    (ColumnMapping(delimiter="\x1f"), HEADER.replace(",", "\x1f") + "\n2024\x1fu1\x1fa\x1fview\n\x1f\x1f\x1f\n"),
    (ColumnMapping(), "timestamp,user_id\n2024,u1\n2024,u2,x\n"),  # header lacks columns
    (ColumnMapping(), "timestamp,user_id,item_id,item_id,event_type\n2024,u1,a,b,view\n"),  # a column twice
    (ColumnMapping(header=False, columns=("timestamp", "user_id")), "2024,u1\n2024\n"),  # mapping names absent columns
    (ColumnMapping(), "\xff\xfe\n2024,u1,a,view\n"),  # unreadable header
    (ColumnMapping(), ""),
    (ColumnMapping(), HEADER),
    (ColumnMapping(), "\n\n"),
    (ColumnMapping(user_id="session", session_id="session", category="cat", price="price"),
     "timestamp,session,item_id,event_type,cat,price\n2024,s1,a,view,c1,1.5\n2024,s2,b,view,,NA\n"),
])
def test_layouts_read_the_same(tmp_path, mapping, text):
    for compress in (False, True):
        data = text.encode("latin-1") if "\xff" in text else text.encode()
        _assert_same(_write(tmp_path / "log.csv", data, compress), mapping)


def test_truncated_and_corrupt_gzip_break_at_the_same_line(tmp_path):
    body = (HEADER + "\n" + "".join(f"2024-03-01T10:00:{i % 60:02d}Z,u{i},i{i % 97},view\n" for i in range(20_000))).encode()
    packed = gzip.compress(body, mtime=0)
    for cut in (5, 11, 30, len(packed) // 3, len(packed) - 9, len(packed) - 3):
        path = tmp_path / f"cut{cut}.csv.gz"
        path.write_bytes(packed[:cut])
        fast = _assert_same(path, ColumnMapping())
        if cut > 30:
            assert fast.column("reason").to_pylist()[-1].startswith("file unreadable after line ")
        _assert_ranges_read_the_same(path, fast, len(body))
    corrupt = bytearray(packed)
    corrupt[len(corrupt) // 2] ^= 0xFF
    (tmp_path / "corrupt.csv.gz").write_bytes(bytes(corrupt))
    _assert_ranges_read_the_same(tmp_path / "corrupt.csv.gz", _assert_same(tmp_path / "corrupt.csv.gz", ColumnMapping()),
                                 len(body))
    (tmp_path / "crc.csv.gz").write_bytes(packed[:-8] + b"\0\0\0\0" + packed[-4:])
    _assert_ranges_read_the_same(tmp_path / "crc.csv.gz", _assert_same(tmp_path / "crc.csv.gz", ColumnMapping()),
                                 len(body))


def _assert_ranges_read_the_same(path: Path, whole: pa.Table, text_bytes: int) -> None:
    """Byte ranges of the text, some past a break in the file, together give the whole read's rows: one
    "file unreadable" row, from the range the broken line starts in."""
    for split in (text_bytes // 7, text_bytes // 2 + 1):
        starts = list(range(0, text_bytes + split, split))  # the last ranges start past the text
        ranges = list(zip(starts, starts[1:])) + [(starts[-1], None)]
        parts = pa.concat_tables([_table(path, "csv", ColumnMapping(), True, start, end) for start, end in ranges])
        assert parts.combine_chunks().equals(whole), (path.name, split)


PIECES = ["2024-03-01T10:00:00Z", "u1", " u2 ", "a", "view", "cart", "", " ", "NA", "null", '"q"', '"a,b"', '"',
          "é", "\u3000", "\xa0", "\t", "\x00", "\r", "x\x1cy", ",", "::", "1", "1.5", "None", "\ufeff"]


def _random_line(rng: random.Random, delimiter: str) -> str:
    n = rng.choice([0, 1, 3, 4, 4, 4, 4, 5])
    return delimiter.join(rng.choice(PIECES) if rng.random() < 0.4 else rng.choice(PIECES[:6]) for _ in range(n))


@pytest.mark.parametrize("delimiter", [",", "::", "\t"])
def test_random_corpus_reads_the_same(tmp_path, monkeypatch, delimiter):
    monkeypatch.setattr(raw_files, "BLOCK_BYTES", 4096)  # many blocks, lines cut across them
    rng = random.Random(hash(delimiter) % 1000)
    mapping = ColumnMapping(delimiter=delimiter, category="cat")
    for round_ in range(6):
        header = delimiter.join(["timestamp", "user_id", "item_id", "event_type"] + (["cat"] if round_ % 2 else []))
        lines = [header] + [_random_line(rng, delimiter) for _ in range(3000)]
        data = "\n".join(lines).encode() + (b"\n" if round_ % 3 else b"")
        if round_ == 4:
            data = data.replace(b"\xc3\xa9", b"\xc3", 5)  # some bad UTF-8
        path = _write(tmp_path / f"r{round_}.csv", data, compress=round_ % 2 == 1)
        _assert_same(path, mapping)


def test_byte_ranges_together_read_the_whole_file(tmp_path, monkeypatch):
    monkeypatch.setattr(raw_files, "BLOCK_BYTES", 1000)
    rng = random.Random(3)
    mapping = ColumnMapping()
    for n_lines, splits in ((120, (1, 5, 61, 1000)), (4000, (4096, 50_000))):
        lines = [HEADER] + [_random_line(rng, ",") for _ in range(n_lines)]
        path = tmp_path / "log.csv"
        path.write_bytes("\r\n".join(lines).encode())
        whole = _table(path, "csv", mapping, fast=False)
        for split in splits + (path.stat().st_size - 1,):
            ranges = file_ranges(path, "csv", split)
            assert len(ranges) > 1 and ranges[0][0] == 0 and ranges[-1][1] is None
            parts = pa.concat_tables([_table(path, "csv", mapping, True, start, end) for start, end in ranges])
            assert parts.combine_chunks().equals(whole)
    assert file_ranges(path, "csv", path.stat().st_size) == [(0, None)]
    gz = _write(tmp_path / "z.csv", path.read_bytes(), compress=True)
    assert len(file_ranges(gz, "csv", 10)) == raw_files.MAX_GZIP_RANGES  # each range decompresses up to it
    for split in (path.stat().st_size // 5, path.stat().st_size // 2 + 1, path.stat().st_size):
        ranges = file_ranges(gz, "csv", split)
        assert ranges[0][0] == 0 and ranges[-1][1] is None
        assert len(ranges) == -(-path.stat().st_size // split)  # sized from the length in the gzip trailer
        parts = pa.concat_tables([_table(gz, "csv", mapping, True, start, end) for start, end in ranges])
        assert parts.combine_chunks().equals(_table(gz, "csv", mapping, fast=False))


def test_jsonl_byte_ranges_read_like_the_reference(tmp_path):
    rows = ['{"timestamp": "2024", "user_id": "u1", "item_id": 7, "event_type": "view"}', "", "[1]", "{bad",
            '{"timestamp": "2024", "user_id": 7.0, "item_id": NaN, "event_type": "view"}']
    path = tmp_path / "log.jsonl"
    path.write_bytes(("\n".join(rows * 50) + "\n").encode())
    mapping = ColumnMapping()
    fast = _assert_same(path, mapping, "jsonl")
    parts = [_table(path, "jsonl", mapping, True, start, end) for start, end in file_ranges(path, "jsonl", 333)]
    assert pa.concat_tables(parts).combine_chunks().equals(fast)


def test_python_whitespace_table_covers_every_code_point():
    assert raw_files._PY_SPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


def test_parquet_reads_the_same_column_wise_and_row_by_row(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr(raw_files, "BATCH_ROWS", 7)
    rng = random.Random(5)
    floats = [7.0, -0.0, 0.0, 1.5, 0.1, 1e-5, 1e16, 123456789.125, float("nan"), float("inf"), None, 2.0**60, 1 / 3]
    strings = ["u1", " u2 ", "", "NA", 'q"x', "b\\s", "é", "\u3000", "\t", None, "null", "x\ny"]
    n = 300
    table = pa.table({
        "timestamp": pa.array([rng.choice(["2024-03-01T10:00:00Z", "bad", None]) for _ in range(n)]),
        "user_id": pa.array([rng.choice(strings) for _ in range(n)]),
        "item_id": pa.array([rng.choice(floats) for _ in range(n)], pa.float64()),
        "event_type": pa.array([rng.choice(["view", "cart", None]) for _ in range(n)]),
        "session": pa.array([rng.choice([1, -5, None, 2**62]) for _ in range(n)], pa.int64()),
        "price": pa.array([rng.choice(floats) for _ in range(n)], pa.float32()),
        "weird \"name\"": pa.array([rng.choice(strings) for _ in range(n)]),
    })
    pq.write_table(table, tmp_path / "log.parquet")
    mapping = ColumnMapping(session_id="session", price="price", category="weird \"name\"")
    fast = _assert_same(tmp_path / "log.parquet", mapping, "parquet")
    assert fast.num_rows == n
    pq.write_table(table.append_column("when", pa.array([None] * n, pa.timestamp("us", tz="UTC"))),
                   tmp_path / "t.parquet")  # a timestamp column: read row by row
    _assert_same(tmp_path / "t.parquet", mapping, "parquet")
    _assert_same(tmp_path / "log.parquet", ColumnMapping(user_id="nobody"), "parquet")  # a missing column
    plain = pa.table({"timestamp": ["2024"] * 50, "user_id": [f"u{i}" for i in range(50)],
                      "item_id": pa.array(range(50), pa.int32()), "event_type": ["view"] * 50})
    pq.write_table(plain, tmp_path / "plain.parquet")
    assert _assert_same(tmp_path / "plain.parquet", ColumnMapping(), "parquet").column("item_id")[3].as_py() == "3"


def test_plain_lines_take_the_column_wise_path_and_tricky_ones_do_not():
    plan = raw_files._CsvPlan(ColumnMapping(), HEADER.split(","), None)
    block = raw_files._Block(2, "2024,u1,a,view\r\n2024,ü,a,view\n2024,\"u\",a,view\n \t\n2024,\u3000,a,view\n"
                                "2024,u\x00,a,view\n,,,\n\n2024,u2,a\n".encode())
    lines = raw_files._split_lines(block)
    assert lines.values.to_pylist()[0] == b"2024,u1,a,view"
    assert raw_files._simple_lines(lines, plan.classes).tolist() == [True, True, False, False, False, False, True,
                                                                      False, True]


@pytest.mark.slow
@pytest.mark.parametrize("compress", [False, True])
def test_spark_read_splits_a_file_and_spreads_the_rows(spark, tmp_path, monkeypatch, compress):
    from recsys import ingest as ingest_module
    from recsys.listing import list_raw_files

    rng = random.Random(11)
    lines = [HEADER] + [f"2024-03-01T10:{i % 60:02d}:00Z,u{i % 50},{_random_line(rng, ',')[:3]},view" for i in range(3000)]
    path = _write(tmp_path / "log.csv", "\n".join(lines).encode(), compress)
    monkeypatch.setattr(ingest_module, "READ_SPLIT_BYTES", 10_000)
    files, _ = list_raw_files(path, "csv")
    parsed = ingest_module._parse(spark, files, ColumnMapping())
    n_ranges = len(file_ranges(path, "csv", 10_000))
    spread = int(spark.conf.get("spark.sql.shuffle.partitions"))
    assert n_ranges > spread  # enough read tasks: no shuffle after the read, one range per partition
    per_partition = parsed.rdd.mapPartitions(lambda rows: [sum(1 for _ in rows)]).collect()
    assert len(per_partition) == n_ranges and all(per_partition)
    rows = sorted(parsed.select("line", "raw", "reason").collect())
    reference = _table(path, "csv", ColumnMapping(), fast=False)
    assert [r["line"] for r in rows] == reference.column("line").to_pylist()
    assert [r["raw"] for r in rows] == reference.column("raw").to_pylist()
    monkeypatch.setattr(ingest_module, "READ_SPLIT_BYTES", 2**30)
    whole = ingest_module._parse(spark, files, ColumnMapping())
    assert whole.rdd.getNumPartitions() == spread  # one small file: one read task, then spread
    assert sorted(whole.select("line", "raw", "reason").collect()) == rows
