"""The ``recsys`` command: flags map onto the config; a bad config exits 2 before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys

from flows.cli import build_config, parser
from tests.conftest import PROJECT_ROOT, TAOBAO


def test_preset_and_input_flags_build_the_config(tmp_path):
    args = parser().parse_args(["run", "--preset", "taobao", "--input", str(TAOBAO.parent if TAOBAO.exists() else tmp_path),
                                "--lake", str(tmp_path / "lake"), "--set", "walks.walk_length=12", "--set", "train.models=[word2vec]"])
    config = build_config(args)
    assert config.ingest.preset == "taobao" and config.dataset == "taobao" and config.ingest.items_input is None
    assert config.walks.walk_length == 12 and config.train.models == ("word2vec",)
    assert config.lake == (tmp_path / "lake").resolve()


def test_config_file_is_read(tmp_path):
    (tmp_path / "c.yaml").write_text("seed: 7\nwindow:\n  test_days: 2\n")
    config = build_config(parser().parse_args(["run", "--config", str(tmp_path / "c.yaml")]))
    assert config.seed == 7 and config.window.test_days == 2


def test_bad_config_exits_2_naming_the_field_and_runs_nothing(tmp_path):
    lake = tmp_path / "lake"
    result = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--lake", str(lake), "--set", "walks.walk_length=1"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 2
    assert "walks.walk_length" in result.stdout and "invalid configuration" in result.stdout
    assert not lake.exists()


def test_rollback_to_a_missing_version_exits_1(tmp_path):
    from flows.cli import main

    assert main(["rollback", "--to", "2024-01-01", "--lake", str(tmp_path)]) == 1


def test_ingest_takes_the_run_flags_and_refuses_a_reingest_path_that_is_no_file(tmp_path):
    from flows.cli import main

    logs = tmp_path / "logs"
    logs.mkdir()
    args = parser().parse_args(["ingest", "--preset", "taobao", "--input", str(logs), "--lake", str(tmp_path / "lake"),
                                "--reingest", str(logs / "a.csv")])
    assert build_config(args).dataset == "taobao" and args.reingest == str(logs / "a.csv")
    assert main(["ingest", "--input", str(logs), "--set", "dataset=mine", "--lake", str(tmp_path / "lake"),
                 "--reingest", str(logs / "missing.csv")]) == 2
    assert not (tmp_path / "lake").exists()
