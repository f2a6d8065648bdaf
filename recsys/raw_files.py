"""Reading raw log files line by line into string columns, keeping each line's file, number and text.

This is the part of ingest that runs inside Spark tasks, one file per task (``parse_files`` is the
``mapInArrow`` function). It only splits lines into fields and flags what cannot be split: bad
encoding, a wrong field count, a missing column, a truncated gzip. Typing and value checks happen
afterwards in Spark SQL (``recsys.ingest``). Every line read comes out exactly once, either with
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
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
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


def _decoded_lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """Yield (line number, text, reason) for each line; text is None when the line cannot be read."""
    line_no = 0
    try:
        with _open_bytes(path) as handle:
            for line_no, raw in enumerate(handle, start=1):
                raw = raw.rstrip(b"\r\n")
                if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    yield line_no, raw.decode("utf-8"), None
                except UnicodeDecodeError as exc:
                    yield line_no, raw.decode("utf-8", errors="replace"), f"line is not valid UTF-8 ({exc.reason} at byte {exc.start})"
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
            header = [name.strip() for name in _split_fields(text, mapping.delimiter, strict=False)] if (
                reason is None and text is not None) else []
            if reason is not None or text is None:
                file_reason = f"the header line is unreadable ({reason}): no column can be named"
            else:
                file_reason = missing_columns_reason(mapping, header, show_header=True)
            continue
        if text is not None and reason is None and not text.strip():
            batch.add(line_no, text, None, "empty line")
        elif reason is not None or text is None:
            batch.add(line_no, text, None, reason)
        elif file_reason is not None:
            batch.add(line_no, text, None, file_reason)
        else:
            _add_csv_row(batch, line_no, text, header or [], mapping, markers)
        if len(batch) >= BATCH_ROWS:
            yield batch.flush()


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


def _parse_parquet(path: Path, mapping: ColumnMapping, batch: _Batch) -> Iterator[pa.RecordBatch]:
    markers = frozenset(mapping.null_markers)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        batch.add(1, None, None, f"unreadable Parquet file: {exc}")
        return
    missing = missing_columns_reason(mapping, parquet.schema_arrow.names)
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


def parse_file(path: Path, file_format: str, mapping: ColumnMapping) -> Iterator[pa.RecordBatch]:
    """Every line (or Parquet row) of one file as parsed string fields or a reject reason."""
    batch = _Batch(source_file=str(path))
    parser = {"csv": _parse_csv, "jsonl": _parse_jsonl, "parquet": _parse_parquet,
              "sequence": _parse_sequence}[file_format]
    try:
        yield from parser(path, mapping, batch)
    except Exception as exc:  # noqa: BLE001 - whatever breaks one file must not fail the others of its task
        line = batch.last_line
        batch.add(line + 1, None, None, f"file unreadable after line {line}: {type(exc).__name__}: {str(exc)[:500]}")
    if len(batch):
        yield batch.flush()


def make_file_parser(mapping_json: str):
    """The ``mapInArrow`` function over a frame of (path, format) rows."""

    def parse_files(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        mapping = ColumnMapping.model_validate_json(mapping_json)
        for files in batches:
            for path, file_format in zip(files.column("path").to_pylist(), files.column("format").to_pylist()):
                yield from parse_file(Path(path), file_format, mapping)

    return parse_files
