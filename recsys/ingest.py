"""The ingest stage: raw interaction logs -> canonical ``events`` Parquet, partitioned by event date.

Runs on Spark. Files are parsed column-wise one per task, or per byte range of a large CSV or JSONL
file, gzip or not (``recsys.raw_files``, ``_parse``), spread over the shuffle partitions, then typed and validated in
Spark SQL; rows that fail go to ``quarantine`` with their file, line, raw text and reason. Exact
duplicates are removed, and sessions are cut at an inactivity gap when the log has no session id.
Accounting: rows read = accepted + quarantined + duplicates, for every run.

The batch is read, typed and counted (per file, status and day: ``_row_counts``) in one pass that caches
it; the time limits, the accounting and the failed files come from those counts. A second pass over the
cache drops the duplicates and cuts the sessions in one window per user (``_by_user``: one shuffle, one
sort) and writes the events; their number is read from the written files' footers.

**Which files are read.** The manifest (``recsys.manifest``) records every read of a raw file: its
path, SHA-256, the digest of the column mapping that read it (``mapping_digest``) and its status:
``done``, ``failed`` (the read broke off), ``quarantined`` (ingested, but more than
``MAX_QUARANTINED_SHARE`` of its rows were quarantined) or ``rejected`` (its batch was rejected). A
file is skipped when the latest read of its bytes is ``done`` or ``failed`` under the current mapping
(or predates mapping digests); so a second run over the same files reads nothing (a file whose path, size
and modification time match the manifest is not even hashed: ``manifest.known_files``), while a corrected
mapping, or a file whose last read was quarantined or rejected, reads it again. Paths under the input
that are not read at all (hidden names, links to folders, FIFOs, unreadable ones) are named in
``IngestResult.skipped_paths`` (``recsys.listing``). A file whose size or modification time changed
while it was read (a copy still running) is not committed: it is named in ``changed_files`` and read
at the next ingest.

**Time.** Beyond the parse, a row is quarantined when its time is out of Python's calendar, more than
``max_future_hours`` after now, past the horizon (``max_future_days`` after the lake's newest day, or
in an empty lake after the batch's median day, following the batch's consecutive days), or more than
``max_late_days`` before the newest day kept (``_time_limits``): no single row sets the reference.

**A re-read replaces.** When bytes the lake already holds are read again (a changed mapping, a
rejected read, or ``reingest``), the new read replaces the earlier ones: their events and quarantine
rows (found by ``source_file`` in the files of the batch that wrote them) are removed in the same
commit that adds the new rows, so a file's events are never doubled.

**Rejection.** A batch with more than ``MAX_QUARANTINED_SHARE`` of its rows quarantined (every row, at
any share) is rejected: it writes its quarantine rows and manifest entries marked ``rejected``, but no
event, no ``items/`` row, and replaces nothing; then ``IngestRejected`` names the counts, the top
reasons and example lines. The next ingest reads its files again, so a re-run without a fix fails
the same way. In a batch that is accepted, a file over the same share is ingested but marked
``quarantined``: it is read again at each ingest (a fix in the code reaches it), but as long as the
mapping is the same, its rows do not count towards rejecting a later batch, so a stray broken file
does not fail a night that brings nothing new.

**Commits.** Event and quarantine files carry their batch id in their names (``<batch>-part-N``, or
``<origin>-kept-<batch>-N`` for the rows a replacing batch keeps of an older batch's file), and the
manifest file is written last: it is the commit. It lists the older files the batch makes obsolete,
which are deleted after it. ``remove_unfinished_batches`` runs first at every ingest: it deletes the
files of batches the manifest does not list (a crash before the commit leaves the old rows) and the
obsolete files of batches it does (a crash after the commit leaves the new rows).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession, Window, WindowSpec
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys.config import ColumnMapping, IngestConfig
from recsys.lake import Lake, read_parquet_dir, remove_dir, replace_dir, temporary_sibling, write_parquet_atomic
from recsys.listing import RawFile, Skipped, changed_since_listed, list_raw_files
from recsys.manifest import (DONE, FAILED, QUARANTINED, REJECTED, BatchManifest, ManifestEntry,  # noqa: F401 (re-exported)
                             ingested_checksums, known_files, known_quarantined, live_reads, read_manifest, unique_new)
from recsys.raw_files import FILE_FAILURES, PARSED_DDL, file_ranges, make_file_parser

log = logging.getLogger(__name__)

EVENT_COLUMNS = ["event_time", "user_id", "session_id", "item_id", "event_type", "source_file"]
QUARANTINE_COLUMNS = ["source_file", "line", "raw", "reason"]
# A batch (or, within an accepted batch, a file) with more than this share of its rows quarantined is
# rejected: so many failures mean the mapping does not fit the file, and its few rows that passed
# would train models on a fraction of the log. ``IngestConfig.max_quarantined_share`` overrides it.
MAX_QUARANTINED_SHARE = 0.5
_Manifest = BatchManifest  # the name tests patch to play a crash before the commit
TOP_REASONS, EXAMPLES, RAW_CHARS = 5, 2, 200
# A CSV or JSONL file whose text is larger than this is read by several tasks, one per byte range (each
# owns the lines that start in it); a gzip file in at most raw_files.MAX_GZIP_RANGES ranges, since each
# task decompresses it from the start. Reads beyond MAX_READ_TASKS ranges share tasks.
READ_SPLIT_BYTES = 64 * 2**20
MAX_READ_TASKS = 256


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
    rows_replaced: int = 0  # events of earlier reads of the same files that this batch replaced
    quarantined_files: tuple[str, ...] = ()  # files ingested but mostly quarantined: read again next time
    files_failed: int = 0  # files whose read broke off (unreadable, corrupt): rows before the break kept, not read again
    files_changed: int = 0  # files that changed or vanished while read: not committed, read again next time
    paths_skipped: int = 0  # paths under the input not read at all (hidden, links to folders, unreadable, FIFOs)
    failed_files: tuple[str, ...] = ()
    changed_files: tuple[str, ...] = ()  # "path (why)"
    skipped_paths: tuple[str, ...] = ()  # "path (why)"

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_quarantined + self.rows_duplicate


class IngestRejected(ValueError):
    """A batch whose rows were all, or mostly, quarantined: no event of it was ingested.

    The message is the whole explanation (counts, top reasons, example lines, where the rejected
    rows are); the attributes carry the same for a caller that formats its own.
    """

    def __init__(self, message: str, *, rows_read: int = 0, rows_quarantined: int = 0,
                 reasons: tuple[tuple[str, int], ...] = (), files: tuple[str, ...] = (),
                 quarantine_path: str | None = None):
        super().__init__(message)
        self.rows_read, self.rows_quarantined, self.reasons = rows_read, rows_quarantined, reasons
        self.files, self.quarantine_path = files, quarantine_path

    def __reduce__(self):  # picklable with its attributes (Prefect may persist a failed task's exception)
        return (type(self), (str(self),), self.__dict__)


def mapping_digest(mapping: ColumnMapping) -> str:
    """What identifies a mapping in the manifest: the settings it sets away from the defaults, so a new
    mapping field (with a default) does not make every file of every lake be read again."""
    settings = mapping.model_dump_json(exclude_defaults=True)
    return hashlib.sha256(settings.encode()).hexdigest()[:16]


def ingest(spark: SparkSession, config: IngestConfig, lake: Lake, now: dt.datetime | None = None) -> IngestResult:
    """Ingest every raw file under ``config.input`` that the manifest does not list as done under the
    current mapping; a file read before (other mapping, rejected) has its earlier rows replaced.

    Raises ``IngestRejected`` when the batch is all or mostly quarantined (see the module docstring).
    """
    mapping = config.column_mapping()
    remove_unfinished_batches(lake)
    entries = read_manifest(lake)
    live, digest = live_reads(entries), mapping_digest(mapping)
    found, skipped = list_raw_files(config.source(), mapping.format, known_files(live))
    _log_skipped(skipped)
    new_files = unique_new(found, live, digest)
    log.info("ingest: %d raw file(s) under %s, %d new or to read again", len(found), config.source(), len(new_files))
    if not new_files:
        return _nothing_read(spark, config, lake, len(found), skipped, {})
    replaces = {str(raw.path): {e.read for e in live.get(raw.sha256, ())} for raw in new_files}
    known = {str(raw.path) for raw in new_files if known_quarantined(live.get(raw.sha256), digest)}
    return _ingest_batch(spark, config, lake, new_files, len(found), replaces, entries, now, known, skipped)


def reingest(spark: SparkSession, config: IngestConfig, lake: Lake, path: Path,
             now: dt.datetime | None = None) -> IngestResult:
    """Read the raw file ``path`` again with the current mapping, whatever the manifest says.

    The new read replaces every earlier read of that path and of the same bytes under another name:
    their events, quarantine rows and manifest entries, in one commit (a crash leaves either the old
    rows or the new ones; see the module docstring). A rejected read (``IngestRejected``) replaces
    nothing: the file's earlier rows stay, beside the rejected attempt's quarantine rows.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"reingest: not a file: {path}")
    mapping = config.column_mapping()
    remove_unfinished_batches(lake)
    found, skipped = list_raw_files(path, mapping.format)
    if not found:
        raise OSError(f"reingest: {skipped[0]}")
    [raw] = found
    entries = read_manifest(lake)
    live = live_reads(entries)
    earlier = {e.read for reads in live.values() for e in reads if e.sha256 == raw.sha256 or e.path == str(raw.path)}
    log.info("reingest: %s (%d earlier read(s) to replace)", raw.path, len(earlier))
    return _ingest_batch(spark, config, lake, [raw], 1, {str(raw.path): earlier}, entries, now)


def _log_skipped(skipped: list[Skipped]) -> None:
    for entry in skipped:
        log.warning("ingest: not read: %s", entry)


def _nothing_read(spark: SparkSession, config: IngestConfig, lake: Lake, files_found: int, skipped: list[Skipped],
                  changed: dict[str, str]) -> IngestResult:
    """The result of an ingest that commits no batch: nothing new, or every new file changed while read."""
    items_path = _write_items(spark, config, lake, None)
    return IngestResult(files_found, 0, files_found - len(changed), 0, 0, 0, 0, (), str(lake.events), None, items_path,
                        **_not_committed(skipped, changed))


def _not_committed(skipped: list[Skipped], changed: dict[str, str]) -> dict:
    """The ``IngestResult`` fields naming the paths the batch did not read or did not commit."""
    return {"paths_skipped": len(skipped), "skipped_paths": tuple(map(str, skipped)), "files_changed": len(changed),
            "changed_files": tuple(f"{path} ({why})" for path, why in sorted(changed.items()))}


def _read_and_count(spark: SparkSession, files: list[RawFile], mapping: ColumnMapping, config: IngestConfig,
                    now: dt.datetime) -> tuple[DataFrame, DataFrame, list[_Count], dict[str, str]]:
    """Parse and type ``files`` (cached: each is read once), counting their rows in the same pass, and leave
    out those that changed or vanished while read.

    Returns the cached frame (to unpersist), its rows of the files kept, their counts, and path -> why for the
    others."""
    cached = _typed(_parse(spark, files, mapping), mapping, config, now).cache()
    counts = _row_counts(cached)  # every file is read here, so the check below follows the whole read
    changed = {str(f.path): why for f in files if (why := changed_since_listed(f))}
    for path, why in sorted(changed.items()):
        log.warning("ingest: %s %s: not committed, it is read again at the next ingest", path, why)
    if not changed:
        return cached, cached, counts, changed
    kept = cached.where(~F.col("source_file").isin(sorted(changed)))
    return cached, kept, [c for c in counts if c.source_file not in changed], changed


def _ingest_batch(spark: SparkSession, config: IngestConfig, lake: Lake, files: list[RawFile], files_found: int,
                  replaces: dict[str, set[tuple[str, str]]], entries: list[ManifestEntry],
                  now: dt.datetime | None, known: set[str] = frozenset(), skipped: list[Skipped] = ()) -> IngestResult:
    """Read ``files`` as one batch; each replaces the earlier reads ``replaces[path]`` (batch, path).
    The ``known`` files (mostly quarantined last time, same mapping) do not count towards rejecting it."""
    mapping = config.column_mapping()
    now = now or dt.datetime.now(dt.timezone.utc)
    batch_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    share = getattr(config, "max_quarantined_share", MAX_QUARANTINED_SHARE)

    cached, typed, counts, changed = _read_and_count(spark, files, mapping, config, now)
    files = [f for f in files if str(f.path) not in changed]
    if not files:
        cached.unpersist()
        return _nothing_read(spark, config, lake, files_found, list(skipped), changed)
    manifest = _Manifest(files, batch_id, now, mapping_digest(mapping), 1 + max((e.seq for e in entries), default=0))
    horizon = _horizon(_valid_rows_by_day(counts), _newest_stored_day(lake), config.max_future_days)
    typed = _time_limits(typed, horizon, config)
    rejected = typed.where(F.col("reason").isNotNull())
    per_file = _per_file_counts(counts, horizon, config.max_late_days)
    failed = {c.source_file for c in counts if c.status == _BROKE}
    read, quarantined = sum(r for r, _ in per_file.values()), sum(q for _, q in per_file.values())
    counted = {path: tally for path, tally in per_file.items() if path not in known}
    if _too_many(sum(r for r, _ in counted.values()), sum(q for _, q in counted.values()), share):
        quarantine_path = _write_quarantine(rejected, lake, now, batch_id) if quarantined else None
        judged = rejected.where(~F.col("source_file").isin(sorted(known))) if known else rejected
        error = _rejection(judged, counted, share, quarantine_path, batch_id)
        manifest.write(lake, per_file, rejected={str(f.path) for f in files})  # its quarantine rows stay
        cached.unpersist()
        log.error("%s", error)
        raise error

    obsolete, removed = _replace_reads(lake, set().union(*(replaces[str(f.path)] for f in files)), batch_id)
    accepted = typed.where(F.col("reason").isNull())
    deduped = _drop_exact_duplicates(accepted)
    fresh = _not_in_lake(spark, deduped, lake, set(obsolete))
    events = _with_sessions(fresh, mapping, config.session_gap_minutes)
    dates, n_events = _write_events(events, lake, batch_id)
    quarantine_path = _write_quarantine(rejected, lake, now, batch_id) if quarantined else None
    items_path = _write_items(spark, config, lake, deduped if mapping.side_columns() else None)
    mostly_quarantined = {path for path, (rows, bad) in per_file.items() if _too_many(rows, bad, share)} - failed
    manifest.write(lake, per_file, replaces, [str(p.relative_to(lake.root)) for p in obsolete], mostly_quarantined,
                   failed=failed)
    _delete(obsolete)
    cached.unpersist()

    result = IngestResult(
        files_found=files_found, files_ingested=len(files), files_skipped=files_found - len(files) - len(changed),
        rows_read=read, rows_accepted=n_events, rows_quarantined=quarantined,
        rows_duplicate=read - quarantined - n_events, event_dates=dates, events_path=str(lake.events),
        quarantine_path=quarantine_path, items_path=items_path, rows_replaced=removed["events"],
        quarantined_files=tuple(sorted(mostly_quarantined)), files_failed=len(failed), failed_files=tuple(sorted(failed)),
        **_not_committed(list(skipped), changed),
    )
    log.info("ingest: read %d rows = %d accepted + %d quarantined + %d duplicates; %d day(s) %s..%s",
             result.rows_read, result.rows_accepted, result.rows_quarantined, result.rows_duplicate,
             len(dates), dates[0] if dates else "-", dates[-1] if dates else "-")
    if removed["events"] or removed["quarantine"]:
        log.info("ingest: replaced %d event(s) and %d quarantine row(s) of earlier reads of the same file(s)",
                 removed["events"], removed["quarantine"])
    for path in result.quarantined_files:
        rows, bad = per_file[path]
        log.warning("ingest: %s: %d of %d rows quarantined (more than %.0f%%): not marked done, it is read "
                    "again at each ingest until the mapping fits it or it is moved away; the reasons are in the "
                    "quarantine", path, bad, rows, 100 * share)
    for path in result.failed_files:
        log.warning("ingest: %s: the read broke off (the reason is in the quarantine); the rows before the break are "
                    "kept and it is not read again: fix or replace it, then `recsys ingest --reingest %s`", path, path)
    return result


def _too_many(rows: int, quarantined: int, share: float) -> bool:
    return rows > 0 and (quarantined == rows or quarantined > share * rows)


@dataclass(frozen=True)
class _Count:
    """Rows of one file in one status; ``day`` (days since 1970-01-01) only for valid rows."""
    source_file: str
    day: int | None
    status: str
    rows: int


_VALID, _BAD, _BROKE = "valid", "bad", "broke"  # _BROKE: the quarantine row of a read that broke off


def _row_counts(typed: DataFrame) -> list[_Count]:
    """Rows by file, status and (valid rows only) day: everything the batch's accounting, time limits and
    failed files need, from one pass over the rows."""
    broke = F.col("reason").startswith(FILE_FAILURES[0])
    for prefix in FILE_FAILURES[1:]:
        broke = broke | F.col("reason").startswith(prefix)
    valid = F.col("reason").isNull()
    status = F.when(valid, F.lit(_VALID)).when(broke, F.lit(_BROKE)).otherwise(F.lit(_BAD))
    counts = typed.groupBy("source_file", F.when(valid, _event_day()).alias("day"), status.alias("status")).count()
    return [_Count(r["source_file"], r["day"], r["status"], int(r["count"])) for r in counts.collect()]


def _valid_rows_by_day(counts: list[_Count]) -> dict[int, int]:
    by_day: dict[int, int] = defaultdict(int)
    for count in counts:
        if count.status == _VALID:
            by_day[count.day] += count.rows
    return dict(by_day)


def _per_file_counts(counts: list[_Count], horizon: int | None, max_late_days: int) -> dict[str, tuple[int, int]]:
    """Raw file -> (rows read, rows quarantined), the valid rows outside the time limits quarantined."""
    rows: dict[str, int] = defaultdict(int)
    bad: dict[str, int] = defaultdict(int)
    for count in counts:
        rows[count.source_file] += count.rows
        if count.status != _VALID or _outside_time_limits(count.day, horizon, max_late_days):
            bad[count.source_file] += count.rows
    return {path: (n, bad[path]) for path, n in rows.items()}


def _outside_time_limits(day: int, horizon: int | None, max_late_days: int) -> bool:
    return horizon is not None and (day > horizon or day < horizon - max_late_days)


def _reason_kind(reason: F.Column) -> F.Column:
    """A reason without the per-row value it may end with (an unparseable timestamp's text), for counting."""
    kind = F.regexp_replace(reason, r"^(unparseable timestamp \(column .*, format [a-z_]+\)): .*$", "$1")
    return F.regexp_replace(kind, r"^(timestamp out of range \(years 1 to 9999\)): .*$", "$1")


def _rejection(rejected: DataFrame, per_file: dict[str, tuple[int, int]], share: float, quarantine_path: str | None,
               batch_id: str) -> IngestRejected:
    """The one error a rejected batch raises: counts, top reasons, example lines, where to look."""
    read, quarantined = sum(r for r, _ in per_file.values()), sum(q for _, q in per_file.values())
    kinds = rejected.select(*QUARANTINE_COLUMNS).withColumn("kind", _reason_kind(F.col("reason")))
    top = [(r["kind"], int(r["count"])) for r in
           kinds.groupBy("kind").count().orderBy(F.desc("count"), "kind").limit(TOP_REASONS).collect()]
    first_of = lambda kind, n: kinds.where(F.col("kind") == kind).orderBy("source_file", "line").limit(n).collect()  # noqa: E731
    # one line of each of the two top reasons, or two of the only one
    examples = first_of(top[0][0], 1) + first_of(top[1][0], 1) if len(top) > 1 else first_of(top[0][0], EXAMPLES)
    worst = sorted(per_file.items(), key=lambda kv: (-kv[1][1], kv[0]))[:TOP_REASONS]
    lines = [f"ingest rejected: {quarantined} of {read} rows read were quarantined ({100 * quarantined / read:.1f}%; "
             f"a batch with more than {100 * share:.0f}% of its rows quarantined is rejected), "
             f"{read - quarantined} passed. No event of this batch was ingested.",
             "Top reasons:", *(f"  {count:>9}  {kind}" for kind, count in top), *_time_hint(top[0][0]),
             "Example lines:", *(f"  {r['source_file']}, line {r['line']}: {_clip(r['raw'])}" for r in examples),
             "Files:", *(f"  {path}: {bad} of {rows} rows quarantined" for path, (rows, bad) in worst)]
    if len(per_file) > len(worst):
        lines.append(f"  ... and {len(per_file) - len(worst)} more file(s)")
    lines.append(f"Every rejected row and its reason: {quarantine_path or 'the quarantine'} (batch {batch_id}). "
                 "These files are read again at the next ingest: correct ingest.mapping (or ingest.preset) and "
                 "run again, or move them out of ingest.input.")
    return IngestRejected("\n".join(lines), rows_read=read, rows_quarantined=quarantined, reasons=tuple(top),
                          files=tuple(sorted(per_file)), quarantine_path=quarantine_path)


def _time_hint(reason: str) -> list[str]:
    """What to check when most rows were quarantined for their time."""
    if "timestamp" not in reason:
        return []
    return ["Most rows were quarantined for their time: check the log's time column and ingest.mapping.time_format "
            "(or the preset); if the times are right, widen ingest.max_future_days or ingest.max_late_days."]


def _clip(raw: str | None) -> str:
    if raw is None:
        return "(no text: the file could not be read)"
    return raw if len(raw) <= RAW_CHARS else raw[:RAW_CHARS] + f"... ({len(raw)} characters)"


# --- batch files, replacement and recovery ----------------------------------------------------------

BATCH = r"\d{8}T\d{6}-[0-9a-f]{8}"
BATCH_FILE = re.compile(rf"^(?P<origin>{BATCH})(?:-part-\d{{5}}|-kept-(?P<maker>{BATCH})-\d{{5}})?\.parquet$")


def _batch_files(lake: Lake) -> list[tuple[Path, re.Match]]:
    """Event and quarantine files named after a batch, with the parts of their names."""
    found = []
    for folder in (lake.events, lake.quarantine):
        for path in sorted(folder.glob("*/*.parquet")) if folder.exists() else []:
            match = BATCH_FILE.match(path.name)
            if match:
                found.append((path, match))
    return found


def remove_unfinished_batches(lake: Lake) -> list[Path]:
    """Finish what an interrupted ingest left: delete the event and quarantine files of batches the
    manifest does not list (rolled back), and the files a listed batch made obsolete (rolled forward)."""
    entries = read_manifest(lake)
    finished = {e.batch_id for e in entries}
    orphans = [path for path, match in _batch_files(lake) if (match["maker"] or match["origin"]) not in finished]
    obsolete = [lake.root / rel for rel in sorted({o for e in entries for o in e.obsolete})]
    obsolete = [p for p in obsolete if p.exists()]
    _delete(orphans + obsolete)
    if orphans:
        batches = sorted({(m["maker"] or m["origin"]) for m in map(lambda p: BATCH_FILE.match(p.name), orphans)})
        log.warning("ingest: removed %d file(s) of interrupted batch(es) %s; their raw files are ingested again",
                    len(orphans), batches)
    if obsolete:
        log.warning("ingest: removed %d file(s) an earlier ingest replaced but had not deleted yet", len(obsolete))
    return orphans + obsolete


def _replace_reads(lake: Lake, reads: set[tuple[str, str]], batch_id: str) -> tuple[list[Path], dict[str, int]]:
    """Take the rows of the earlier ``reads`` (batch, source file) out of the lake's files, as this batch.

    A file holding such rows gets a copy without them, named as this batch's (``<origin>-kept-<batch>-N``),
    and is returned as obsolete: the caller deletes it after the commit. Nothing is deleted here.
    """
    removed = {"events": 0, "quarantine": 0}
    paths_of: dict[str, set[str]] = defaultdict(set)
    for origin, source in reads:
        paths_of[origin].add(source)
    obsolete: list[Path] = []
    for path, match in _batch_files(lake) if paths_of else []:
        origin = match["origin"]
        if origin not in paths_of:
            continue
        sources = pq.read_table(path, columns=["source_file"]).column("source_file")
        drop = pc.is_in(sources, value_set=pa.array(sorted(paths_of[origin]), pa.string()))
        dropped = pc.sum(drop).as_py() or 0
        if not dropped:
            continue
        if dropped < len(sources):
            kept = pq.read_table(path).filter(pc.invert(drop))
            write_parquet_atomic(kept, path.with_name(f"{origin}-kept-{batch_id}-{len(obsolete):05d}.parquet"))
        removed["events" if lake.events in path.parents else "quarantine"] += dropped
        obsolete.append(path)
    return obsolete, removed


def _delete(paths: list[Path]) -> None:
    """Delete batch files, then the partition folders left empty."""
    for path in paths:
        path.unlink(missing_ok=True)
    for folder in {p.parent for p in paths}:
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()


def _has_parquet(folder: Path) -> bool:
    return folder.exists() and any(folder.glob("*.parquet"))


def _parse(spark: SparkSession, files: list[RawFile], mapping: ColumnMapping) -> DataFrame:
    """The parsed rows of ``files``: read by one task per file, or per byte range of a large CSV or JSONL
    file (``READ_SPLIT_BYTES``), then, when that is fewer tasks than the session's shuffle partitions,
    spread over them by (file, line), so that every later stage (typing, validation, dedupe, sessions,
    counts) runs on every core. The same files give the same rows in the same partitions."""
    ranges = sorted((str(f.path), f.format, start, end) for f in files
                    for start, end in file_ranges(Path(f.path), f.format, READ_SPLIT_BYTES))
    tasks = min(len(ranges), MAX_READ_TASKS)
    rows = spark.sparkContext.parallelize(ranges, tasks)  # in order, one range per task up to MAX_READ_TASKS
    listing = spark.createDataFrame(rows, T.StructType([
        T.StructField("path", T.StringType()), T.StructField("format", T.StringType()),
        T.StructField("start", T.LongType()), T.StructField("end", T.LongType())]))
    parsed = listing.mapInArrow(make_file_parser(mapping.model_dump_json()), PARSED_DDL)
    spread = int(spark.conf.get("spark.sql.shuffle.partitions"))
    return parsed.repartition(spread, "source_file", "line") if tasks < spread else parsed


def _event_time(mapping: ColumnMapping) -> F.Column:
    if mapping.time_format in ("unix_s", "unix_ms"):
        # Read as an exact decimal, never a double (about 16 digits: 1396438212.9999999 would become the next
        # second); digits below the microsecond are cut, so the second never moves. Text, NaN, inf and
        # values past the timestamp range give null: "unparseable timestamp".
        micros_per_unit = 1_000_000 if mapping.time_format == "unix_s" else 1_000
        return F.expr(f"timestamp_micros(try_cast(floor(try_multiply(try_cast(time_raw AS decimal(38, 9)), "
                      f"{micros_per_unit})) AS bigint))")
    if mapping.time_format == "date_plus_offset_ms":  # try_: an offset past the long range gives null, not an error
        return F.expr("timestamp_micros(try_multiply(try_add(unix_millis(try_to_timestamp(time_raw)), "
                      "try_cast(time_offset AS bigint)), 1000))")
    # ISO 8601 with Z or an offset, or "YYYY-MM-DD HH:MM:SS UTC" as REES46 writes it.
    return F.coalesce(F.expr("try_cast(time_raw AS timestamp)"),
                      F.expr("try_to_timestamp(regexp_replace(time_raw, ' UTC$', 'Z'))"))


def _event_type(mapping: ColumnMapping) -> F.Column:
    if mapping.event_type is None:
        return F.lit(mapping.fixed_event_type)
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
        # Spark holds years up to 294247, Python and every reader of the lake 1 to 9999
        (~F.year("event_time").between(1, 9999), F.concat(F.lit("timestamp out of range (years 1 to 9999): "),
                                                           F.coalesce("time_raw", F.lit("null")))),
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


def _by_user() -> WindowSpec:
    """Each user's rows in the order sessions are cut, by fields that tell every row apart: the copies of a
    row (identical in every canonical field) follow its first copy by file and line. The dedupe and the
    sessions share this one window, so the batch is shuffled by user and sorted once."""
    return Window.partitionBy("user_id").orderBy("event_time", "item_id", "event_type", "session_raw", "source_file", "line")


_COPY_FIELDS = ("event_time", "item_id", "event_type", "session_raw")  # with user_id: the canonical fields


def _drop_exact_duplicates(accepted: DataFrame) -> DataFrame:
    """Keep the first copy (by file and line) of rows identical in every canonical field."""
    by_user = _by_user()
    copy = F.col(_COPY_FIELDS[0]).eqNullSafe(F.lag(_COPY_FIELDS[0]).over(by_user))
    for field in _COPY_FIELDS[1:]:
        copy = copy & F.col(field).eqNullSafe(F.lag(field).over(by_user))
    return accepted.withColumn("_copy", copy).where(~F.col("_copy")).drop("_copy")


def _with_sessions(events: DataFrame, mapping: ColumnMapping, gap_minutes: int) -> DataFrame:
    """Add ``session_id``: the log's own, or ``user_id`` + start of the session cut at the gap."""
    if mapping.session_id:
        sessions = events.withColumn("session_id", F.col("session_raw"))
    else:
        seconds = F.col("event_time").cast("long")
        gap = seconds - F.lag(seconds).over(_by_user())
        starts = events.withColumn("_start", F.when(gap.isNull() | (gap > gap_minutes * 60), F.col("event_time")))
        so_far = _by_user().rowsBetween(Window.unboundedPreceding, Window.currentRow)
        start = F.date_format(F.max("_start").over(so_far), "yyyyMMdd'T'HHmmss")  # times only grow along a user's rows
        sessions = starts.withColumn("session_id", F.concat_ws("@", "user_id", start))
    return sessions.select(*EVENT_COLUMNS).withColumn("event_date", F.to_date("event_time"))


def _write_events(events: DataFrame, lake: Lake, batch_id: str) -> tuple[tuple[str, ...], int]:
    """Append the batch to ``events/event_date=*/`` as files named after the batch; (dates, rows written)."""
    staging = temporary_sibling(lake.events, "staging")
    ordered = events.repartition("event_date").sortWithinPartitions("event_time", "user_id", "item_id", "event_type")
    ordered.write.partitionBy("event_date").parquet(str(staging))
    dates, rows = [], 0
    for day in sorted(p for p in staging.glob("event_date=*") if p.is_dir()):
        dates.append(day.name.split("=", 1)[1])
        target = lake.events / day.name
        target.mkdir(parents=True, exist_ok=True)
        for n, part in enumerate(sorted(day.glob("part-*.parquet"))):
            rows += pq.ParquetFile(part).metadata.num_rows
            os.replace(part, target / f"{batch_id}-part-{n:05d}.parquet")
    remove_dir(staging)
    return tuple(dates), rows


def _not_in_lake(spark: SparkSession, events: DataFrame, lake: Lake, replaced: set[Path] = frozenset()) -> DataFrame:
    """Drop rows the lake already holds (same time, user, item and type), e.g. from a file that grew;
    the ``replaced`` files (whose rows this batch takes out) do not count."""
    if not lake.events.exists() or not any(lake.events.glob("event_date=*/*.parquet")):
        return events
    dates = [str(r[0]) for r in events.select(F.to_date("event_time").alias("d")).distinct().collect()]
    stored = [str(p) for d in dates for p in sorted(lake.event_day(d).glob("*.parquet"))
              if not p.name.startswith((".", "_")) and p not in replaced]
    if not stored:
        return events
    key = ["event_time", "user_id", "item_id", "event_type"]
    rows = spark.read.option("basePath", str(lake.events)).parquet(*stored).select(*key).distinct()
    return events.join(rows, on=key, how="left_anti")


def _event_day() -> F.Column:
    return F.unix_date(F.to_date("event_time"))  # days since 1970-01-01: an int even for a year-0 time


def _time_limits(typed: DataFrame, horizon: int | None, config: IngestConfig) -> DataFrame:
    """Quarantine valid rows after the ``horizon`` day or older than any training window (``max_late_days``
    before it); ``_per_file_counts`` counts the same rows (``_outside_time_limits``).

    The horizon (``_horizon``) starts at the lake's newest day, or, in an empty lake, at the batch's median day
    (by rows), which no single row can move; it then follows the batch's later days upwards while each is at
    most ``max_future_days`` after the one before. A row past a longer gap, such as one stamped with today's
    date in a historical log, is quarantined and so never becomes "the newest event" that the old-row
    cut is measured from."""
    if horizon is None:
        return typed
    epoch = dt.date(1970, 1, 1)
    newest, cutoff = epoch + dt.timedelta(days=horizon), epoch + dt.timedelta(days=horizon - config.max_late_days)
    future = (f"timestamp more than {config.max_future_days} days after {newest}, the newest event day of the lake and "
              f"the rest of the batch (ingest.max_future_days)")
    old = (f"timestamp before {cutoff} (more than {config.max_late_days} days before the newest event, {newest}; "
           f"ingest.max_late_days): older than any training window")
    day = _event_day()
    check = F.when(F.col("reason").isNotNull(), F.col("reason")).when(day > horizon, F.lit(future)) \
        .when(day < horizon - config.max_late_days, F.lit(old))
    return typed.withColumn("reason", check)


def _newest_stored_day(lake: Lake) -> int | None:
    """The newest event day in the lake, in days since 1970-01-01."""
    days = [dt.date.fromisoformat(p.name.split("=", 1)[1]) for p in lake.events.glob("event_date=*")] \
        if lake.events.exists() else []
    return (max(days) - dt.date(1970, 1, 1)).days if days else None


def _horizon(counts: dict[int, int], stored: int | None, limit: int) -> int | None:
    """The newest day an event may have: from ``stored`` (else the median day of ``counts``, rows per day)
    up through the later days that follow each other by at most ``limit`` days."""
    start = stored if stored is not None else _median_day(counts)
    if start is None:
        return None
    newest = start
    for day in sorted(d for d in counts if d > start):
        if day - newest > limit:
            break
        newest = day
    return newest


def _median_day(counts: dict[int, int]) -> int | None:
    half, seen = sum(counts.values()) / 2, 0
    for day in sorted(counts):
        seen += counts[day]
        if seen >= half:
            return day
    return None


def _write_quarantine(rejected: DataFrame, lake: Lake, now: dt.datetime, batch_id: str) -> str:
    out = lake.quarantine_day(f"{now:%Y-%m-%d}")
    rows = rejected.select(*QUARANTINE_COLUMNS).withColumn("batch_id", F.lit(batch_id)).orderBy("source_file", "line")
    table = rows.toArrow()
    write_parquet_atomic(table, out / f"{batch_id}.parquet")
    return str(out)


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
