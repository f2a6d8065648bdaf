"""The ingest, graph and walks stages on a real Spark standalone cluster give the same tables as local mode.

A master and one worker are started on 127.0.0.1 from the installed pyspark. A driver subprocess
(one SparkContext per process, and this one already holds the suite's local session) runs the three
stages against ``spark://127.0.0.1:<port>`` into one lake while this process runs them in local mode
into another, with the same settings. The events, the transition table (with its item statistics)
and the walks must be identical, and the cluster run must really have used the cluster: its master
is the ``spark://`` URL, it had an executor, and the worker launched that executor for its
application. That is what "same seed, same tables, on one machine or a cluster" means for the Spark
stages. Both runs read the first 24,000 rows (about three days) of the embedded sample: every code
path, in a third of the time.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.config import PipelineConfig
from recsys.lake import Lake, read_parquet_dir, read_walks
from recsys.transition import ITEM_STATS_FILE, TransitionTable
from tasks.plan import plan_run
from tests.conftest import PROJECT_ROOT, SAMPLE

pytestmark = pytest.mark.slow

SETTINGS = {"walks": {"walks_per_node": 2, "walk_length": 10, "partitions": 2}}
SLICE_ROWS = 24_000  # about the sample's first three days
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)  # one ingest clock for both runs
STARTUP_TIMEOUT_S = 180  # generous: the machine is shared
DRIVER_TIMEOUT_S = 480

# The cluster run, in its own process: argv[1] is the settings as JSON, argv[2] the ingest clock.
DRIVER = r"""
import datetime as dt, json, sys, time
from recsys.config import PipelineConfig
from recsys.spark import spark_session
from tests.recsys.test_cluster import data_stages

start = time.monotonic()
config = PipelineConfig.model_validate(json.loads(sys.argv[1]))
session = spark_session(config.spark)
ingested, plan, graph, walks, seconds = data_stages(config, dt.datetime.fromisoformat(sys.argv[2]))
seconds = {"session": 0.0, **{k: v + (seconds["start"] - start) for k, v in seconds.items() if k != "start"}}
context = session.sparkContext
summary = {"master": context.master, "app_id": context.applicationId, "run_id": plan.run_id,
           "executors": context._jsc.sc().getExecutorMemoryStatus().size() - 1,  # the driver is listed too
           "rows_accepted": ingested.rows_accepted, "edges": graph.edges, "walks": walks.walks,
           "seconds": {k: round(v, 1) for k, v in seconds.items()}}
session.stop()
print("RESULT " + json.dumps(summary), flush=True)
"""


def data_stages(config: PipelineConfig, now: dt.datetime):
    """Ingest, plan, graph and walks with the library's stage functions, as the nightly flow chains them."""
    from recsys.graph import build_graph
    from recsys.ingest import ingest
    from recsys.spark import spark_session
    from recsys.walks import generate_walks
    from tasks.plan import plan_run

    start, seconds, spark, lake = time.monotonic(), {}, spark_session(config.spark), Lake(config.lake)
    seconds["start"] = start
    ingested = ingest(spark, config.ingest, lake, now)
    seconds["ingest"] = time.monotonic() - start
    plan = plan_run(config)
    graph = build_graph(spark, config.graph, lake, plan.window, plan.paths.graph, plan.validation)
    seconds["graph"] = time.monotonic() - start
    walks = generate_walks(spark, TransitionTable.load(plan.paths.graph), config.walks, config.seed, plan.paths.walks)
    seconds["walks"] = time.monotonic() - start
    return ingested, plan, graph, walks, seconds


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spark_class() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


def _spark_env() -> dict[str, str]:
    """Everything on 127.0.0.1; executors run this interpreter, which imports the project."""
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_DAEMON_MEMORY="512m")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([_spark_class(), *args], stdout=out, stderr=subprocess.STDOUT, env=_spark_env(),
                                start_new_session=True)  # its own process group: teardown kills its executors too


def _stop(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(10)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_for(log: Path, pattern: str, process: subprocess.Popen, what: str) -> re.Match:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace")) if log.exists() else None
        if found:
            return found
        if process.poll() is not None:
            break
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    pytest.fail(f"{what} did not come up (exit code {process.poll()}); {log} ends:\n{tail}")


class Cluster:
    """A standalone master and one 2-core worker on 127.0.0.1, logging under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root, self.work = root, root / "work"
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        master = self._spawn(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                              "--port", str(_free_port()), "--webui-port", str(_free_port())], "master.log")
        # The URL as bound (Spark moves to the next port if another process took ours meanwhile).
        self.url = _wait_for(self.root / "master.log", r"Starting Spark master at (spark://\S+)", master,
                             "the Spark master").group(1)
        _wait_for(self.root / "master.log", "I have been elected leader", master, "the Spark master")
        self.worker = self._spawn(["org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                                   "--cores", "2", "--memory", "2g", "--webui-port", str(_free_port()),
                                   "--work-dir", str(self.work)], "worker.log")

    def wait_for_worker(self) -> None:
        _wait_for(self.root / "worker.log", "Successfully registered with master", self.worker, "the Spark worker")
        _wait_for(self.root / "master.log", "Registering worker 127.0.0.1", self.worker, "the Spark worker")

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)

    def logs(self) -> str:
        """The worker's and executors' log tails, for a failure message."""
        files = [p for p in sorted(self.root.rglob("*")) if p.is_file() and p.name in ("worker.log", "stderr")]
        return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in files)

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        process = _start(args, self.root / log)
        self.processes.append(process)
        return process


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running master and a starting worker (``wait_for_worker`` blocks); both killed after, always."""
    cluster = Cluster(tmp_path_factory.mktemp("spark-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def events_slice(tmp_path_factory) -> Path:
    """The embedded sample's first rows, read by both runs (the input path is not part of the run id)."""
    path = tmp_path_factory.mktemp("sample") / "events.csv.gz"
    with gzip.open(SAMPLE / "events.csv.gz", "rt") as source, gzip.open(path, "wt") as target:
        target.writelines(itertools.islice(source, SLICE_ROWS + 1))  # the header and SLICE_ROWS rows
    return path


def _settings(lake: Path, events: Path, spark: dict) -> dict:
    return {**SETTINGS, "lake": str(lake), "ingest": {"input": str(events)},
            "spark": {"shuffle_partitions": 4, **spark}}


def _events(config: PipelineConfig) -> pa.Table:
    """The events table in a canonical order (every column, partition column decoded)."""
    table = read_parquet_dir(Lake(config.lake).events)
    table = pa.table({name: (column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column)
                      for name, column in sorted(zip(table.column_names, table.columns))})
    return table.sort_by([(name, "ascending") for name in table.column_names])


def test_cluster_run_writes_the_same_tables_as_local_mode(spark, cluster, events_slice, tmp_path):
    cluster_settings = _settings(tmp_path / "cluster_lake", events_slice,
                                 {"master": cluster.url, "executor_memory": "1g", "driver_memory": "1g"})
    on_cluster = PipelineConfig.model_validate(cluster_settings)
    local = PipelineConfig.model_validate(_settings(tmp_path / "local_lake", events_slice, {"master": "local[2]"}))

    # The driver starts while the worker is still registering: its jobs wait for the executor.
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(cluster_settings), NOW.isoformat()],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_spark_env(),
                              cwd=tmp_path)
    try:
        cluster.wait_for_worker()
        # Local mode in this process (the suite's session) while the cluster run works.
        start = time.monotonic()
        _, plan, _, local_walks, _ = data_stages(local, NOW)
        local_seconds = time.monotonic() - start
        output, _ = driver.communicate(timeout=DRIVER_TIMEOUT_S)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 0, f"the cluster driver failed:\n{output[-6000:]}\n{cluster.logs()}"
    summary = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
    print(f"local run {local_seconds:.1f} s; cluster run (cumulative seconds) {summary['seconds']}")

    # It ran on the cluster: its master is the standalone URL, and the worker ran an executor for it.
    assert summary["master"] == cluster.url and cluster.url.startswith("spark://127.0.0.1:")
    assert summary["executors"] >= 1
    assert any((cluster.work / summary["app_id"]).glob("*/stderr")), "the worker launched no executor for the app"
    # Same settings (spark and lake aside): same run id, so the two runs' folders line up.
    cluster_plan = plan_run(on_cluster)
    assert summary["run_id"] == cluster_plan.run_id == plan.run_id and cluster_plan.run_dir != plan.run_dir

    events = _events(local)
    assert events.num_rows == summary["rows_accepted"] == SLICE_ROWS
    assert _events(on_cluster).equals(events)

    ours, theirs = TransitionTable.load(plan.paths.graph), TransitionTable.load(cluster_plan.paths.graph)
    assert ours.n_edges == summary["edges"] > 0
    assert theirs.item_ids.tolist() == ours.item_ids.tolist()
    for name in ("indptr", "indices", "weights", "probs", "alias_prob", "alias_idx"):
        np.testing.assert_array_equal(getattr(theirs, name), getattr(ours, name), err_msg=name)
    stats = pq.read_table(plan.paths.graph / ITEM_STATS_FILE)
    assert pq.read_table(cluster_plan.paths.graph / ITEM_STATS_FILE).equals(stats)

    walks = read_walks(plan.paths.walks)
    assert len(walks) == local_walks.walks == summary["walks"] > 0
    assert read_walks(cluster_plan.paths.walks).to_pylist() == walks.to_pylist()
