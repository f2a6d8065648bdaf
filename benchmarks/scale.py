"""Scale benchmark: the nightly flow on synthetic logs of 1M, 3M and 10M events, stage by stage, against the
physical floor of this machine, in one run.

The logs are the embedded sample (``recsys.sample``) scaled up with the same planted structure: 27,000
users (about 37 events each), 150 users per item and 100 items per category for every million events, so
the 10M log has 180,000 items as in issue 15. Each log is written once under ``--data`` (reused by later
runs) as one ``events.csv.gz`` or, with ``--files K``, as K gzip files split by user (several files are
what lets ingest read on every core). Each size then runs ``recsys run`` in a fresh process and a fresh
lake, and prints, per stage, the wall seconds (``runs/<id>/stage_seconds.json``), events per second,
microseconds per event (the cost per event, which should stay flat from size to size), and the ratio of
the stage's time to the floor: reading and decompressing the input once plus writing the same rows as
Parquet with pyarrow. The peak resident memory of the driver (the ``recsys run`` process), the Spark JVM
and Spark's Python workers, of the other processes under the driver (Prefect's temporary server, the
training worker processes) and of all of them together at one instant ("all") is sampled from ``/proc``
every 0.2 s, with what each role held at the instant "all" peaked. Spark's fixed cost (session start, the
first JVM job, the first Python-worker job) is measured once in this process.

    python benchmarks/scale.py                         # 1M, 3M, 10M; default models
    python benchmarks/scale.py --sizes 1M --models popular,item_knn --files 4

``run_size`` is what tests/test_scale_benchmark.py runs on the 1M log (correctness only, never time).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.sample import EVENT_COLUMNS, generate_sample, iso_timestamps, write_sample  # noqa: E402

USERS_PER_MILLION, ITEMS_PER_MILLION, ITEMS_PER_CATEGORY = 27_000, 18_000, 100
STAGES = ("ingest", "plan", "graph", "validation", "walks", "train", "evaluate", "publish", "publish-user-to-item")


def parse_size(text: str) -> float:
    """``1M`` -> 1.0, ``300k`` -> 0.3 (millions of events)."""
    text = text.strip().lower()
    return float(text[:-1]) / 1000 if text.endswith("k") else float(text.rstrip("m"))


@dataclass(frozen=True)
class Log:
    millions: float
    folder: Path
    events: Path  # a file, or a folder of files
    items: Path
    rows: int


def scaled_log(millions: float, data: Path, files: int = 1, seed: int = 7) -> Log:
    """The log of about ``millions`` M events, written once under ``data`` and reused."""
    users = int(round(USERS_PER_MILLION * millions))
    items = max(200, int(round(ITEMS_PER_MILLION * millions)))
    folder = data / f"events_{millions:g}M_seed{seed}_files{files}"
    done = folder / "DONE.json"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        if files == 1:
            write_sample(folder, seed, users, items, max(1, items // ITEMS_PER_CATEGORY))
            rows = pacsv.read_csv(folder / "events.csv.gz").num_rows
        else:
            rows = _write_split(folder, seed, users, items, files)
        done.write_text(json.dumps({"rows": rows, "users": users, "items": items}))
    rows = json.loads(done.read_text())["rows"]
    events = folder / "events.csv.gz" if files == 1 else folder / "events"
    return Log(millions, folder, events, folder / "items.csv.gz", rows)


def _write_split(folder: Path, seed: int, users: int, items: int, files: int) -> int:
    """The same log as ``write_sample`` writes, as ``files`` gzip CSVs split by user."""
    write_sample(folder, seed, users, items, max(1, items // ITEMS_PER_CATEGORY))
    (folder / "events.csv.gz").unlink()
    events, _ = generate_sample(seed, users, items, max(1, items // ITEMS_PER_CATEGORY))
    part = pc.remainder(pc.cast(pc.utf8_slice_codeunits(events["user_id"], 1), pa.int64()), files)
    (folder / "events").mkdir(exist_ok=True)
    for n in range(files):
        chunk = events.filter(pc.equal(part, n))
        lines = [",".join(EVENT_COLUMNS)] + [",".join(row) for row in zip(
            iso_timestamps(chunk["timestamp"]), *(chunk[c].to_pylist() for c in EVENT_COLUMNS[1:]))]
        with gzip.GzipFile(folder / "events" / f"events-{n:03d}.csv.gz", "wb", mtime=0) as handle:
            handle.write(("\n".join(lines) + "\n").encode())
    return events.num_rows


def floor_seconds(log: Log) -> dict[str, float]:
    """The physical floor: read and decompress the input once; write as many rows as Parquet with pyarrow."""
    paths = sorted(log.events.glob("*.csv.gz")) if log.events.is_dir() else [log.events]
    started = time.perf_counter()
    for path in paths:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    read = time.perf_counter() - started
    table = pa.concat_tables(pacsv.read_csv(p) for p in paths)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        pq.write_table(table, Path(out) / "events.parquet")
        write = time.perf_counter() - started
    return {"read": read, "write": write, "floor": read + write}


@dataclass
class MemorySampler:
    """Peak resident memory of a process tree, by role, sampled from /proc."""

    root_pid: int
    every: float = 0.2
    peaks: dict[str, int] = field(default_factory=lambda: {"driver": 0, "spark_jvm": 0, "spark_workers": 0, "other": 0,
                                                           "all": 0})

    at_peak: dict[str, float] = field(default_factory=dict)  # each role's RSS and the time when "all" peaked

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.perf_counter()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            totals = dict.fromkeys(self.peaks, 0)
            for pid, role in _tree_roles(self.root_pid).items():
                rss = _rss_bytes(pid)
                totals[role] += rss
                totals["all"] += rss  # the whole tree at one instant: the roles' peaks need not coincide
            if totals["all"] > self.peaks["all"]:
                self.at_peak = {**totals, "seconds": time.perf_counter() - self._started}
            for role, total in totals.items():
                self.peaks[role] = max(self.peaks[role], total)


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            table[int(entry.name)] = (int(stat[stat.rindex(")") + 2:].split()[1]), name)
    return table


def _tree_roles(root: int) -> dict[int, str]:
    """Every process under ``root`` with its role: the driver, Spark's JVM, the JVM's Python workers, other."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    roles, stack = {root: "driver"}, [(root, "driver")]
    while stack:
        pid, role = stack.pop()
        for child in children.get(pid, ()):
            name = table[child][1]
            child_role = "spark_jvm" if name == "java" else "spark_workers" if role in ("spark_jvm", "spark_workers") else "other"
            roles[child] = child_role
            stack.append((child, child_role))
    return roles


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class SizeResult:
    log: Log
    wall: float
    stages: dict[str, float]
    memory: dict[str, int]
    memory_at_peak: dict[str, float]
    lake: Path
    returncode: int
    output: str


def run_size(log: Log, lake: Path, models: str | None = None, extra: tuple[str, ...] = (),
             api_url: str | None = None) -> SizeResult:
    """``recsys run`` on ``log`` into the fresh ``lake``; the stage seconds and peak memory. The run
    starts Prefect's temporary server, or reports to the server at ``api_url``."""
    env = dict(os.environ, DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90", SPARK_LOCAL_IP="127.0.0.1",
               PYSPARK_PYTHON=sys.executable, PREFECT_HOME=str(lake.parent / "prefect_home"))
    if api_url:
        env["PREFECT_API_URL"] = api_url
    command = [sys.executable, "-m", "flows.cli", "run", "--input", str(log.events), "--items", str(log.items),
               "--lake", str(lake), "--set", "ingest.preset=sample", "--set", "dataset=scale"]
    if models:
        command += ["--set", f"train.models=[{models}]"]
    for setting in extra:
        command += ["--set", setting]
    lake.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(lake.parent / "run.log", "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        with MemorySampler(process.pid) as sampler:
            process.wait()
    wall = time.perf_counter() - started
    timings = sorted(lake.glob("runs/*/stage_seconds.json"))
    stages = json.loads(timings[-1].read_text()) if timings else {}
    return SizeResult(log, wall, stages, dict(sampler.peaks), dict(sampler.at_peak), lake, process.returncode,
                      (lake.parent / "run.log").read_text())


def spark_fixed_costs() -> dict[str, float]:
    """Seconds to start a session, run the first JVM job and the first Python-worker job."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from recsys.config import SparkConfig
    from recsys.spark import spark_session

    started = time.perf_counter()
    spark = spark_session(SparkConfig())
    session = time.perf_counter() - started
    started = time.perf_counter()
    spark.range(1000).count()
    jvm = time.perf_counter() - started
    started = time.perf_counter()
    spark.range(1000).mapInArrow(lambda batches: batches, "id long").count()
    python = time.perf_counter() - started
    spark.stop()
    return {"session start": session, "first JVM job": jvm, "first Python-worker job": python}


def print_results(results: list[SizeResult], floors: dict[float, dict[str, float]]) -> None:
    sizes = [r.log for r in results]
    print("\n## Per stage: wall seconds | events/s | us/event | x floor")
    header = "| stage | " + " | ".join(f"{s.rows / 1e6:.2f}M events" for s in sizes) + " | us/event vs smallest |"
    print(header)
    print("|---|" + "---:|" * (len(sizes) + 1))
    for stage in [*STAGES, "whole run"]:
        cells, per_event = [], []
        for result in results:
            seconds = result.wall if stage == "whole run" else result.stages.get(stage)
            if not seconds:  # not run (no validation split, no user model) or skipped as cached
                cells.append("-")
                per_event.append(None)
                continue
            us = seconds / result.log.rows * 1e6
            per_event.append(us)
            floor = floors[result.log.millions]["floor"]
            cells.append(f"{seconds:.1f} s, {result.log.rows / max(seconds, 1e-9) / 1e3:.0f}k/s, {us:.1f} us, "
                         f"{seconds / floor:.1f}x")
        known = [u for u in per_event if u]
        trend = " / ".join(f"{u / known[0]:.2f}" for u in known) if known and known[0] else "-"
        print(f"| {stage} | " + " | ".join(cells) + f" | {trend} |")
    print("\n## Floor (read + decompress once; pyarrow Parquet write of the rows) and peak memory")
    for result in results:
        floor = floors[result.log.millions]
        memory = ", ".join(f"{role} {peak / 2**30:.2f} GiB" for role, peak in result.memory.items())
        at_peak = result.memory_at_peak
        composition = ", ".join(f"{role} {at_peak[role] / 2**30:.2f}" for role in result.memory if role != "all"
                                and role in at_peak)
        print(f"- {result.log.rows:,} events: floor {floor['floor']:.1f} s (read {floor['read']:.1f} s, write "
              f"{floor['write']:.1f} s); peak RSS {memory}; exit {result.returncode}")
        if at_peak:
            print(f"  the whole tree peaked {at_peak['seconds']:.0f} s into the run: {composition} GiB")


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--sizes", nargs="+", default=["1M", "3M", "10M"], help="millions of events (1M, 300k, ...)")
    cli.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "recsys-scale",
                     help="where the generated logs are kept (reused)")
    cli.add_argument("--files", type=int, default=1, help="files per log (gzip files read by separate tasks)")
    cli.add_argument("--models", help="train.models, comma-separated (default: the pipeline's)")
    cli.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more recsys run settings")
    arguments = cli.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print("Spark fixed cost:", ", ".join(f"{k} {v:.1f} s" for k, v in spark_fixed_costs().items()))
    results, floors = [], {}
    for size in map(parse_size, arguments.sizes):
        log = scaled_log(size, arguments.data, arguments.files)
        floors[size] = floor_seconds(log)
        work = Path(tempfile.mkdtemp(prefix=f"scale-{size:g}M-", dir=arguments.data))
        result = run_size(log, work / "lake", arguments.models, tuple(arguments.set))
        results.append(result)
        print(f"{log.rows:,} events: exit {result.returncode}, {result.wall:.1f} s; stages {result.stages}; log {work / 'run.log'}",
              flush=True)
    print_results(results, floors)


if __name__ == "__main__":
    main()
