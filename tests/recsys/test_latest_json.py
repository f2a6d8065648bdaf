"""The pointer has a name Hadoop-based readers see (issue 13, item 8): Spark reads ``LATEST.json`` as one
row, where ``_LATEST`` is a hidden file to it; ``_LATEST`` is still written, with the same content."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from flows.cli import main
from recsys import publish
from recsys.lake import Lake, write_json_atomic
from recsys.publish import ITEM_TO_ITEM_SCHEMA, latest_file, publish_item_to_item, read_pointer, rollback


def _publish(lake: Lake, day: str):
    recs = pa.table({"item_id": ["a"], "rank": pa.array([1], pa.int32()), "rec_item_id": ["b"],
                     "score": pa.array([1.0], pa.float32()), "model": ["m"], "run_id": [day]}, schema=ITEM_TO_ITEM_SCHEMA)
    return publish_item_to_item(lake, recs, day, f"run-{day}", "m", {"auc": 0.8})


@pytest.mark.slow  # a Spark JSON job: 10-20 s on a loaded 2-core machine
def test_spark_reads_latest_json_as_one_row_and_sees_nothing_in_latest(spark, tmp_path):
    lake = Lake(tmp_path)
    _publish(lake, "2024-03-01")
    rows = spark.read.json(str(latest_file(lake))).collect()
    assert len(rows) == 1 and rows[0]["run_date"] == "2024-03-01"
    assert rows[0]["tables"]["item_to_item"]["delta_version"] == 0
    assert spark.read.text(str(lake.latest_pointer)).count() == 0  # why: Hadoop skips '_' names, silently


def test_both_pointers_agree_through_publish_and_rollback(tmp_path):
    lake = Lake(tmp_path)
    result = _publish(lake, "2024-03-01")
    assert result.latest == str(tmp_path / "recommendations" / "LATEST.json")
    assert json.loads(latest_file(lake).read_text()) == json.loads(lake.latest_pointer.read_text())
    assert len(latest_file(lake).read_text().splitlines()) == 1  # one JSON object on one line

    _publish(lake, "2024-03-02")
    rollback(lake, "2024-03-01")
    assert json.loads(latest_file(lake).read_text())["run_date"] == "2024-03-01" == read_pointer(lake)["run_date"]
    assert json.loads(lake.latest_pointer.read_text())["run_date"] == "2024-03-01"


def test_a_crash_before_the_commit_leaves_latest_json_as_it_was(tmp_path, monkeypatch):
    lake = Lake(tmp_path)
    _publish(lake, "2024-03-01")
    before = latest_file(lake).read_bytes()

    def killed(*args, **kwargs):
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr(publish, "_commit", killed)
    with pytest.raises(RuntimeError):
        _publish(lake, "2024-03-02")
    assert latest_file(lake).read_bytes() == before


def test_recsys_latest_prints_latest_json_and_reads_an_older_lakes_latest(tmp_path, capsys):
    lake = Lake(tmp_path / "new")
    _publish(lake, "2024-03-01")
    assert main(["latest", "--lake", str(lake.root)]) == 0
    assert json.loads(capsys.readouterr().out)["run_date"] == "2024-03-01"

    old = Lake(tmp_path / "old")  # published before LATEST.json existed: only _LATEST
    write_json_atomic({"run_date": "2024-02-01", "tables": {}}, old.latest_pointer)
    assert read_pointer(old)["run_date"] == "2024-02-01"
    assert main(["latest", "--lake", str(old.root)]) == 0
    assert json.loads(capsys.readouterr().out)["run_date"] == "2024-02-01"
    assert main(["latest", "--lake", str(tmp_path / "none")]) == 1


def test_recsys_latest_finds_a_datasets_default_lake(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _publish(Lake(tmp_path / "data" / "lake" / "my-logs"), "2024-03-05")
    assert main(["latest", "--dataset", "my-logs"]) == 0
    assert json.loads(capsys.readouterr().out)["run_date"] == "2024-03-05"
    assert main(["latest"]) == 1  # the sample's lake has nothing
