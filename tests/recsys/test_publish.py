"""Publishing: atomic versions, _LATEST, the gate, rollback and retention."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recsys.lake import Lake
from recsys.models.embedding import EmbeddingModel
from recsys.publish import (ITEM_TO_ITEM_SCHEMA, item_to_item_table, publish_item_to_item, published_dates,
                            read_latest, remove_old_versions, rollback)
from recsys.transition import TransitionTable
from tests.conftest import PROJECT_ROOT


def _recs(tag: str) -> pa.Table:
    return pa.table({"item_id": ["a", "a"], "rank": pa.array([1, 2], pa.int32()), "rec_item_id": ["b", "c"],
                     "score": pa.array([0.9, 0.5], pa.float32()), "model": ["m", "m"], "run_id": [tag, tag]},
                    schema=ITEM_TO_ITEM_SCHEMA)


def _publish(lake, day, auc, **kwargs):
    return publish_item_to_item(lake, _recs(day), day, f"run-{day}", "m", {"auc": auc}, "auc", **kwargs)


def test_item_to_item_table_has_n_rows_per_item_and_never_the_item_itself():
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    table = TransitionTable.from_edges(ids, np.array([0, 1]), np.array([1, 0]), np.ones(2))
    vectors = np.random.default_rng(0).normal(size=(4, 3))
    model = EmbeddingModel("word2vec", vectors, np.array([1, 1, 1, 0], bool))
    recs = item_to_item_table(model, table, 2, "r1")
    assert recs.schema == ITEM_TO_ITEM_SCHEMA
    assert recs.column("item_id").to_pylist() == ["a", "a", "b", "b", "c", "c"]  # d has no vector: no rows
    assert recs.column("rank").to_pylist() == [1, 2] * 3
    assert all(i != r for i, r in zip(recs.column("item_id").to_pylist(), recs.column("rec_item_id").to_pylist()))
    assert "d" not in recs.column("rec_item_id").to_pylist()


def test_latest_points_at_the_newest_version(tmp_path):
    lake = Lake(tmp_path)
    _publish(lake, "2024-03-01", 0.8)
    _publish(lake, "2024-03-02", 0.81)
    assert published_dates(lake) == ["2024-03-01", "2024-03-02"]
    assert read_latest(tmp_path).column("run_id")[0].as_py() == "2024-03-02"


def test_gate_refuses_a_worse_champion_and_keeps_latest(tmp_path):
    lake = Lake(tmp_path)
    _publish(lake, "2024-03-01", 0.80, tolerance=0.02)
    refused = _publish(lake, "2024-03-02", 0.77, tolerance=0.02)
    within = _publish(lake, "2024-03-03", 0.79, tolerance=0.02)

    assert not refused.published and "worse than the published 2024-03-01" in refused.reason
    assert "2024-03-02" not in published_dates(lake)
    assert within.published and json.loads(lake.latest_pointer.read_text())["run_date"] == "2024-03-03"


def test_gate_refuses_an_uncomputable_metric(tmp_path):
    result = _publish(Lake(tmp_path), "2024-03-01", None)
    assert not result.published and not Lake(tmp_path).latest_pointer.exists()


def test_rollback_repoints_latest(tmp_path):
    lake = Lake(tmp_path)
    _publish(lake, "2024-03-01", 0.8)
    _publish(lake, "2024-03-02", 0.8)
    rollback(lake, "2024-03-01")
    assert read_latest(tmp_path).column("run_id")[0].as_py() == "2024-03-01"
    with pytest.raises(FileNotFoundError, match="2024-02-01"):
        rollback(lake, "2024-02-01")


def test_retention_never_removes_the_version_latest_names(tmp_path):
    lake = Lake(tmp_path)
    for day in ("2024-03-01", "2024-03-02", "2024-03-03"):
        _publish(lake, day, 0.8, retention=2)
    assert published_dates(lake) == ["2024-03-02", "2024-03-03"]
    rollback(lake, "2024-03-02")
    assert remove_old_versions(lake, keep=1) == ()  # the newest stays, and so does the one _LATEST names
    assert published_dates(lake) == ["2024-03-02", "2024-03-03"]
    assert _publish(lake, "2024-03-04", 0.8, retention=1).removed_versions == ("2024-03-02", "2024-03-03")
    assert published_dates(lake) == ["2024-03-04"] and read_latest(tmp_path).num_rows == 2


def test_republishing_a_run_date_makes_a_new_version_and_removes_the_superseded_one(tmp_path):
    lake = Lake(tmp_path)
    first = _publish(lake, "2024-03-01", 0.8)
    second = _publish(lake, "2024-03-01", 0.8)
    assert first.path != second.path and not Path(first.path).exists() and Path(second.path).exists()
    assert published_dates(lake) == ["2024-03-01"]
    assert json.loads(lake.latest_pointer.read_text())["tables"]["item_to_item"]["path"].endswith(Path(second.path).name)


READER = """
import json, sys, time
from pathlib import Path
from recsys.publish import read_latest
lake, stop, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
reads, bad, seen = 0, [], set()
while not stop.exists():
    table = read_latest(lake)
    tags = set(table.column("run_id").to_pylist())
    tag = next(iter(tags))
    if len(tags) != 1 or table.num_rows != int(tag.split("-")[1]):
        bad.append([sorted(tags), table.num_rows])
    reads += 1
    seen.add(tag)
out.write_text(json.dumps({"reads": reads, "bad": bad, "versions_seen": len(seen)}))
"""


def test_a_reader_in_a_loop_never_sees_a_partial_or_mixed_version(tmp_path):
    """A separate process reads the latest table while 40 versions are published (same and new dates,
    retention removing old ones): every read is one whole version."""
    lake = Lake(tmp_path / "lake")

    def recs(k: int) -> pa.Table:
        rows = 500 + 37 * k
        tag = f"run-{rows}"
        return pa.table({"item_id": [f"i{n // 20}" for n in range(rows)], "rank": pa.array([n % 20 + 1 for n in range(rows)], pa.int32()),
                         "rec_item_id": [f"j{n}" for n in range(rows)], "score": pa.array(np.linspace(1, 0, rows), pa.float32()),
                         "model": ["m"] * rows, "run_id": [tag] * rows}, schema=ITEM_TO_ITEM_SCHEMA)

    publish_item_to_item(lake, recs(0), "2024-03-01", "r0", "m", {"auc": 0.8})
    stop, out = tmp_path / "stop", tmp_path / "reads.json"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(lake.root), str(stop), str(out)], cwd=PROJECT_ROOT)
    try:
        time.sleep(2.0)  # let the reader start reading
        for k in range(1, 41):
            day = f"2024-03-{1 + k // 3:02d}"  # three publications per day: re-publishing a date, then a new date
            publish_item_to_item(lake, recs(k), day, f"r{k}", "m", {"auc": 0.8}, retention=3)
            time.sleep(0.02)
    finally:
        stop.touch()
        assert reader.wait(timeout=60) == 0
    result = json.loads(out.read_text())
    assert result["bad"] == [] and result["reads"] > 40 and result["versions_seen"] > 5, result
    assert len(published_dates(lake)) == 3
