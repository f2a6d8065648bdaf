"""Reading raw log files line by line into string columns, keeping each line's file, number and text.

This is the part of ingest that runs inside Spark tasks, one file, or one byte range of a large
CSV or JSONL file, gzip or not (``file_ranges``), per task (``parse_files`` is the ``mapInArrow`` function). Lines are
read column-wise where that gives the same rows (see "The column-wise path" below: numpy and
``pyarrow.compute`` over blocks of lines, as Arrow's own CSV reader works,
https://arrow.apache.org/docs/cpp/csv.html), one by one through the reference parsers otherwise.
It only splits lines into fields and flags what cannot be split: bad encoding, a wrong field count, a
missing column, a truncated gzip. Typing and value checks happen afterwards in Spark SQL (``recsys.ingest``). Every line read comes out exactly once, either with
fields or with a reason, so the ingest accounting can balance; a ``sequence`` line
(``user item item ...``) comes out once per item, so there a row is one (user, item) position.

One broken file never fails the task: whatever a parser raises ends that file with one row whose reason
starts with ``file unreadable`` (``FILE_FAILURES``), after the rows read before it; the other files of
the task go on. Ids from JSON and Parquet, which may be numbers, are rendered canonically
(``canonical_id``): ``7``, ``7.0`` and ``"7"`` are the same id, while a NaN, an infinity, a boolean, an
object or a list is no id and its row is quarantined.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.mapping import ColumnMapping

# Canonical raw fields every parser emits, as strings (None where absent).
FIELDS = ("user_id", "item_id", "time_raw", "time_offset", "event_type_raw", "session_raw", "category", "brand", "price")
PARSED_SCHEMA = pa.schema(
    [("source_file", pa.string()), ("line", pa.int64()), ("raw", pa.string())]
    + [(name, pa.string()) for name in FIELDS]
    + [("reason", pa.string())]
)
PARSED_DDL = ", ".join(f"{f.name} {'bigint' if f.type == pa.int64() else 'string'}" for f in PARSED_SCHEMA)
BATCH_ROWS = 50_000
GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
# Reasons that end a file's read: ingest marks such a file failed in the manifest.
FILE_FAILURES = ("file unreadable", "unreadable Parquet file")
ID_FIELDS = {"user_id": "user id", "item_id": "item id", "session_raw": "session id"}
# A line is already in memory when it is split, so the csv module's 128 KiB field limit protects nothing;
# over-long ids are quarantined afterwards (ingest.max_field_chars).
csv.field_size_limit(2**31 - 1)

# The synthetic clock of format "sequence" (see ColumnMapping.format): a user's items but the last one
# second apart from 2000-01-01 00:00:00 UTC (one session, one training day), the last item alone at
# 2000-01-02 23:59:59 UTC (the test day), so the daily temporal split is leave-last-out.
SEQUENCE_HISTORY_START = 946_684_800  # 2000-01-01T00:00:00Z, unix seconds
SEQUENCE_LAST_ITEM = 946_857_599  # 2000-01-02T23:59:59Z
SEQUENCE_MAX_ITEMS = 86_400 + 1  # a day of one-second steps, then the last item


def detect_format(path: Path, default: str) -> str:
    """The parser a file gets: by its suffix, else the mapping's format; a sequence mapping reads every file
    as sequences (their .txt would otherwise read as CSV)."""
    if default == "sequence":
        return "sequence"
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    return default


def source_columns(mapping: ColumnMapping) -> dict[str, str | None]:
    """Canonical raw field -> the raw column it comes from (None: not in this log)."""
    return {
        "user_id": mapping.user_id,
        "item_id": mapping.item_id,
        "time_raw": mapping.event_time,
        "time_offset": mapping.time_offset_column,
        "event_type_raw": mapping.event_type,
        "session_raw": mapping.session_id,
        "category": mapping.category,
        "brand": mapping.brand,
        "price": mapping.price,
    }


REQUIRED_FIELDS = ("user_id", "item_id", "event_time", "time_offset_column", "event_type", "session_id")


def required_columns(mapping: ColumnMapping) -> list[str]:
    """The raw columns a file must have, each once, in the order of the mapping's fields."""
    return list(_required_by(mapping))


def _required_by(mapping: ColumnMapping) -> dict[str, list[str]]:
    """Required raw column -> the mapping fields that name it (one column may serve two, e.g. a session
    id standing in for the user)."""
    needed: dict[str, list[str]] = {}
    for field in REQUIRED_FIELDS:
        column = getattr(mapping, field)
        if column:
            needed.setdefault(column, []).append(field)
    return needed


def _normalized(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def missing_columns_reason(mapping: ColumnMapping, present: list[str], show_header: bool = False) -> str | None:
    """Why a file with these columns cannot be read by the mapping, or None when it has them all.

    Each missing raw column is named once, with the mapping fields that read it where that is not
    plain (a renamed field, or one column for two fields), and with the file's column that differs
    only in case or underscores (``sessionId`` for ``session_id``).
    """
    missing = {column: fields for column, fields in _required_by(mapping).items() if column not in present}
    if not missing:
        return None
    notes = []
    for column, fields in missing.items():
        note = repr(column) if fields == [column] else f"{column!r} for {' and '.join(fields)}"
        near = [name for name in present if _normalized(name) == _normalized(column)]
        notes.append(note + (f" (the file has {near[0]!r})" if near else ""))
    reason = f"file lacks required column(s) {list(missing)}"
    if notes != [repr(column) for column in missing]:
        reason += ": " + "; ".join(notes)
    return reason + (f" (header has {present})" if show_header else "")


@dataclass
class _Batch:
    """Accumulates parsed rows column-wise and flushes them as Arrow record batches."""

    source_file: str

    last_line: int = 0  # the line of the last row added, kept across flushes: where a broken file stopped

    def __post_init__(self) -> None:
        self.columns: dict[str, list] = {name: [] for name in PARSED_SCHEMA.names}

    def add(self, line: int, raw: str | None, fields: dict[str, str | None] | None, reason: str | None) -> None:
        self.last_line = line
        cols = self.columns
        cols["source_file"].append(self.source_file)
        cols["line"].append(line)
        cols["raw"].append(raw)
        for name in FIELDS:
            cols[name].append(fields.get(name) if fields else None)
        cols["reason"].append(reason)

    def __len__(self) -> int:
        return len(self.columns["line"])

    def flush(self) -> pa.RecordBatch:
        batch = pa.RecordBatch.from_pydict(self.columns, schema=PARSED_SCHEMA)
        self.__post_init__()
        return batch


def _open_bytes(path: Path) -> io.BufferedIOBase:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _null(value: str | None, markers: frozenset[str]) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value in markers else value


def canonical_id(value: object) -> tuple[str | None, str | None]:
    """A JSON or Parquet value as id text, or (None, what makes it no id). Integral numbers are written as
    integers (``7.0`` -> ``"7"``), so an id means the same whether a log wrote it as text or number."""
    if value is None or isinstance(value, str):
        return value, None
    if isinstance(value, bool):
        return None, f"is a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return str(value), None
    if isinstance(value, (float, Decimal)):
        if isinstance(value, float) and not math.isfinite(value) or isinstance(value, Decimal) and not value.is_finite():
            return None, "is NaN" if value != value else f"is infinite ({value})"
        return (str(int(value)), None) if value == int(value) else (str(value), None)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8"), None
        except UnicodeDecodeError:
            return None, "is bytes that are not UTF-8"
    return None, f"is not a string or a number ({type(value).__name__}: {_clip(value)})"


def _clip(value: object, chars: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= chars else text[:chars] + "..."


def _pick_fields(record: dict[str, object], mapping: ColumnMapping,
                 markers: frozenset[str]) -> tuple[dict[str, str | None], str | None]:
    """The canonical fields of one record, and the first reason its ids cannot be ids (None: they can)."""
    picked: dict[str, str | None] = {}
    reason = None
    for field, column in source_columns(mapping).items():
        value = record.get(column) if column else None
        if field in ID_FIELDS:
            text, problem = canonical_id(value)
            if problem and reason is None:
                reason = f"{ID_FIELDS[field]} {problem} (column '{column}')"
            picked[field] = _null(text, markers) or None  # an empty id is no id, whatever the null markers
        else:
            picked[field] = _null(None if value is None else str(value), markers)
    return picked, reason


def _line_text(raw: bytes, line_no: int) -> tuple[str, str | None]:
    """One line's bytes as text: line ends and a byte-order mark on line 1 cut off; the reason when it is
    not UTF-8 (then the text has U+FFFD for the bad bytes)."""
    raw = raw.rstrip(b"\r\n")
    if line_no == 1 and raw.startswith(BOM):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", errors="replace"), f"line is not valid UTF-8 ({exc.reason} at byte {exc.start})"


def _decoded_lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """Yield (line number, text, reason) for each line; text is None when the line cannot be read."""
    line_no = 0
    try:
        with _open_bytes(path) as handle:
            for line_no, raw in enumerate(handle, start=1):
                yield line_no, *_line_text(raw, line_no)
    except (EOFError, OSError, zlib.error) as exc:
        yield line_no + 1, None, f"file unreadable after line {line_no}: {type(exc).__name__}: {exc}"


def _split_fields(text: str, delimiter: str, strict: bool = True) -> list[str]:
    """One CSV line's fields. A one-character delimiter follows CSV quoting; a longer one (MovieLens
    ``::``) is split on literally, as the files that use one have no quoting. Raises ``csv.Error``."""
    if len(delimiter) > 1:
        return text.split(delimiter)
    return next(csv.reader([text], delimiter=delimiter, strict=strict))


def _parse_csv(path: Path, mapping: ColumnMapping, batch: _Batch) -> Iterator[pa.RecordBatch]:
    markers = frozenset(mapping.null_markers)
    header: list[str] | None = None if mapping.header else list(mapping.columns)
    file_reason: str | None = None
    for line_no, text, reason in _decoded_lines(path):
        if header is None:  # the first line is the header, readable or not
            header, file_reason = _header_of(text, reason, mapping)
            continue
        _add_csv_line(batch, line_no, text, reason, header, file_reason, mapping, markers)
        if len(batch) >= BATCH_ROWS:
            yield batch.flush()


def _header_of(text: str | None, reason: str | None, mapping: ColumnMapping) -> tuple[list[str], str | None]:
    """A CSV header line's column names, and the reason no row of the file can be read (None: they can)."""
    if reason is not None or text is None:
        return [], f"the header line is unreadable ({reason}): no column can be named"
    header = [name.strip() for name in _split_fields(text, mapping.delimiter, strict=False)]
    return header, missing_columns_reason(mapping, header, show_header=True)


def _add_csv_line(batch: _Batch, line_no: int, text: str | None, reason: str | None, header: list[str],
                  file_reason: str | None, mapping: ColumnMapping, markers: frozenset[str]) -> None:
    """One CSV line after the header, as fields or with the reason it has none."""
    if text is not None and reason is None and not text.strip():
        batch.add(line_no, text, None, "empty line")
    elif reason is not None or text is None:
        batch.add(line_no, text, None, reason)
    elif file_reason is not None:
        batch.add(line_no, text, None, file_reason)
    else:
        _add_csv_row(batch, line_no, text, header or [], mapping, markers)


def _add_csv_row(batch: _Batch, line_no: int, text: str, header: list[str], mapping: ColumnMapping,
                 markers: frozenset[str]) -> None:
    try:
        values = _split_fields(text, mapping.delimiter)
    except csv.Error as exc:
        batch.add(line_no, text, None, f"malformed CSV: {exc}")
        return
    if len(values) != len(header):
        batch.add(line_no, text, None, f"expected {len(header)} fields, got {len(values)}")
        return
    batch.add(line_no, text, *_pick_fields(dict(zip(header, values)), mapping, markers))


def _parse_jsonl(path: Path, mapping: ColumnMapping, batch: _Batch) -> Iterator[pa.RecordBatch]:
    markers = frozenset(mapping.null_markers)
    for line_no, text, reason in _decoded_lines(path):
        if reason is not None or text is None:
            batch.add(line_no, text, None, reason)
        elif not text.strip():
            batch.add(line_no, text, None, "empty line")
        else:
            _add_json_row(batch, line_no, text, mapping, markers)
        if len(batch) >= BATCH_ROWS:
            yield batch.flush()


def _add_json_row(batch: _Batch, line_no: int, text: str, mapping: ColumnMapping, markers: frozenset[str]) -> None:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        batch.add(line_no, text, None, f"malformed JSON: {exc.msg} at column {exc.colno}")
        return
    except (ValueError, RecursionError) as exc:  # a number over 4300 digits, nesting deeper than the stack
        batch.add(line_no, text, None, f"malformed JSON: {type(exc).__name__}: {str(exc)[:200]}")
        return
    if not isinstance(record, dict):
        batch.add(line_no, text, None, "JSON line is not an object")
        return
    batch.add(line_no, text, *_pick_fields(record, mapping, markers))


def _open_parquet(path: Path, mapping: ColumnMapping, batch: _Batch) -> tuple[pq.ParquetFile | None, str | None]:
    """The Parquet file and why the mapping cannot read it (None: it can); (None, None) when it cannot be
    opened, after adding the row that says so."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        batch.add(1, None, None, f"unreadable Parquet file: {exc}")
        return None, None
    return parquet, missing_columns_reason(mapping, parquet.schema_arrow.names)


def _parse_parquet(path: Path, mapping: ColumnMapping, batch: _Batch) -> Iterator[pa.RecordBatch]:
    markers = frozenset(mapping.null_markers)
    parquet, missing = _open_parquet(path, mapping, batch)
    if parquet is None:
        return
    row_no = 0
    for record_batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        for record in record_batch.to_pylist():
            row_no += 1
            raw = json.dumps(record, default=str)
            if missing:
                batch.add(row_no, raw, None, missing)
            else:
                batch.add(row_no, raw, *_pick_fields(record, mapping, markers))
        if len(batch) >= BATCH_ROWS:
            yield batch.flush()


def _split_sequence(text: str, delimiter: str) -> list[str]:
    """Tokens of a sequence line: a space or tab delimiter splits on any run of whitespace."""
    return text.split() if delimiter.isspace() else [t.strip() for t in text.split(delimiter)]


def _parse_sequence(path: Path, mapping: ColumnMapping, batch: _Batch) -> Iterator[pa.RecordBatch]:
    """``user item item ...`` lines as one row per item, with the synthetic time of its position.

    A user's sequence may go on over consecutive lines (SASRec's ``user item`` per line): it ends
    where the next line names another user, and only then are its times known (the last item is the
    held-out one). A user whose items resume after another user's are rejected, as their order
    against the earlier run is unknown.
    """
    markers = frozenset(mapping.null_markers)
    run: list[tuple[int, str]] = []  # (line, item token) of the current user's consecutive lines
    run_user: str | None = None
    started: dict[str, int] = {}  # user -> the line their sequence began on
    for line_no, text, reason in _decoded_lines(path):
        if mapping.header and line_no == 1 and reason is None:
            continue
        if reason is not None or text is None:
            batch.add(line_no, text, None, reason)
            continue
        tokens = _split_sequence(text, mapping.delimiter)
        if not tokens:
            batch.add(line_no, text, None, "empty line")
            continue
        user = _null(tokens[0], markers)
        if user is None:
            batch.add(line_no, text, None, "null user id (the first token of a sequence line)")
        elif len(tokens) == 1:
            batch.add(line_no, text, None, "sequence line has a user but no items")
        elif user == run_user:
            run.extend((line_no, item) for item in tokens[1:])
        elif user in started:
            for item in tokens[1:]:
                batch.add(line_no, f"{user} {item}", None, f"user {user!r} resumes the sequence begun on line "
                          f"{started[user]} after another user's lines: their order is unknown")
        else:
            _add_sequence(batch, run_user, run, markers)
            run_user, run = user, [(line_no, item) for item in tokens[1:]]
            started[user] = line_no
        if len(batch) >= BATCH_ROWS:
            yield batch.flush()
    _add_sequence(batch, run_user, run, markers)


def _add_sequence(batch: _Batch, user: str | None, run: list[tuple[int, str]], markers: frozenset[str]) -> None:
    """One user's items, each at its synthetic time: history one second apart, the last item apart."""
    n = len(run)
    for position, (line_no, item) in enumerate(run, start=1):
        raw = f"{user} {item} (item {position} of {n})"
        if n > SEQUENCE_MAX_ITEMS:
            batch.add(line_no, raw, None, f"sequence of {n} items is longer than {SEQUENCE_MAX_ITEMS}, the most "
                                          "the synthetic clock holds (one day of one-second steps, then the last item)")
            continue
        seconds = SEQUENCE_LAST_ITEM if position == n else SEQUENCE_HISTORY_START + position - 1
        fields = {name: None for name in FIELDS} | {"user_id": user, "item_id": _null(item, markers),
                                                     "time_raw": str(seconds)}
        batch.add(line_no, raw, fields, None)


# ---- The column-wise path ---------------------------------------------------------------------------------
# The same rows as the per-line parsers above (which stay the reference, and read every line this path
# cannot): a file is decompressed in blocks of whole lines, split into lines with numpy, and the lines
# that are "simple" (valid UTF-8, no quote character, no NUL or carriage return, not blank, no whitespace
# whose stripping Python and Arrow could disagree on) are split into fields and null-marked with
# pyarrow.compute, column by column. Every other line goes through ``_add_csv_line`` one by one, so its
# reason text is the reference's. A CSV or JSONL file can be read as several byte ranges of its text.

BLOCK_BYTES = 16 * 2**20  # decompressed bytes per block (cut at the last line end, the rest carried over)
_PY_SPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())  # every str.isspace() character
_WIDE_SPACE = re.compile("[" + "".join(c for c in _PY_SPACE if ord(c) > 0x7F) + "]")
# The whitespace a simple line can hold (its \r, \x1c-\x1f and wide spaces send it to the per-line code):
# what str.strip() takes off a field of it.
_FIELD_TRIM = " \t\x0b\x0c"
_QUOTE, _UNSAFE, _HIGH, _SOLID = 1, 2, 4, 8  # byte classes, OR-ed over a line


@dataclass(frozen=True)
class _Block:
    """Whole lines of a file, the first of them numbered ``first_line``; each ends with a newline
    except the file's last."""

    first_line: int
    data: bytes


@dataclass(frozen=True)
class _Broken:
    """The read broke off before line ``line`` (what ``_decoded_lines`` yields as its last item)."""

    line: int
    reason: str


def _first_line_at(handle: io.BufferedIOBase, start: int) -> tuple[int, int, bytes]:
    """(offset, lines before it, the bytes read past it) of the first line that starts at or after byte
    ``start`` > 0, found in one forward pass (a gzip stream has no seek but decompressing from the start)."""
    position, lines = 0, 0
    while chunk := handle.read1(BLOCK_BYTES):  # read1: a broken gzip stream raises after the data before the break
        found = chunk.find(b"\n", max(start - 1 - position, 0)) if position + len(chunk) >= start else -1
        if found >= 0:
            return position + found + 1, lines + chunk.count(b"\n", 0, found + 1), chunk[found + 1:]
        lines += chunk.count(b"\n")
        position += len(chunk)
    return position, lines, b""


def _owned(whole: bytes, position: int, end: int | None) -> tuple[bytes, bool]:
    """The lines of ``whole`` (starting at file offset ``position``) that start before ``end``, and
    whether a line starts at or after it (the range is done)."""
    if end is None:
        return whole, False
    if position >= end:
        return b"", True
    last_end = whole.find(b"\n", end - position - 1)  # the newline that ends the last line starting before end
    return (whole, False) if last_end < 0 else (whole[:last_end + 1], True)


def _line_blocks(path: Path, start: int = 0, end: int | None = None,
                 block_bytes: int | None = None) -> Iterator[_Block | _Broken]:
    """The lines that start in bytes [start, end) of a file, decompressed (all of it by default), in blocks
    of whole lines; a read that breaks off ends with ``_Broken`` after the whole lines read before it, as
    ``_decoded_lines`` does, from the one range that owns the line it broke in."""
    block_bytes = block_bytes or BLOCK_BYTES
    lines_before, position, carry, opened = 0, 0, b"", False
    try:
        with _open_bytes(path) as handle:
            opened = True
            if start > 0:
                try:
                    position, lines_before, carry = _first_line_at(handle, start)
                except (EOFError, OSError, zlib.error):
                    return  # it broke in a line that starts before this range: that range reports it
            broken, done = None, False
            while not done:
                pending, size, at_end = [carry], len(carry), False
                while not at_end and size < block_bytes + len(carry):
                    try:
                        chunk = handle.read1(block_bytes)
                    except (EOFError, OSError, zlib.error) as exc:
                        broken, chunk = exc, b""
                    at_end = not chunk
                    pending.append(chunk)
                    size += len(chunk)
                data = b"".join(pending)
                cut = len(data) if at_end and broken is None else data.rfind(b"\n") + 1
                whole, carry = data[:cut], data[cut:]
                whole, done = _owned(whole, position, end)
                if whole:
                    yield _Block(lines_before + 1, whole)
                    lines_before += whole.count(b"\n") + (not whole.endswith(b"\n"))
                position += len(whole)
                if broken is not None and not done:
                    raise broken
                done = done or at_end
    except (EOFError, OSError, zlib.error) as exc:
        if start > 0 and not opened:
            return  # the file cannot be opened: the range at 0 reports it
        yield _Broken(lines_before + 1, f"file unreadable after line {lines_before}: {type(exc).__name__}: {exc}")


@dataclass
class _Lines:
    """The lines of a block as Arrow binary values (line ends and a BOM on line 1 cut off, as
    ``_line_text`` does) and the bytes behind them."""

    first_line: int
    values: pa.BinaryArray
    data: np.ndarray  # uint8, the values' bytes back to back
    offsets: np.ndarray  # int32, len(values) + 1

    def __len__(self) -> int:
        return len(self.values)

    def raw(self, index: int) -> bytes:
        return self.data[self.offsets[index]:self.offsets[index + 1]].tobytes()


def _split_lines(block: _Block) -> _Lines:
    data = np.frombuffer(block.data, np.uint8)
    newlines = np.flatnonzero(data == 10)
    ends = newlines if block.data.endswith(b"\n") else np.append(newlines, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1))
    line_ends = ends.copy()
    while True:  # rstrip(b"\r\n"): every carriage return before the line end
        carriage = (ends > starts) & (data[np.maximum(ends - 1, 0)] == 13)
        if not carriage.any():
            break
        ends[carriage] -= 1
    keep = data != 10
    if (ends != line_ends).any():
        marks = np.zeros(len(data) + 1, np.int8)
        stripped = ends != line_ends
        marks[ends[stripped]] += 1
        marks[line_ends[stripped]] -= 1
        keep &= np.cumsum(marks[:-1], dtype=np.int8) == 0
    if block.first_line == 1 and ends[0] - starts[0] >= 3 and block.data.startswith(BOM):
        starts[0] += 3
        keep[:3] = False
    lengths = ends - starts
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    kept = data[keep]
    values = pa.Array.from_buffers(pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(kept)])
    return _Lines(block.first_line, values, kept, offsets)


def _byte_classes(delimiter: str) -> np.ndarray:
    """Per byte value: the classes whose presence in a line decides whether it is simple."""
    table = np.zeros(256, np.uint8)
    for byte in range(128):
        if not chr(byte).isspace():
            table[byte] |= _SOLID
    table[[0, 13, 0x1C, 0x1D, 0x1E, 0x1F]] |= _UNSAFE
    if len(delimiter) == 1 and 0x1C <= ord(delimiter) <= 0x1F:
        table[ord(delimiter)] &= 0xFF ^ _UNSAFE  # a field cannot hold it, so it is never stripped from one
    table[0x80:] |= _HIGH
    if len(delimiter) == 1:  # a longer delimiter is split on literally, quotes and all
        table[ord('"')] |= _QUOTE
    return table


def _simple_lines(lines: _Lines, classes: np.ndarray) -> np.ndarray:
    """Which lines the column-wise path reads exactly as ``_add_csv_line`` would."""
    lengths = np.diff(lines.offsets)
    filled = lengths > 0
    found = np.zeros(len(lines), np.uint8)
    if filled.any():
        found[filled] = np.bitwise_or.reduceat(classes[lines.data], lines.offsets[:-1][filled])
    wide = (found & _HIGH) != 0
    plain_wide = np.zeros(len(lines), bool)  # non-ASCII lines that are UTF-8 and hold no wide whitespace
    if wide.any():
        at = np.flatnonzero(wide)
        try:
            texts = lines.values.take(pa.array(at)).cast(pa.string())
            plain_wide[at] = ~pc.match_substring_regex(texts, _WIDE_SPACE.pattern).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:  # some line is not UTF-8: find which, one by one
            for index in at:
                try:
                    plain_wide[index] = not _WIDE_SPACE.search(lines.raw(index).decode("utf-8"))
                except UnicodeDecodeError:
                    pass
    visible = ((found & _SOLID) != 0) | plain_wide  # a non-space character: not blank
    return filled & ((found & (_UNSAFE | _QUOTE)) == 0) & (~wide | plain_wide) & visible


@dataclass
class _CsvPlan:
    """How the simple lines of a file are read: its header and the mapping's columns in it."""

    mapping: ColumnMapping
    header: list[str]
    file_reason: str | None

    def __post_init__(self) -> None:
        self.markers = frozenset(self.mapping.null_markers)
        self.classes = _byte_classes(self.mapping.delimiter)
        where = {name: index for index, name in enumerate(self.header)}  # dict(zip(...)): the last one wins
        self.picks = {field: where.get(column) if column else None
                      for field, column in source_columns(self.mapping).items()}


def _null_marked(values: pa.Array, markers: pa.Array, is_id: bool, trim: str = _FIELD_TRIM) -> pa.Array:
    """``_null`` column-wise on values whose only whitespace is in ``trim`` (and an empty id is no id)."""
    values = pc.utf8_trim(values, characters=trim)
    nulls = pc.is_in(values, value_set=markers)
    if is_id:
        nulls = pc.or_(nulls, pc.equal(pc.utf8_length(values), 0))
    return pc.if_else(nulls, pa.scalar(None, pa.string()), values)


def _simple_rows(texts: pa.StringArray, plan: _CsvPlan) -> dict[str, pa.Array]:
    """The FIELDS and reason columns of simple lines, as ``_add_csv_row`` gives them."""
    n = len(texts)
    no_text = pa.nulls(n, pa.string())
    if plan.file_reason is not None:
        return {name: no_text for name in FIELDS} | {"reason": pa.array([plan.file_reason] * n, pa.string())}
    parts = pc.split_pattern(texts, pattern=plan.mapping.delimiter)
    counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    wrong = counts != len(plan.header)
    reason = no_text
    if wrong.any():
        said = pc.binary_join_element_wise(f"expected {len(plan.header)} fields, got ",
                                           pc.cast(pa.array(counts), pa.string()), "")
        reason = pc.if_else(pa.array(wrong), said, no_text)
    starts = parts.offsets.to_numpy()[:-1]
    markers = pa.array(sorted(plan.markers), pa.string())
    columns = {}
    for field in FIELDS:
        index = plan.picks[field]
        if index is None:
            columns[field] = no_text
            continue
        at = pa.array(starts + index, pa.int64(), mask=wrong)  # a wrong line has no fields (null)
        columns[field] = _null_marked(parts.values.take(at), markers, field in ID_FIELDS)
    return columns | {"reason": reason}


def _block_rows(lines: _Lines, plan: _CsvPlan, source_file: str) -> pa.Table:
    """The rows of one block's lines, in line order: simple lines column-wise, the others one by one."""
    simple = _simple_lines(lines, plan.classes)
    numbers = np.arange(lines.first_line, lines.first_line + len(lines), dtype=np.int64)
    at = np.flatnonzero(simple)
    texts = (lines.values if len(at) == len(lines) else lines.values.take(pa.array(at))).view(pa.string())
    fast = pa.table({"source_file": pa.repeat(pa.scalar(source_file, pa.string()), len(at)), "line": numbers[at],
                     "raw": texts} | _simple_rows(texts, plan), schema=PARSED_SCHEMA)
    others = np.flatnonzero(~simple)
    if not len(others):
        return fast
    batch = _Batch(source_file)
    for index in others.tolist():
        line_no = lines.first_line + index
        text, reason = _line_text(lines.raw(index), 2)  # line ends and BOM are already cut off
        _add_csv_line(batch, line_no, text, reason, plan.header, plan.file_reason, plan.mapping, plan.markers)
    slow = pa.Table.from_batches([batch.flush()])
    order = np.empty(len(lines), np.int64)
    order[at] = np.arange(len(at))
    order[others] = len(at) + np.arange(len(others))
    return pa.concat_tables([fast, slow]).take(pa.array(order))


def _header_line(path: Path) -> tuple[str | None, str | None]:
    """Line 1 of a file as ``_decoded_lines`` gives it (text, reason), read alone."""
    for piece in _line_blocks(path, 0, 1, block_bytes=2**16):
        if isinstance(piece, _Broken):
            return None, piece.reason
        return _line_text(piece.data.split(b"\n", 1)[0], 1)
    return None, None


def _parse_csv_fast(path: Path, mapping: ColumnMapping, batch: _Batch, start: int = 0,
                    end: int | None = None) -> Iterator[pa.RecordBatch]:
    """``_parse_csv`` column-wise, over the lines that start in bytes [start, end)."""
    plan = None if mapping.header else _CsvPlan(mapping, list(mapping.columns), None)
    if plan is None and start > 0:
        text, reason = _header_line(path)
        if text is None and reason is None:
            return
        plan = _CsvPlan(mapping, *_header_of(text, reason, mapping))
    for piece in _line_blocks(path, start, end):
        if isinstance(piece, _Broken):
            if plan is not None:  # a break before the header leaves no row, as in ``_parse_csv``
                batch.add(piece.line, None, None, piece.reason)
                yield batch.flush()
            return
        if plan is None:  # the first line is the header
            head, _, rest = piece.data.partition(b"\n")
            plan = _CsvPlan(mapping, *_header_of(*_line_text(head, 1), mapping))
            if not rest:
                continue
            piece = _Block(piece.first_line + 1, rest)
        rows = _block_rows(_split_lines(piece), plan, batch.source_file)
        yield from rows.to_batches(max_chunksize=BATCH_ROWS)
        batch.last_line = rows.column("line")[-1].as_py()


def _parse_jsonl_ranged(path: Path, mapping: ColumnMapping, batch: _Batch, start: int = 0,
                        end: int | None = None) -> Iterator[pa.RecordBatch]:
    """``_parse_jsonl`` over the lines that start in bytes [start, end); still one line at a time."""
    markers = frozenset(mapping.null_markers)
    for piece in _line_blocks(path, start, end):
        if isinstance(piece, _Broken):
            batch.add(piece.line, None, None, piece.reason)
            break
        lines = piece.data.split(b"\n")
        for offset, raw in enumerate(lines[:-1] if piece.data.endswith(b"\n") else lines):
            line_no = piece.first_line + offset
            text, reason = _line_text(raw, line_no)
            if reason is not None:
                batch.add(line_no, text, None, reason)
            elif not text.strip():
                batch.add(line_no, text, None, "empty line")
            else:
                _add_json_row(batch, line_no, text, mapping, markers)
            if len(batch) >= BATCH_ROWS:
                yield batch.flush()
    if len(batch):
        yield batch.flush()


def parse_file(path: Path, file_format: str, mapping: ColumnMapping, start: int = 0, end: int | None = None,
               fast: bool = True) -> Iterator[pa.RecordBatch]:
    """Every line (or Parquet row) of one file as parsed string fields or a reject reason.

    ``start``/``end``: only the lines that start in those bytes of the (decompressed) text: a CSV or JSONL
    file read by several tasks, each of which reads the header again. ``fast=False`` reads with the
    per-line reference parsers, which give the same rows.
    """
    batch = _Batch(source_file=str(path))
    if fast:
        parser = {"csv": _parse_csv_fast, "jsonl": _parse_jsonl_ranged, "parquet": _parse_parquet_fast,
                  "sequence": _parse_sequence}[file_format]
        ranged = file_format in SPLITTABLE_FORMATS
    else:
        parser = {"csv": _parse_csv, "jsonl": _parse_jsonl, "parquet": _parse_parquet,
                  "sequence": _parse_sequence}[file_format]
        ranged = False
    if (start, end) != (0, None) and not ranged:
        raise ValueError(f"a {file_format} file is read whole (fast={fast}), not as bytes {start}..{end}")
    try:
        yield from (parser(path, mapping, batch, start, end) if ranged else parser(path, mapping, batch))
    except Exception as exc:  # noqa: BLE001 - whatever breaks one file must not fail the others of its task
        line = batch.last_line
        batch.add(line + 1, None, None, f"file unreadable after line {line}: {type(exc).__name__}: {str(exc)[:500]}")
    if len(batch):
        yield batch.flush()


SPLITTABLE_FORMATS = ("csv", "jsonl")  # read as byte ranges (``file_ranges``)
MAX_GZIP_RANGES = 16


def file_ranges(path: Path, file_format: str, split_bytes: int) -> list[tuple[int, int | None]]:
    """The byte ranges [start, end) of its decompressed text one file is read as: several of ``split_bytes``
    for a CSV or JSONL file larger than that, else the whole file, (0, None).

    A gzip file has no index: the task of a range decompresses the file from the start up to its range
    (2.5 s for 400 MiB of text here, a third of the column-wise parse of the same bytes), so a compressed
    log is split into at most ``MAX_GZIP_RANGES`` ranges, sized from the length its trailer gives (modulo
    4 GiB: a larger text gets ranges sized as if smaller, and the last range reads the rest)."""
    if file_format not in SPLITTABLE_FORMATS or split_bytes <= 0:
        return [(0, None)]
    try:
        size = path.stat().st_size
        with open(path, "rb") as probe:
            compressed = probe.read(2) == GZIP_MAGIC
            if compressed:
                size = _gzip_text_size(probe, size)
    except OSError:
        return [(0, None)]
    if compressed:
        split_bytes = max(split_bytes, -(-size // MAX_GZIP_RANGES))
    if size <= split_bytes:
        return [(0, None)]
    starts = list(range(0, size, split_bytes))
    return [(start, following) for start, following in zip(starts, starts[1:])] + [(starts[-1], None)]


def _gzip_text_size(handle: io.BufferedIOBase, file_size: int) -> int:
    """The decompressed length of a gzip file, as far as its trailer tells: the last member's length modulo
    2**32, raised by 2**32 until it is at least the file's size. Only the balance of the ranges rests on it."""
    if file_size < 4:
        return file_size
    handle.seek(file_size - 4)
    size = int.from_bytes(handle.read(4), "little")
    while size < file_size:
        size += 2**32
    return size


def make_file_parser(mapping_json: str):
    """The ``mapInArrow`` function over a frame of (path, format[, start, end]) rows: one per file, or
    per byte range of a file (``file_ranges``)."""

    def parse_files(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        mapping = ColumnMapping.model_validate_json(mapping_json)
        for files in batches:
            n = files.num_rows
            names = files.schema.names
            starts = files.column("start").to_pylist() if "start" in names else [0] * n
            ends = files.column("end").to_pylist() if "end" in names else [None] * n
            for path, file_format, start, end in zip(files.column("path").to_pylist(),
                                                     files.column("format").to_pylist(), starts, ends):
                yield from parse_file(Path(path), file_format, mapping, start or 0, end)

    return parse_files


# Parquet column-wise: a row whose every value is null, an integer, a string of printable ASCII, or a float
# that Python writes in plain digits gets its fields and its raw JSON text (what ``json.dumps`` of its
# ``to_pylist`` record gives) from Arrow compute; any other row, and every row of a batch with a column of
# another type (timestamps, booleans, nested, binary, decimals), goes through ``_pick_fields`` one by one.
_PRINTABLE = "^[\x20-\x7e]*$"  # json.dumps escapes only backslash and quote in it; str.strip() only spaces


def _python_text(column: pa.Array) -> tuple[pa.Array, np.ndarray, bool] | None:
    """(``str(value)`` of each value as ``to_pylist`` gives it, the rows where that holds, whether the
    values are strings), or None for a type read row by row."""
    kind = column.type
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.string()), np.ones(len(column), bool), False
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = column.cast(pa.string())
        plain = pc.or_kleene(pc.is_null(text), pc.match_substring_regex(text, _PRINTABLE))
        return text, plain.to_numpy(zero_copy_only=False), True
    if pa.types.is_integer(kind):
        return column.cast(pa.string()), np.ones(len(column), bool), False
    if pa.types.is_floating(kind) and not pa.types.is_float16(kind):
        wide = column.cast(pa.float64())
        text = wide.cast(pa.string())
        size = pc.abs(wide)
        # Python's repr is plain digits from 1e-4 up to 1e16 (and for 0); Arrow's shortest digits are the same
        plain = pc.and_(pc.or_(pc.equal(size, 0), pc.and_(pc.greater_equal(size, 1e-4), pc.less(size, 1e16))),
                        pc.invert(pc.match_substring(text, "e")))
        plain = pc.or_kleene(pc.is_null(wide), plain)
        point = pc.if_else(pc.match_substring(text, "."), text, pc.binary_join_element_wise(text, ".0", ""))
        return point, plain.to_numpy(zero_copy_only=False), False
    return None


def _json_value(text: pa.Array, is_string: bool) -> pa.Array:
    """``json.dumps`` of each value (printable ASCII strings, numbers, nulls)."""
    if is_string:
        escaped = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
        text = pc.binary_join_element_wise('"', escaped, '"', "")
    return pc.fill_null(text, "null")


def _id_text(text: pa.Array, column: pa.Array) -> pa.Array:
    """``canonical_id`` of plain values: an integral float as an integer (7.0 -> 7)."""
    if not pa.types.is_floating(column.type):
        return text
    wide = column.cast(pa.float64())
    integral = pc.and_(pc.equal(pc.floor(wide), wide), pc.less(pc.abs(wide), 1e16))  # plain rows hold no others
    whole = pc.cast(pc.if_else(integral, wide, 0.0), pa.int64()).cast(pa.string())
    return pc.if_else(integral, whole, text)


def _parquet_rows(rows: pa.RecordBatch, first_row: int, mapping: ColumnMapping, missing: str | None,
                  source_file: str) -> pa.Table:
    """One Parquet record batch as parsed rows, numbered from ``first_row``."""
    markers = frozenset(mapping.null_markers)
    texts = {name: _python_text(rows.column(i)) for i, name in enumerate(rows.schema.names)}
    plain = np.ones(rows.num_rows, bool)
    if not texts or len(texts) < len(rows.schema.names) or any(t is None for t in texts.values()):
        plain[:] = False
    else:
        for _, simple, _ in texts.values():
            plain &= simple
    at, others = np.flatnonzero(plain), np.flatnonzero(~plain)
    numbers = np.arange(first_row + 1, first_row + 1 + rows.num_rows, dtype=np.int64)
    columns = {"source_file": pa.repeat(pa.scalar(source_file, pa.string()), len(at)), "line": numbers[at]}
    if len(at):
        index = pa.array(at)
        pieces = []
        for n, (name, (text, _, is_string)) in enumerate(texts.items()):
            pieces += [("{" if n == 0 else ", ") + json.dumps(name) + ": ", _json_value(text.take(index), is_string)]
        columns["raw"] = pc.binary_join_element_wise(*pieces, "}", "")
    else:
        columns["raw"] = pa.nulls(0, pa.string())
    no_text = pa.nulls(len(at), pa.string())
    marker_set = pa.array(sorted(markers), pa.string())
    for field, column in source_columns(mapping).items():
        if missing or not column or column not in texts:
            columns[field] = no_text
            continue
        text = texts[column][0]
        if field in ID_FIELDS:
            text = _id_text(text, rows.column(column))
        columns[field] = _null_marked(text.take(pa.array(at)), marker_set, field in ID_FIELDS, " ")
    columns["reason"] = pa.array([missing] * len(at), pa.string()) if missing else no_text
    fast = pa.table(columns, schema=PARSED_SCHEMA)
    if not len(others):
        return fast
    batch = _Batch(source_file)
    for row_no, record in zip((numbers[others]).tolist(), rows.take(pa.array(others)).to_pylist()):
        raw = json.dumps(record, default=str)
        if missing:
            batch.add(row_no, raw, None, missing)
        else:
            batch.add(row_no, raw, *_pick_fields(record, mapping, markers))
    order = np.empty(rows.num_rows, np.int64)
    order[at] = np.arange(len(at))
    order[others] = len(at) + np.arange(len(others))
    return pa.concat_tables([fast, pa.Table.from_batches([batch.flush()])]).take(pa.array(order))


def _parse_parquet_fast(path: Path, mapping: ColumnMapping, batch: _Batch) -> Iterator[pa.RecordBatch]:
    """``_parse_parquet`` column-wise (see ``_parquet_rows``)."""
    parquet, missing = _open_parquet(path, mapping, batch)
    if parquet is None:
        return
    row_no = 0
    for record_batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        if record_batch.num_rows:
            yield from _parquet_rows(record_batch, row_no, mapping, missing, batch.source_file).to_batches()
        row_no += record_batch.num_rows
        batch.last_line = row_no
