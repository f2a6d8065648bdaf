"""Ingest throughput against a plain pyarrow script doing the same work, side by side in one run.

Generates a scaled-up log with ``recsys.sample.generate_sample`` (same planted structure as the embedded
sample; cached under ``--cache``), written like ``recsys.sample.write_sample`` (``events.csv.gz``,
optionally also uncompressed and/or split into K files), then measures in one process:
  a. ``recsys.ingest.ingest`` into a fresh lake (Spark ``local[*]``; the session start is timed and
     reported apart from the stage),
  b. the parser alone over the same file, the old per-line path (``parse_file``) against the
     column-wise one (``parse_file_fast``), rows per second and their ratio (one core each),
  c. a pyarrow script doing the same work: read the CSV, type and validate the timestamps, drop exact
     duplicates, cut sessions at the 30-minute gap per user, write Parquet partitioned by day,
and prints the ratio ingest / pyarrow (the issue's target: within 2x at 10M events).

    python benchmarks/ingest.py                          # ~1M events (n_users 27,000, n_items 18,000)
    python benchmarks/ingest.py --scale 10               # ~10M events (slow to generate, cached)
    python benchmarks/ingest.py --files 4 --plain        # also: the log as 4 gzip files / one plain file
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset  # noqa: F401 (pa.dataset)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.config import IngestConfig, SparkConfig  # noqa: E402
from recsys.ingest import ingest  # noqa: E402
from recsys.lake import Lake  # noqa: E402
from recsys.raw_files import ColumnMapping, parse_file  # noqa: E402
from recsys.sample import EVENT_COLUMNS, generate_sample, iso_timestamps  # noqa: E402
from recsys.spark import spark_session  # noqa: E402

KINDS = pa.array(["view", "cart", "favorite", "purchase"])


def _csv_bytes(events: pa.Table) -> bytes:
    """The events as CSV text the way ``write_sample`` writes them (header, ISO seconds, no quoting)."""
    table = pa.table({"timestamp": pa.array(iso_timestamps(events.column("timestamp"))),
                      **{name: events.column(name) for name in EVENT_COLUMNS[1:]}})
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="none", include_header=False))
    return ",".join(EVENT_COLUMNS).encode() + b"\n" + sink.getvalue().to_pybytes()


def generated_log(cache: Path, scale: float, seed: int = 7) -> Path:
    """``events.csv.gz`` of about ``scale`` million events, generated once into ``cache``."""
    out = cache / f"scale{scale:g}-seed{seed}"
    path = out / "events.csv.gz"
    if path.exists():
        return path
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    events, _ = generate_sample(seed, n_users=int(27_000 * scale), n_items=int(18_000 * scale))
    text = _csv_bytes(events)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=6) as handle:
        handle.write(text)
    partial.rename(path)
    print(f"generated {events.num_rows:,} events in {time.perf_counter() - started:.0f} s -> {path}", flush=True)
    return path




def split_log(path: Path, parts: int, compress: bool) -> Path:
    """The log as ``parts`` files (header on each, lines dealt in order) in a folder beside it, gzip or plain."""
    out = path.parent / f"split{parts}-{'gz' if compress else 'plain'}"
    if out.exists():
        return out
    with gzip.open(path, "rb") as handle:
        header, *lines = handle.read().split(b"\n")
    lines = [line for line in lines if line]
    staging = out.with_suffix(".partial")
    staging.mkdir(parents=True, exist_ok=True)
    step = -(-len(lines) // parts)
    for n in range(parts):
        data = header + b"\n" + b"\n".join(lines[n * step:(n + 1) * step]) + b"\n"
        name = staging / f"events-{n:03d}.csv{'.gz' if compress else ''}"
        name.write_bytes(gzip.compress(data, compresslevel=6, mtime=0) if compress else data)
    staging.rename(out)
    return out


def parser_alone(path: Path, fast: bool) -> tuple[int, float]:
    """(rows, seconds) of ``parse_file`` over one file, on one core."""
    started = time.perf_counter()
    rows = sum(batch.num_rows for batch in parse_file(path, "csv", ColumnMapping(), fast=fast))
    return rows, time.perf_counter() - started


def pyarrow_script(source: Path, out: Path, gap_minutes: int = 30) -> tuple[int, float]:
    """The ingest's work in plain pyarrow: read, type and validate times and types, drop exact duplicates,
    cut sessions at the gap per user, write Parquet partitioned by day. (rows written, seconds)"""
    started = time.perf_counter()
    files = sorted(source.glob("*.csv*")) if source.is_dir() else [source]
    table = pa.concat_tables([pacsv.read_csv(f, convert_options=pacsv.ConvertOptions(
        column_types={name: pa.string() for name in EVENT_COLUMNS})) for f in files])
    when = pc.strptime(table.column("timestamp"), format="%Y-%m-%dT%H:%M:%SZ", unit="us", error_is_null=True)
    table = table.set_column(0, "event_time", when)
    valid = pc.and_(pc.and_(pc.is_valid(when), pc.is_in(table.column("event_type"), value_set=KINDS)),
                    pc.and_(pc.is_valid(table.column("user_id")), pc.is_valid(table.column("item_id"))))
    table = table.filter(valid)
    key = ["event_time", "user_id", "item_id", "event_type"]
    table = table.group_by(key, use_threads=False).aggregate([]).sort_by([("user_id", "ascending"),
                                                                          ("event_time", "ascending")])
    seconds = pc.cast(table.column("event_time"), pa.int64()).to_numpy() // 1_000_000
    users = table.column("user_id").to_numpy(zero_copy_only=False)
    new = np.ones(len(seconds), bool)
    new[1:] = (users[1:] != users[:-1]) | (np.diff(seconds) > gap_minutes * 60)
    start = np.maximum.accumulate(np.where(new, np.arange(len(seconds)), 0))
    starts = pc.strftime(table.column("event_time").take(pa.array(start)), format="%Y%m%dT%H%M%S")
    table = table.append_column("session_id", pc.binary_join_element_wise(table.column("user_id"), starts, "@"))
    table = table.append_column("event_date", pc.strftime(table.column("event_time"), format="%Y-%m-%d"))
    pa.dataset.write_dataset(table, out, format="parquet", partitioning=["event_date"],
                             partitioning_flavor="hive", existing_data_behavior="overwrite_or_ignore")
    return table.num_rows, time.perf_counter() - started


def task_counts(spark, group: str) -> list[tuple[str, int]]:
    """(stage name, tasks) of every stage the jobs of ``group`` ran."""
    tracker = spark.sparkContext.statusTracker()
    stages = []
    for job in sorted(tracker.getJobIdsForGroup(group)):
        info = tracker.getJobInfo(job)
        for stage in sorted(info.stageIds if info else []):
            detail = tracker.getStageInfo(stage)
            if detail is not None and detail.numCompletedTasks:  # a stage whose output was cached is skipped
                stages.append((f"{stage} {detail.name}", detail.numTasks))
    return stages


def run_ingest(spark, source: Path, label: str) -> float:
    """Seconds of ``ingest`` over ``source`` into a fresh lake, with its stages' task counts."""
    root = Path(tempfile.mkdtemp(prefix="bench-lake-"))
    group = f"bench-{label}"
    spark.sparkContext.setJobGroup(group, label)
    started = time.perf_counter()
    result = ingest(spark, IngestConfig(input=source, preset="sample"), Lake(root), now=dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc))
    seconds = time.perf_counter() - started
    tasks = Counter(n for _, n in task_counts(spark, group))
    print(f"  ingest [{label}]: {seconds:.1f} s, {result.rows_read:,} rows read, {result.rows_accepted:,} events, "
          f"balanced={result.balanced}; Spark stages by tasks: "
          f"{', '.join(f'{count} of {n} task(s)' for n, count in sorted(tasks.items()))}", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    return seconds


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--scale", type=float, default=1.0, help="millions of events, about (n_users 27,000 x scale)")
    cli.add_argument("--cache", type=Path, default=Path("/tmp/ingest_bench"))
    cli.add_argument("--files", type=int, default=0, help="also ingest the log split into this many gzip files")
    cli.add_argument("--plain", action="store_true", help="also ingest the log as one uncompressed file (byte ranges)")
    cli.add_argument("--skip-old", action="store_true", help="time the per-line parser on the first 10%% only")
    args = cli.parse_args(argv)
    path = generated_log(args.cache, args.scale)
    print(f"log: {path} ({path.stat().st_size / 2**20:.1f} MiB gzip)", flush=True)

    print("b. the parser alone, one core:", flush=True)
    rows, fast = parser_alone(path, fast=True)
    print(f"  column-wise: {rows:,} rows in {fast:.2f} s = {rows / fast / 1e6:.3f} M rows/s", flush=True)
    old_path = path
    if args.skip_old:
        old_path = split_log(path, 10, compress=True) / "events-000.csv.gz"
    old_rows, old = parser_alone(old_path, fast=False)
    print(f"  per-line:    {old_rows:,} rows in {old:.2f} s = {old_rows / old / 1e6:.3f} M rows/s; "
          f"column-wise is {old / old_rows * rows / fast:.1f}x faster", flush=True)

    print("c. the pyarrow script (read, validate, dedupe, sessions, write by day):", flush=True)
    out = Path(tempfile.mkdtemp(prefix="bench-pyarrow-"))
    written, floor = pyarrow_script(path, out / "events")
    print(f"  {written:,} events in {floor:.1f} s", flush=True)
    shutil.rmtree(out, ignore_errors=True)

    print("a. recsys.ingest.ingest, Spark local[*]:", flush=True)
    started = time.perf_counter()
    spark = spark_session(SparkConfig())
    spark.range(1).count()
    print(f"  session start and first job: {time.perf_counter() - started:.1f} s "
          f"(parallelism {spark.sparkContext.defaultParallelism}, shuffle partitions "
          f"{spark.conf.get('spark.sql.shuffle.partitions')})", flush=True)
    warm = run_ingest(spark, generated_log(args.cache, 0.05), "warm-up, ~50k events")
    print(f"  (the first ingest of a session starts the Python workers: {warm:.1f} s for the warm-up)", flush=True)
    seconds = run_ingest(spark, path, "one gzip file")
    print(f"  ratio ingest / pyarrow script: {seconds / floor:.2f}", flush=True)
    if args.files:
        split = run_ingest(spark, split_log(path, args.files, compress=True), f"{args.files} gzip files")
        print(f"  ratio ingest ({args.files} gzip files) / pyarrow script: {split / floor:.2f}", flush=True)
    if args.plain:
        plain = split_log(path, 1, compress=False)
        split = run_ingest(spark, plain, "one uncompressed file")
        print(f"  ratio ingest (one uncompressed file) / pyarrow script: {split / floor:.2f}", flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
