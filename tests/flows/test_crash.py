"""Crash safety: real ``recsys run`` processes killed with SIGKILL during walks, training and publishing.

A first run publishes 2024-03-13. Three runs for 2024-03-14 are then killed, each at a pause point
(``tests/faults.py``, wrapped around the production functions from the test's own process) inside a
stage: walks written but not moved into place, one model saved, the table's data file written but
the Delta commit not made. After each kill the table's commit log, its current snapshot and
``_LATEST`` are byte for byte what they were. The next run completes, publishes 2024-03-14 and
leaves no temporary file or lock behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from recsys.lake import LEFTOVER, Lake
from recsys.publish import published_dates, read_latest
from tests.conftest import PROJECT_ROOT

D, NEXT = "2024-03-13", "2024-03-14"
SETTINGS = ["walks.walks_per_node=2", "walks.walk_length=10", "walks.partitions=2", "train.models=[word2vec,popular]",
            "train.word2vec.epochs=2", "publish.tolerance=1.0"]


def _start(lake: Path, run_date: str, log: Path, api_url: str, pause: str | None = None,
           signal_file: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "RECSYS_PAUSE_AT": pause or "", "RECSYS_PAUSE_SIGNAL": str(signal_file or ""),
           "PREFECT_API_URL": api_url}  # the test's server: no temporary one started (and killed) per run
    command = [sys.executable, "-m", "tests.faults", "run", "--lake", str(lake), "--set", f"window.run_date={run_date}"]
    for setting in SETTINGS:
        command += ["--set", setting]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _run(lake: Path, run_date: str, log: Path, api_url: str) -> None:
    process = _start(lake, run_date, log, api_url)
    assert process.wait(timeout=400) == 0, log.read_text()[-3000:]


def _kill_at(lake: Path, run_date: str, point: str, folder: Path, api_url: str) -> None:
    signal_file, log = folder / f"paused-{point}", folder / f"killed-at-{point}.log"
    process = _start(lake, run_date, log, api_url, point, signal_file)
    deadline = time.monotonic() + 400
    while not signal_file.exists():
        assert process.poll() is None, f"the run ended before reaching {point}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"the run never reached {point}"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the run, its Spark JVM and Python workers, all at once
    process.wait(timeout=30)


def _published_state(lake: Lake) -> dict[str, str]:
    """``_LATEST`` and every file of the Delta table's commit log, with their SHA-256, and the files of
    its current snapshot (a data file written for a commit that never happened is not part of it)."""
    state = {str(p.relative_to(lake.recommendations)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(lake.recommendations.rglob("*")) if p.is_file() and
             (p == lake.latest_pointer or "_delta_log" in p.relative_to(lake.recommendations).parts)}
    state["snapshot"] = json.dumps(sorted(DeltaTable(str(lake.published("item_to_item"))).file_uris()))
    return state


def _leftovers(lake: Lake) -> list[Path]:
    return [p for p in lake.root.rglob(".*") if LEFTOVER.match(p.name)]


@pytest.mark.slow
def test_killed_runs_leave_latest_intact_and_the_next_run_recovers(tmp_path, prefect_api_url):
    lake = Lake(tmp_path / "lake")
    _run(lake.root, D, tmp_path / "first.log", prefect_api_url)
    before, table_before = _published_state(lake), read_latest(lake.root)
    assert json.loads(lake.latest_pointer.read_text())["run_date"] == D

    left_behind = {}
    for point in ("walks", "train", "publish"):
        _kill_at(lake.root, NEXT, point, tmp_path, prefect_api_url)
        assert _published_state(lake) == before, f"killed during {point}: the published files changed"
        assert read_latest(lake.root).equals(table_before)
        left_behind[point] = [p.name for p in _leftovers(lake)]
        assert (lake.root / "_RUN_LOCK").exists()  # the killed run's lock, taken over by the next run
    assert any(name.startswith(".walks.") for name in left_behind["walks"]), left_behind

    _run(lake.root, NEXT, tmp_path / "recovery.log", prefect_api_url)
    assert json.loads(lake.latest_pointer.read_text())["run_date"] == NEXT
    assert published_dates(lake) == [D, NEXT]
    assert read_latest(lake.root).num_rows > 0
    after = _published_state(lake)
    assert {k: v for k, v in after.items() if "_delta_log" in k and k in before} == \
        {k: v for k, v in before.items() if "_delta_log" in k}  # history is appended to, never rewritten
    assert _leftovers(lake) == [] and not (lake.root / "_RUN_LOCK").exists()
