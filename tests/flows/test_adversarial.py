"""Cases from the adversarial round (issue 14, classes 5 to 8) against the ``recsys`` command: a locked
lake is refused in one line before Prefect or Spark start, every config error exits 2 naming the field,
resource limits are checked at validation and against the catalogue, and the temporary Prefect server
ends with a killed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from flows.cli import main
from recsys.config import CatalogueTooSmall, PipelineConfig
from tasks.lock import LakeLock
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def no_flow(monkeypatch):
    """``flows.nightly`` replaced by one whose flows fail the test if called: nothing may start."""
    def started(*args, **kwargs):
        raise AssertionError("a flow started")

    monkeypatch.setitem(sys.modules, "flows.nightly", types.SimpleNamespace(nightly=started, ingest_flow=started))


@pytest.mark.parametrize("command", [["run"], ["ingest"], ["rollback", "--to", "2024-03-01"]])
def test_a_locked_lake_is_refused_in_one_line_before_anything_starts(tmp_path, capsys, no_flow, command):
    with LakeLock(tmp_path):  # a live run (this process) holds the lake
        code = main([*command, "--lake", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 5, out
    assert "the lake is busy" in out and "Traceback" not in out


def _config_error(capsys, *argv: str) -> str:
    assert main(["run", *argv]) == 2
    return capsys.readouterr().out


@pytest.mark.parametrize("text", ["- seed: 7\n", "42\n", "config:\n  - 1\n"])
def test_a_config_file_that_is_not_a_mapping_exits_2(tmp_path, capsys, no_flow, text):
    (tmp_path / "c.yaml").write_text(text)
    out = _config_error(capsys, "--config", str(tmp_path / "c.yaml"), "--lake", str(tmp_path / "lake"))
    assert "invalid configuration" in out and ("not a mapping" in out or "Input should be" in out)


def test_an_invalid_date_names_its_field(tmp_path, capsys, no_flow):
    assert "window.run_date" in _config_error(capsys, "--lake", str(tmp_path), "--set", "window.run_date=2024-02-30")
    (tmp_path / "c.yaml").write_text("window:\n  run_date: 2023-02-29\n")
    assert "window.run_date" in _config_error(capsys, "--config", str(tmp_path / "c.yaml"), "--lake", str(tmp_path))


def test_setting_a_field_inside_a_value_names_it(tmp_path, capsys, no_flow):
    out = _config_error(capsys, "--lake", str(tmp_path), "--set", "walks=3", "--set", "walks.walk_length=5")
    assert "walks" in out and "walks.walk_length" in out


@pytest.mark.parametrize("field", ["publish.top_n=1000000000", "publish.top_n=1.0e+9", "publish.user_top_n=100000000",
                                   "evaluate.k=1000000000", "evaluate.ks=[10,20,1000000000]"])
def test_absurd_top_n_and_k_fail_validation_naming_the_field(tmp_path, capsys, no_flow, field):
    assert field.split("=")[0] in _config_error(capsys, "--lake", str(tmp_path), "--set", field,
                                                "--set", "publish.user_champion_metric=ndcg@10")


@pytest.mark.parametrize("settings, field", [({"publish": {"top_n": 500}}, "publish.top_n"),
                                             ({"evaluate": {"k": 300}}, "evaluate.k"),
                                             ({"evaluate": {"ks": [10, 20, 400]}}, "evaluate.ks")])
def test_top_n_and_k_beyond_the_catalogue_are_refused_naming_field_and_items(settings, field):
    config = PipelineConfig.model_validate(settings)
    config.check_catalogue(1000)  # enough items: fine
    with pytest.raises(CatalogueTooSmall, match=rf"{field} \(\d+\) is more than the 200 items"):
        config.check_catalogue(200)


def test_a_run_stopped_by_the_catalogue_check_exits_2():
    from prefect.states import Failed

    from tasks.maintenance import exit_code

    assert exit_code(Failed(data=CatalogueTooSmall("publish.top_n (500) is more than the 200 items"))) == (
        2, "publish.top_n (500) is more than the 200 items")


def _process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def _server_of(run: int) -> int | None:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if parent == run and b"uvicorn" in command:
            return int(stat.parent.name)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_temporary_prefect_server_ends_with_a_killed_run(tmp_path, sig):
    signal_file, log = tmp_path / "paused", tmp_path / "run.log"
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(RECSYS_PAUSE_AT="lock", RECSYS_PAUSE_SIGNAL=str(signal_file), PREFECT_HOME=str(tmp_path / "prefect"))
    run = subprocess.Popen([sys.executable, "-m", "tests.faults", "run", "--lake", str(tmp_path / "lake")],
                           cwd=PROJECT_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not signal_file.exists():  # the flow runs: the server is up
        assert run.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the run never reached its pause point"
        time.sleep(0.2)
    server = _server_of(run.pid)
    assert server is not None, "no temporary Prefect server under the run"
    os.kill(run.pid, sig)  # the run alone, as a scheduler or the OOM killer would
    run.wait(timeout=120)
    deadline = time.monotonic() + 120
    while not _process_gone(server):
        assert time.monotonic() < deadline, f"the temporary server {server} outlived the run ({sig.name})"
        time.sleep(0.2)
