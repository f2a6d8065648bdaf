"""The operator path of the README's "Schedule it", for real, on loopback.

It starts a Prefect server (``prefect server start --host 127.0.0.1``) with its own Prefect home,
creates the ``recsys-local`` process work pool and runs ``prefect deploy --all`` from the project
root, so the real ``prefect.yaml`` is what gets deployed. It proves that:

* the file deploys non-interactively with Prefect's default pull step (the directory it was
  deployed from), so no edit is needed on another machine beyond deploying from its own clone;
* the server then has both deployments, and ``nightly`` carries the 02:00 cron schedule in UTC
  (the server runs without its scheduler service, so that schedule cannot put a run of the repo's
  own lake in front of the worker);
* both deployments carry the file's concurrency limit, one run at a time with the ENQUEUE collision
  strategy, and the work pool's job variables that send the library's ``recsys`` loggers to the run
  logs (``PREFECT_LOGGING_EXTRA_LOGGERS``);
* two ``prefect deployment run 'nightly/manual'`` with one ``config`` override, into one lake, are
  both picked up by ``prefect worker start --pool recsys-local``: each runs the flow from the
  entrypoint in a fresh process and reaches COMPLETED, and they queue instead of overlapping: the
  second waited in ``AwaitingConcurrencySlot`` and started no earlier than the first ended (read from
  the server's states, so the lake's run lock never had to turn one away);
* the run logs hold records of the library's own loggers (``recsys.*``), and the run made the
  ``report`` (markdown) and ``item-to-item-metrics`` (table) artifacts;
* the runs published: ``read_latest`` returns a table and ``_LATEST`` names the run date.

Every process the test starts carries a unique marker in its environment; teardown ends them all
(server, worker, the flow run it spawned, Spark's JVM) by that marker, even ones that were moved
into their own session or re-parented.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from recsys.publish import read_latest
from tests.conftest import PROJECT_ROOT

MARKER = "RECSYS_DEPLOYMENT_TEST"
SERVER_TIMEOUT_S = 120
RUN_TIMEOUT_S = 300  # one run; the two queued runs get twice this, plus the wait for a slot
LOGS_TIMEOUT_S = 60  # the flow run's process sends its last log batch as it exits, just after COMPLETED
SLOT_WAIT_S = 5  # how long the server tells a run that found no free slot to wait before it asks again
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
LIBRARY_LOGGER = "recsys"
ARTIFACTS = {"report": "markdown", "item-to-item-metrics": "table"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _marked_pids(token: str) -> list[int]:
    """Processes whose environment carries ``MARKER=token``: everything this test started, and their children."""
    needle = f"{MARKER}={token}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:  # gone already, or not ours
            pass
    return pids


def _end_all(token: str, started: list[subprocess.Popen]) -> None:
    for proc in started:  # each CLI process leads its own group: stop the group first
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (any(p.poll() is None for p in started) or _marked_pids(token)):
        time.sleep(0.3)
    for pid in _marked_pids(token):  # whatever is left, including sessions of their own (the flow run, the JVM)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for proc in started:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} not written)"


class Operator:
    """Runs ``prefect`` commands as an operator would, all against one server."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.token = uuid.uuid4().hex
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        home = tmp_path / "prefect-home"
        home.mkdir()
        self.env = {
            **os.environ,
            MARKER: self.token,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_CLI_PROMPT": "false",
            "COLUMNS": "200",
            # Server side: a run that finds its deployment's slot taken is told to come back after this
            # many seconds (default 30); only shortens the test, the queueing itself is the default's.
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": str(SLOT_WAIT_S),
        }
        self.started: list[subprocess.Popen] = []

    def spawn(self, log: str, *args: str) -> subprocess.Popen:
        with open(self.tmp_path / log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "prefect", *args], cwd=PROJECT_ROOT, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.started.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=PROJECT_ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def start_server(self) -> None:
        self.server = self.spawn("server.log", "server", "start", "--host", "127.0.0.1", "--port", str(self.port),
                                 "--analytics-off", "--no-scheduler")
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.server.poll() is None, f"the server exited:\n{_tail(self.tmp_path / 'server.log')}"
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        self.env["PREFECT_API_URL"] = self.api_url
                        return
            except OSError:
                pass
            time.sleep(0.5)
        pytest.fail(f"no answer from {self.api_url}/health in {SERVER_TIMEOUT_S} s:\n{_tail(self.tmp_path / 'server.log')}")

    def client(self):
        """A sync API client for this server (the test process's own settings point elsewhere)."""
        from contextlib import contextmanager

        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        @contextmanager
        def connected():
            with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
                with get_client(sync_client=True) as client:
                    yield client

        return connected()


@pytest.fixture
def operator(tmp_path):
    op = Operator(tmp_path)
    try:
        op.start_server()
        yield op
    finally:
        _end_all(op.token, op.started)


def _logger_names(client, flow_run_id) -> set[str]:
    """The names of the loggers behind the log records the server holds for one flow run, page by page."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    only_this_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    names: set[str] = set()
    offset = 0
    while page := client.read_logs(log_filter=only_this_run, offset=offset, limit=200):
        names.update(record.name for record in page)
        offset += len(page)
    return names


def _from_library(logger_names: set[str]) -> set[str]:
    return {name for name in logger_names if name == LIBRARY_LOGGER or name.startswith(LIBRARY_LOGGER + ".")}


def _artifacts(client, flow_run_id) -> dict[str, str]:
    """Key -> type of the artifacts one flow run (its tasks included) created."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {artifact.key: artifact.type for artifact in artifacts if artifact.key}


@pytest.mark.slow
def test_deploy_both_deployments_and_queue_two_manual_runs_through_a_worker(operator, tmp_path):
    lake = tmp_path / "lake"
    operator.run("work-pool", "create", "recsys-local", "--type", "process")
    deployed = operator.run("deploy", "--all", "--no-prompt", timeout=180)

    with operator.client() as client:
        nightly = client.read_deployment_by_name("nightly/nightly")
        manual = client.read_deployment_by_name("nightly/manual")
        assert nightly.work_pool_name == manual.work_pool_name == "recsys-local"
        assert nightly.entrypoint == manual.entrypoint == "flows/nightly.py:nightly"
        (schedule,) = nightly.schedules
        assert schedule.active and schedule.schedule.cron == "0 2 * * *" and schedule.schedule.timezone == "UTC"
        assert not manual.schedules
        assert nightly.parameters == manual.parameters and nightly.parameters["config"]["dataset"] == "sample"
        # Prefect's default pull step: the worker runs the entrypoint from the directory it was deployed from.
        assert manual.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_ROOT)}}], deployed
        for deployment in (nightly, manual):
            # One run at a time per deployment; a second one waits for the slot (ENQUEUE), it is not cancelled.
            assert deployment.global_concurrency_limit is not None, f"{deployment.name}: no concurrency limit\n{deployed}"
            assert deployment.global_concurrency_limit.limit == 1
            assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
            # The flow run's process attaches Prefect's API log handler to the library's loggers.
            assert deployment.job_variables == {"env": {"PREFECT_LOGGING_EXTRA_LOGGERS": LIBRARY_LOGGER}}

    # The whole `config` parameter is replaced: a small, fast run into a lake of the test's own, twice.
    config = {
        "dataset": "sample",
        "lake": str(lake),
        "spark": {"master": "local[2]", "shuffle_partitions": 2},
        "walks": {"walks_per_node": 2, "walk_length": 10, "partitions": 2},
        "train": {"models": ["word2vec", "popular"], "word2vec": {"epochs": 2}},
        "publish": {"tolerance": 1.0},
    }
    for _ in range(2):  # back to back, before any worker runs: both are due at once
        operator.run("deployment", "run", "nightly/manual", "--params", json.dumps({"config": config}))
    # As the README starts it: a worker that keeps polling the pool, so it picks up the queued run as well.
    worker = operator.spawn("worker.log", "worker", "start", "--pool", "recsys-local")

    with operator.client() as client:
        flow_runs = client.read_flow_runs()  # the two manual runs, and nothing scheduled from `nightly`
        assert len(flow_runs) == 2, [(run.name, run.deployment_id) for run in flow_runs]
        for flow_run in flow_runs:
            assert flow_run.deployment_id == manual.id
            assert flow_run.parameters["config"]["lake"] == str(lake)
        timeout = 2 * RUN_TIMEOUT_S + 60
        deadline = time.monotonic() + timeout
        while True:
            flow_runs = [client.read_flow_run(run.id) for run in flow_runs]
            if all(run.state.type.value in FINAL_STATES for run in flow_runs):
                break
            states = {run.name: run.state.name for run in flow_runs}
            assert time.monotonic() < deadline, f"still {states} after {timeout} s:\n{_tail(tmp_path / 'worker.log')}"
            assert worker.poll() is None, f"the worker exited, runs {states}:\n{_tail(tmp_path / 'worker.log')}"
            time.sleep(1)
        for run in flow_runs:
            assert run.state.type.value == "COMPLETED", (
                f"{run.name}: {run.state.name}: {run.state.message}\n{_tail(tmp_path / 'worker.log', 8000)}")
        assert worker.poll() is None, f"the worker did not stay up:\n{_tail(tmp_path / 'worker.log')}"

        # They queued: the second one waited for the first one's slot and started after it ended.
        first, second = sorted(flow_runs, key=lambda run: run.start_time)
        assert second.start_time >= first.end_time, (
            f"overlap: {first.name} ran {first.start_time}..{first.end_time}, {second.name} started {second.start_time}")
        history = [state.name for state in client.read_flow_run_states(second.id)]
        assert "AwaitingConcurrencySlot" in history, history

        # The first run computed every stage (the second may find them cached): the library's loggers
        # reached its run logs, and it made the report and the metrics table as artifacts.
        deadline = time.monotonic() + LOGS_TIMEOUT_S
        names = _logger_names(client, first.id)
        while not _from_library(names) and time.monotonic() < deadline:
            time.sleep(1)
            names = _logger_names(client, first.id)
        made = _artifacts(client, first.id)
        missing = [f"no {kind} artifact {key!r}" for key, kind in ARTIFACTS.items() if made.get(key) != kind]
        if not _from_library(names):
            missing.insert(0, f"no log record of a `{LIBRARY_LOGGER}` logger after {LOGS_TIMEOUT_S} s")
        assert not missing, f"{first.name}: {'; '.join(missing)}\nloggers in its logs: {sorted(names)}\nartifacts: {made}"

    published = read_latest(lake)
    assert published.num_rows > 0
    pointer = json.loads((lake / "recommendations" / "_LATEST").read_text())
    assert "run_date" in pointer
