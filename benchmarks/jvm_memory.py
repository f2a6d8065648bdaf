"""The Spark JVM's memory while the session idles (as it does through training), by driver Java options.

One Spark session serves the whole nightly flow and stays open while the models train. Each setting of
``spark.driver_java_options`` gets a fresh process that ingests a scaled-up log (``benchmarks/scale.py``'s
``scaled_log``), builds the graph from it, and then idles, reading the JVM's resident memory (VmRSS in
``/proc``) every ``--every`` seconds. The first setting is the peer: no options, the JVM's own defaults.
Prints the ingest and graph seconds, the JVM's memory after the graph and after ``--idle`` seconds, and
each setting's ratio to the first. G1 hands unused heap back only after a collection, and an idle JVM
collects nothing unless ``-XX:G1PeriodicGCInterval`` asks it to (JEP 346, JDK 12).

    python benchmarks/jvm_memory.py --millions 10 --data /tmp/recsys-scale
    python benchmarks/jvm_memory.py --millions 1 --option= --option=-XX:G1PeriodicGCInterval=5000 \\
        "--option=-XX:G1PeriodicGCInterval=5000 -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=30"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recsys.config import PipelineConfig, SparkConfig  # noqa: E402
from scale import _rss_bytes, scaled_log  # noqa: E402

NO_OPTIONS = "-Dnothing=set"  # spark-submit needs a value; this one changes nothing


def jvm_rss_gib(parent: int) -> float:
    """The resident memory of ``parent``'s java children (the session's JVM)."""
    children = subprocess.run(["pgrep", "-P", str(parent), "java"], capture_output=True, text=True).stdout.split()
    return sum(_rss_bytes(int(pid)) for pid in children) / 2**30


def one_setting(options: str, events: Path, items: Path, idle: float, every: float) -> dict:
    """Ingest and graph under ``options`` in this process, then the JVM's memory while idle."""
    from recsys.graph import build_graph
    from recsys.ingest import ingest
    from recsys.lake import Lake
    from recsys.spark import spark_session
    from tasks.plan import plan_run

    lake = Path(tempfile.mkdtemp(prefix="jvm-memory-")) / "lake"
    config = PipelineConfig.model_validate({"lake": str(lake), "dataset": "scale", "ingest": {
        "input": str(events), "items_input": str(items), "preset": "sample"}})
    spark = spark_session(SparkConfig(driver_java_options=options or NO_OPTIONS))
    started = time.perf_counter()
    ingest(spark, config.ingest, Lake(lake))
    ingest_seconds = time.perf_counter() - started
    plan = plan_run(config)
    started = time.perf_counter()
    build_graph(spark, config.graph, Lake(lake), plan.window, lake.parent / "graph", plan.validation, None)
    graph_seconds = time.perf_counter() - started
    memory = [jvm_rss_gib(os.getpid())]
    deadline = time.monotonic() + idle
    while time.monotonic() < deadline:
        time.sleep(every)
        memory.append(jvm_rss_gib(os.getpid()))
    return {"ingest": ingest_seconds, "graph": graph_seconds, "after_graph": memory[0], "idle_end": memory[-1],
            "idle_min": min(memory)}


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--millions", type=float, default=1.0, help="events in millions (scale.py's logs)")
    cli.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "recsys-scale",
                     help="where the generated logs are kept (reused)")
    cli.add_argument("--option", action="append", metavar="OPTIONS",
                     help="driver Java options to compare, one string per --option=..., the first the peer ('' = none); "
                          "default: none, then spark.driver_java_options' default")
    cli.add_argument("--idle", type=float, default=60.0, help="seconds to idle after the graph")
    cli.add_argument("--every", type=float, default=5.0, help="seconds between memory readings")
    cli.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one setting, JSON on stdout
    arguments = cli.parse_args()
    log = scaled_log(arguments.millions, arguments.data)
    if arguments.one is not None:
        print(json.dumps(one_setting(arguments.one, log.events, log.items, arguments.idle, arguments.every)))
        return
    print(f"{log.rows:,} events, {os.cpu_count()} cores; JVM resident memory in GiB")
    print("| driver Java options | ingest s | graph s | after the graph | idle minimum | idle end | idle end vs first |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    first = None
    for options in arguments.option or ["", SparkConfig().driver_java_options]:
        child = subprocess.run([sys.executable, __file__, "--millions", str(arguments.millions), "--data",
                                str(arguments.data), "--idle", str(arguments.idle), "--every", str(arguments.every),
                                f"--one={options}"], capture_output=True, text=True, check=True)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        first = first or result
        print(f"| {options or '(none)'} | {result['ingest']:.1f} | {result['graph']:.1f} | {result['after_graph']:.2f} | "
              f"{result['idle_min']:.2f} | {result['idle_end']:.2f} | {result['idle_end'] / first['idle_end']:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
