"""The ingest stage: raw interaction logs -> canonical ``events`` Parquet, partitioned by event date.

Runs on Spark. Files are parsed one per task (``recsys.raw_files``), then typed and validated in
Spark SQL; rows that fail go to ``quarantine`` with their file, line, raw text and reason. Exact
duplicates are removed, sessions are cut at an inactivity gap when the log has no session id, and a
manifest of (path, size, checksum) makes a second run over the same files ingest nothing new.
Accounting: rows read = accepted + quarantined + duplicates, for every run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recsys.config import ColumnMapping, IngestConfig
from recsys.lake import Lake, read_parquet_dir, remove_dir, replace_dir, temporary_sibling, write_parquet_atomic
from recsys.raw_files import PARSED_DDL, detect_format, make_file_parser

log = logging.getLogger(__name__)

EVENT_COLUMNS = ["event_time", "user_id", "session_id", "item_id", "event_type", "source_file"]
QUARANTINE_COLUMNS = ["source_file", "line", "raw", "reason"]


@dataclass(frozen=True)
class IngestResult:
    files_found: int
    files_ingested: int
    files_skipped: int
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    rows_duplicate: int
    event_dates: tuple[str, ...]
    events_path: str
    quarantine_path: str | None
    items_path: str | None

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_quarantined + self.rows_duplicate


@dataclass(frozen=True)
class RawFile:
    path: Path
    size: int
    sha256: str
    format: str


def list_raw_files(input_path: Path, default_format: str) -> list[RawFile]:
    """Raw files under ``input_path`` (a file or a folder, searched recursively), hidden files skipped."""
    if input_path.is_file():
        paths = [input_path]
    elif input_path.is_dir():
        paths = sorted(p for p in input_path.rglob("*") if p.is_file() and not _hidden(p, input_path))
    else:
        raise FileNotFoundError(f"ingest input not found: {input_path}")
    return [RawFile(p.resolve(), p.stat().st_size, _sha256(p), detect_format(p, default_format)) for p in paths]


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ingested_checksums(lake: Lake) -> set[str]:
    if not _has_parquet(lake.manifest):
        return set()
    return set(read_parquet_dir(lake.manifest).column("sha256").to_pylist())


def ingest(spark: SparkSession, config: IngestConfig, lake: Lake, now: dt.datetime | None = None) -> IngestResult:
    """Ingest every raw file under ``config.input`` not yet in the manifest.

    Event and quarantine files carry their batch id in their names and the manifest is written
    last, so a batch the manifest does not list was interrupted: its files are removed first and
    its raw files are ingested again, never twice.
    """
    mapping = config.column_mapping()
    now = now or dt.datetime.now(dt.timezone.utc)
    remove_unfinished_batches(lake)
    found = list_raw_files(config.source(), mapping.format)
    seen = ingested_checksums(lake)
    new_files = _unique_new(found, seen)
    log.info("ingest: %d raw file(s) under %s, %d new", len(found), config.source(), len(new_files))
    if not new_files:
        items_path = _write_items(spark, config, lake, None)
        return IngestResult(len(found), 0, len(found), 0, 0, 0, 0, (), str(lake.events), None, items_path)

    parsed = _parse(spark, new_files, mapping).cache()
    typed = _typed(parsed, mapping, config, now)
    typed = _too_old(typed, lake, config.max_late_days).cache()
    accepted = typed.where(F.col("reason").isNull())
    rejected = typed.where(F.col("reason").isNotNull())
    deduped = _drop_exact_duplicates(accepted)
    fresh = _not_in_lake(spark, deduped, lake)
    events = _with_sessions(fresh, mapping, config.session_gap_minutes).cache()

    counts = _count(parsed, accepted, rejected, events)
    batch_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    dates = _write_events(events, lake, batch_id)
    quarantine_path = _write_quarantine(rejected, lake, now, batch_id) if counts["quarantined"] else None
    items_path = _write_items(spark, config, lake, deduped if mapping.side_columns() else None)
    _write_manifest(parsed, new_files, lake, batch_id, now)
    for frame in (events, typed, parsed):
        frame.unpersist()

    result = IngestResult(
        files_found=len(found), files_ingested=len(new_files), files_skipped=len(found) - len(new_files),
        rows_read=counts["read"], rows_accepted=counts["accepted"], rows_quarantined=counts["quarantined"],
        rows_duplicate=counts["duplicate"], event_dates=dates, events_path=str(lake.events),
        quarantine_path=quarantine_path, items_path=items_path,
    )
    log.info("ingest: read %d rows = %d accepted + %d quarantined + %d duplicates; %d day(s) %s..%s",
             result.rows_read, result.rows_accepted, result.rows_quarantined, result.rows_duplicate,
             len(dates), dates[0] if dates else "-", dates[-1] if dates else "-")
    return result


BATCH_FILE = re.compile(r"^(\d{8}T\d{6}-[0-9a-f]{8})(-part-\d{5})?\.parquet$")


def remove_unfinished_batches(lake: Lake) -> list[Path]:
    """Delete event and quarantine files of batches the manifest does not list (an interrupted ingest)."""
    finished = set(read_parquet_dir(lake.manifest).column("batch_id").to_pylist()) if _has_parquet(lake.manifest) else set()
    orphans = []
    for folder in (lake.events, lake.quarantine):
        for path in folder.glob("*/*.parquet") if folder.exists() else []:
            match = BATCH_FILE.match(path.name)
            if match and match.group(1) not in finished:
                orphans.append(path)
    for path in orphans:
        path.unlink()
    if orphans:
        log.warning("ingest: removed %d file(s) of interrupted batch(es) %s; their raw files are ingested again",
                    len(orphans), sorted({BATCH_FILE.match(p.name).group(1) for p in orphans}))
    return orphans


def _has_parquet(folder: Path) -> bool:
    return folder.exists() and any(folder.glob("*.parquet"))


def _unique_new(found: list[RawFile], seen: set[str]) -> list[RawFile]:
    """Files whose content was never ingested; a file copied under a second name counts once."""
    new: dict[str, RawFile] = {}
    for raw in found:
        if raw.sha256 not in seen and raw.sha256 not in new:
            new[raw.sha256] = raw
    return list(new.values())


def _parse(spark: SparkSession, files: list[RawFile], mapping: ColumnMapping) -> DataFrame:
    listing = spark.createDataFrame([(str(f.path), f.format) for f in files], "path string, format string")
    listing = listing.repartition(min(len(files), 64), "path")
    return listing.mapInArrow(make_file_parser(mapping.model_dump_json()), PARSED_DDL)


def _event_time(mapping: ColumnMapping) -> F.Column:
    if mapping.time_format == "unix_s":
        return F.expr("timestamp_seconds(try_cast(time_raw AS bigint))")
    if mapping.time_format == "unix_ms":
        return F.expr("timestamp_millis(try_cast(time_raw AS bigint))")
    if mapping.time_format == "date_plus_offset_ms":
        return F.expr("timestamp_millis(unix_millis(try_to_timestamp(time_raw)) + try_cast(time_offset AS bigint))")
    # ISO 8601 with Z or an offset, or "YYYY-MM-DD HH:MM:SS UTC" as REES46 writes it.
    return F.coalesce(F.expr("try_cast(time_raw AS timestamp)"),
                      F.expr("try_to_timestamp(regexp_replace(time_raw, ' UTC$', 'Z'))"))


def _event_type(mapping: ColumnMapping) -> F.Column:
    if mapping.event_type is None:
        return F.lit("view")
    pairs = [F.lit(x) for kv in sorted(mapping.event_type_values.items()) for x in kv]
    return F.create_map(*pairs)[F.col("event_type_raw")]


def _typed(parsed: DataFrame, mapping: ColumnMapping, config: IngestConfig, now: dt.datetime) -> DataFrame:
    """Typed canonical columns and the first reason each row fails validation (null when valid)."""
    frame = parsed.withColumn("event_time", _event_time(mapping)).withColumn("event_type", _event_type(mapping))
    too_long = config.max_field_chars
    checks: list[tuple[F.Column, F.Column]] = [
        (F.col("reason").isNotNull(), F.col("reason")),
        (F.col("user_id").isNull(), F.lit(f"null user id (column '{mapping.user_id}')")),
        (F.col("item_id").isNull(), F.lit(f"null item id (column '{mapping.item_id}')")),
        (F.length("user_id") > too_long, F.lit(f"user id longer than {too_long} characters")),
        (F.length("item_id") > too_long, F.lit(f"item id longer than {too_long} characters")),
        (F.col("event_time").isNull(), F.concat(F.lit(f"unparseable timestamp (column '{mapping.event_time}', "
                                                      f"format {mapping.time_format}): "), F.coalesce("time_raw", F.lit("null")))),
        (F.col("event_time") > F.lit(now + dt.timedelta(hours=config.max_future_hours)),
         F.lit(f"timestamp more than {config.max_future_hours} h in the future")),
        (F.col("event_type").isNull(), F.concat(F.lit("unknown event type: "), F.coalesce("event_type_raw", F.lit("null")))),
    ]
    if mapping.session_id:
        checks.append((F.col("session_raw").isNull(), F.lit(f"null session id (column '{mapping.session_id}')")))
        checks.append((F.length("session_raw") > too_long, F.lit(f"session id longer than {too_long} characters")))
    if mapping.valid_from:
        checks.append((F.col("event_time") < F.lit(mapping.valid_from),
                       F.lit(f"timestamp before the log's valid range (from {mapping.valid_from})")))
    if mapping.valid_until:
        checks.append((F.col("event_time") >= F.lit(mapping.valid_until),
                       F.lit(f"timestamp after the log's valid range (until {mapping.valid_until})")))
    reason = F.when(checks[0][0], checks[0][1])
    for condition, text in checks[1:]:
        reason = reason.when(condition, text)
    return frame.withColumn("reason", reason)


def _drop_exact_duplicates(accepted: DataFrame) -> DataFrame:
    """Keep the first copy (by file and line) of rows identical in every canonical field."""
    key = ["event_time", "user_id", "item_id", "event_type", "session_raw"]
    first = Window.partitionBy(*key).orderBy("source_file", "line")
    return accepted.withColumn("_copy", F.row_number().over(first)).where("_copy = 1").drop("_copy")


def _with_sessions(events: DataFrame, mapping: ColumnMapping, gap_minutes: int) -> DataFrame:
    """Add ``session_id``: the log's own, or ``user_id`` + start of the session cut at the gap."""
    if mapping.session_id:
        sessions = events.withColumn("session_id", F.col("session_raw"))
    else:
        by_user = Window.partitionBy("user_id").orderBy("event_time", "item_id", "event_type", "source_file", "line")
        gap = F.col("event_time").cast("long") - F.lag(F.col("event_time").cast("long")).over(by_user)
        starts = events.withColumn("_new", F.when(gap.isNull() | (gap > gap_minutes * 60), 1).otherwise(0))
        numbered = starts.withColumn("_session_no", F.sum("_new").over(by_user))
        by_session = Window.partitionBy("user_id", "_session_no")
        start = F.date_format(F.min("event_time").over(by_session), "yyyyMMdd'T'HHmmss")
        sessions = numbered.withColumn("session_id", F.concat_ws("@", "user_id", start))
    return sessions.select(*EVENT_COLUMNS).withColumn("event_date", F.to_date("event_time"))


def _count(parsed: DataFrame, accepted: DataFrame, rejected: DataFrame, events: DataFrame) -> dict[str, int]:
    read, n_accepted, n_rejected, n_events = parsed.count(), accepted.count(), rejected.count(), events.count()
    return {"read": read, "accepted": n_events, "quarantined": n_rejected, "duplicate": n_accepted - n_events}


def _write_events(events: DataFrame, lake: Lake, batch_id: str) -> tuple[str, ...]:
    """Append the batch to ``events/event_date=*/`` as files named after the batch."""
    staging = temporary_sibling(lake.events, "staging")
    ordered = events.repartition("event_date").sortWithinPartitions("event_time", "user_id", "item_id", "event_type")
    ordered.write.partitionBy("event_date").parquet(str(staging))
    dates = []
    for day in sorted(p for p in staging.glob("event_date=*") if p.is_dir()):
        dates.append(day.name.split("=", 1)[1])
        target = lake.events / day.name
        target.mkdir(parents=True, exist_ok=True)
        for n, part in enumerate(sorted(day.glob("part-*.parquet"))):
            os.replace(part, target / f"{batch_id}-part-{n:05d}.parquet")
    remove_dir(staging)
    return tuple(dates)


def _not_in_lake(spark: SparkSession, events: DataFrame, lake: Lake) -> DataFrame:
    """Drop rows the lake already holds (same time, user, item and type), e.g. from a file that grew."""
    if not lake.events.exists() or not any(lake.events.glob("event_date=*/*.parquet")):
        return events
    dates = [str(r[0]) for r in events.select(F.to_date("event_time").alias("d")).distinct().collect()]
    stored_days = [d for d in dates if any(lake.event_day(d).glob("*.parquet"))]
    if not stored_days:
        return events
    key = ["event_time", "user_id", "item_id", "event_type"]
    stored = spark.read.option("basePath", str(lake.events)).parquet(
        *[str(lake.event_day(d)) for d in stored_days]).select(*key).distinct()
    return events.join(stored, on=key, how="left_anti")


def _too_old(typed: DataFrame, lake: Lake, max_late_days: int) -> DataFrame:
    """Quarantine valid rows dated more than ``max_late_days`` before the newest event (lake or batch)."""
    newest_in_batch = typed.where(F.col("reason").isNull()).agg(F.max("event_time")).first()[0]
    stored = [dt.date.fromisoformat(p.name.split("=", 1)[1]) for p in lake.events.glob("event_date=*")] if lake.events.exists() else []
    newest_days = [d for d in [newest_in_batch.date() if newest_in_batch else None, max(stored, default=None)] if d]
    if not newest_days:
        return typed
    cutoff = max(newest_days) - dt.timedelta(days=max_late_days)
    text = (f"timestamp before {cutoff} (more than {max_late_days} days before the newest event, "
            f"{max(newest_days)}): older than any training window")
    return typed.withColumn("reason", F.when(F.col("reason").isNull() & (F.to_date("event_time") < F.lit(cutoff)),
                                             F.lit(text)).otherwise(F.col("reason")))


def _write_quarantine(rejected: DataFrame, lake: Lake, now: dt.datetime, batch_id: str) -> str:
    out = lake.quarantine_day(f"{now:%Y-%m-%d}")
    rows = rejected.select(*QUARANTINE_COLUMNS).withColumn("batch_id", F.lit(batch_id)).orderBy("source_file", "line")
    table = rows.toArrow()
    write_parquet_atomic(table, out / f"{batch_id}.parquet")
    return str(out)


def _write_manifest(parsed: DataFrame, files: list[RawFile], lake: Lake, batch_id: str, now: dt.datetime) -> None:
    rows_per_file = {r["source_file"]: r["count"] for r in parsed.groupBy("source_file").count().collect()}
    table = pa.table({
        "path": [str(f.path) for f in files],
        "size": [f.size for f in files],
        "sha256": [f.sha256 for f in files],
        "rows": [int(rows_per_file.get(str(f.path), 0)) for f in files],
        "batch_id": [batch_id] * len(files),
        "ingested_at": pa.array([now] * len(files), pa.timestamp("us", tz="UTC")),
    })
    write_parquet_atomic(table, lake.manifest / f"{batch_id}.parquet")


SIDE_SCHEMA = pa.schema([("item_id", pa.string()), ("category", pa.string()), ("brand", pa.string()), ("price", pa.float64())])


def _write_items(spark: SparkSession, config: IngestConfig, lake: Lake, accepted: DataFrame | None) -> str | None:
    """Merge side information from the events' own columns and ``items_input`` into ``items/``.

    ``items_input`` wins over values carried by event rows; within event rows the latest non-null wins.
    """
    fresh = [t for t in (_items_from_file(spark, config), _items_from_events(accepted)) if t is not None]
    if not fresh:
        return str(lake.items) if lake.items.exists() else None
    return _merge_items(fresh, lake)


def _items_from_events(accepted: DataFrame | None) -> pa.Table | None:
    if accepted is None:
        return None
    newest_first = Window.partitionBy("item_id").orderBy(F.col("event_time").desc(), "source_file", "line")
    whole = newest_first.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    side = accepted.select(
        "item_id",
        F.first("category", ignorenulls=True).over(whole).alias("category"),
        F.first("brand", ignorenulls=True).over(whole).alias("brand"),
        F.first(F.expr("try_cast(price AS double)"), ignorenulls=True).over(whole).alias("price"),
        F.row_number().over(newest_first).alias("_n"),
    )
    return side.where("_n = 1").drop("_n").toArrow().cast(SIDE_SCHEMA)


def _items_from_file(spark: SparkSession, config: IngestConfig) -> pa.Table | None:
    path, mapping = config.items_source(), config.items_columns()
    if path is None:
        return None
    frame = spark.read.option("header", True).option("sep", mapping.delimiter).option("mode", "PERMISSIVE").csv(str(path))
    if mapping.item_id not in frame.columns:
        raise ValueError(f"items_input {path} lacks the item id column {mapping.item_id!r} (columns: {frame.columns})")
    raw = {"category": mapping.category, "brand": mapping.brand}
    cols = [F.col(raw[f]).cast("string") if raw[f] in frame.columns else F.lit(None).cast("string") for f in ("category", "brand")]
    price = (F.expr(f"try_cast(`{mapping.price}` AS double)") if mapping.price in frame.columns
             else F.lit(None).cast("double"))
    side = frame.select(F.col(mapping.item_id).cast("string").alias("item_id"), cols[0].alias("category"),
                        cols[1].alias("brand"), price.alias("price"))
    # one row per item, the same one every run: the smallest (category, brand, price)
    first = F.min(F.struct("category", "brand", "price")).alias("s")
    one = side.where("item_id IS NOT NULL").groupBy("item_id").agg(first).select("item_id", "s.*")
    return one.orderBy("item_id").toArrow().cast(SIDE_SCHEMA)


def _merge_items(fresh: list[pa.Table], lake: Lake) -> str:
    """New rows win over the stored ones for the same item; the table is rewritten atomically."""
    tables = list(fresh)
    stored = read_parquet_dir(lake.items).select(SIDE_SCHEMA.names).cast(SIDE_SCHEMA) if _has_parquet(lake.items) else None
    if stored is not None:
        tables.append(stored)
    merged: dict[str, dict] = {}
    for table in reversed(tables):
        for row in table.to_pylist():
            merged[row["item_id"]] = row
    ordered = pa.Table.from_pylist([merged[k] for k in sorted(merged)], schema=SIDE_SCHEMA)
    if stored is not None and stored.equals(ordered):
        return str(lake.items)  # unchanged: left as it is, so the stages that read it stay cached
    staging = temporary_sibling(lake.items, "staging")
    staging.mkdir(parents=True)
    pq.write_table(ordered, staging / "items.parquet")
    replace_dir(staging, lake.items)
    return str(lake.items)
