"""Publishing a Delta table: one commit per run, _LATEST, the gate, rollback, retention and readers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from recsys import publish
from recsys.lake import Lake
from recsys.models.word2vec import Word2VecModel
from recsys.publish import (ITEM_TO_ITEM, ITEM_TO_ITEM_SCHEMA, item_to_item_table, publish_item_to_item,
                            published_dates, read_latest, rollback)
from recsys.transition import TransitionTable
from tests.conftest import PROJECT_ROOT


def _recs(tag: str, rows: int = 2) -> pa.Table:
    return pa.table({"item_id": ["a"] * rows, "rank": pa.array(range(1, rows + 1), pa.int32()),
                     "rec_item_id": [f"b{n}" for n in range(rows)], "score": pa.array(np.linspace(1, 0, rows), pa.float32()),
                     "model": ["m"] * rows, "run_id": [tag] * rows}, schema=ITEM_TO_ITEM_SCHEMA)


def _publish(lake, day, auc, rows=2, **kwargs):
    return publish_item_to_item(lake, _recs(day, rows), day, f"run-{day}", "m", {"auc": auc}, "auc", **kwargs)


def _table(lake: Lake) -> DeltaTable:
    return DeltaTable(lake.published(ITEM_TO_ITEM))


def _run_of(lake: Lake) -> str:
    [tag] = set(read_latest(lake.root).column("run_id").to_pylist())
    return tag


def test_item_to_item_table_has_n_rows_per_item_and_never_the_item_itself():
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    table = TransitionTable.from_edges(ids, np.array([0, 1]), np.array([1, 0]), np.ones(2))
    vectors = np.random.default_rng(0).normal(size=(4, 3))
    model = Word2VecModel("word2vec", vectors, np.array([1, 1, 1, 0], bool))
    recs = item_to_item_table(model, table, 2, "r1")
    assert recs.schema == ITEM_TO_ITEM_SCHEMA
    assert recs.column("item_id").to_pylist() == ["a", "a", "b", "b", "c", "c"]  # d has no vector: no rows
    assert recs.column("rank").to_pylist() == [1, 2] * 3
    assert all(i != r for i, r in zip(recs.column("item_id").to_pylist(), recs.column("rec_item_id").to_pylist()))
    assert "d" not in recs.column("rec_item_id").to_pylist()


def test_readers_get_the_newest_publication_and_each_commit_records_its_run(tmp_path):
    lake = Lake(tmp_path)
    first = _publish(lake, "2024-03-01", 0.8)
    second = publish_item_to_item(lake, _recs("2024-03-02", 3), "2024-03-02", "run-2024-03-02", "m",
                                  {"auc": 0.81, "auc_seen": float("nan"), "hit_rate": None}, "auc")
    assert (first.version, second.version) == (0, 1) and second.path == str(lake.published(ITEM_TO_ITEM))
    assert published_dates(lake) == ["2024-03-01", "2024-03-02"]
    assert _run_of(lake) == "2024-03-02" and read_latest(tmp_path).num_rows == 3
    info = _table(lake).history(1)[0]
    assert {k: info[k] for k in ("run_id", "run_date", "model", "metric", "rows")} == {
        "run_id": "run-2024-03-02", "run_date": "2024-03-02", "model": "m", "metric": "auc", "rows": "3"}
    no_nan = {"parse_constant": lambda c: pytest.fail(f"{c} is not JSON")}
    assert json.loads(info["metrics"], **no_nan) == {"auc": 0.81, "auc_seen": None, "hit_rate": None}
    latest = json.loads(lake.latest_pointer.read_text(), **no_nan)
    assert latest["run_date"] == "2024-03-02" and latest["run_id"] == "run-2024-03-02"
    assert latest["tables"][ITEM_TO_ITEM] == {"path": ITEM_TO_ITEM, "model": "m", "rows": 3, "delta_version": 1,
                                              "metrics": {"auc": 0.81, "auc_seen": None, "hit_rate": None},
                                              "run_date": "2024-03-02", "run_id": "run-2024-03-02"}


def test_every_engine_reads_exactly_one_run_after_two_publishes(tmp_path):
    lake = Lake(tmp_path)
    _publish(lake, "2024-03-01", 0.8, rows=2)
    _publish(lake, "2024-03-02", 0.8, rows=3)
    path = str(lake.published(ITEM_TO_ITEM))

    ds = DeltaTable(path).to_pyarrow_dataset()
    reads = {
        "deltalake to_pandas": DeltaTable(path).to_pandas()["run_id"].tolist(),
        "deltalake to_pyarrow_table": DeltaTable(path).to_pyarrow_table().column("run_id").to_pylist(),
        "pyarrow dataset": ds.to_table().column("run_id").to_pylist(),
        "polars": pl.read_delta(path)["run_id"].to_list(),
        "duckdb": [row[0] for row in duckdb.sql("select run_id from ds").fetchall()],
    }
    assert reads == dict.fromkeys(reads, ["2024-03-02"] * 3)


def test_gate_refuses_a_worse_champion_and_keeps_the_table_and_latest(tmp_path):
    lake = Lake(tmp_path)
    _publish(lake, "2024-03-01", 0.80, tolerance=0.02)
    latest = lake.latest_pointer.read_bytes()
    refused = _publish(lake, "2024-03-02", 0.77, tolerance=0.02)

    assert not refused.published and refused.version is None
    assert "worse than the published 2024-03-01" in refused.reason
    assert _table(lake).version() == 0 and _run_of(lake) == "2024-03-01" and lake.latest_pointer.read_bytes() == latest
    assert published_dates(lake) == ["2024-03-01"]
    within = _publish(lake, "2024-03-03", 0.79, tolerance=0.02)
    assert within.published and json.loads(lake.latest_pointer.read_text())["run_date"] == "2024-03-03"


@pytest.mark.parametrize("auc", [None, float("nan")])
def test_gate_refuses_an_uncomputable_metric(tmp_path, auc):
    lake = Lake(tmp_path)
    result = _publish(lake, "2024-03-01", auc)
    assert not result.published and "could not be computed" in result.reason
    assert not lake.latest_pointer.exists() and not lake.published(ITEM_TO_ITEM).exists()


def test_rollback_restores_the_run_and_the_gate_then_compares_with_it(tmp_path):
    lake = Lake(tmp_path)
    _publish(lake, "2024-03-01", 0.9)
    _publish(lake, "2024-03-02", 0.5)
    pointer = rollback(lake, "2024-03-01")

    assert _run_of(lake) == "2024-03-01" and pointer["run_date"] == "2024-03-01"
    assert json.loads(lake.latest_pointer.read_text())["tables"][ITEM_TO_ITEM]["delta_version"] == _table(lake).version() == 2
    assert rollback(lake, "2024-03-01")["tables"][ITEM_TO_ITEM]["delta_version"] == 2  # already there: no new commit
    refused = _publish(lake, "2024-03-03", 0.8, tolerance=0.05)  # 0.8 beats 03-02's 0.5, not the restored 0.9
    assert not refused.published and "worse than the published 2024-03-01" in refused.reason
    with pytest.raises(FileNotFoundError, match=r"2024-02-01.*2024-03-01.*2024-03-02"):
        rollback(lake, "2024-02-01")


def test_retention_never_removes_what_the_current_snapshot_needs(tmp_path):
    lake = Lake(tmp_path)
    results = [_publish(lake, day, 0.8, retention=2) for day in ("2024-03-01", "2024-03-02", "2024-03-03")]
    assert [r.removed_versions for r in results] == [(), (), ("2024-03-01",)]
    assert published_dates(lake) == ["2024-03-02", "2024-03-03"]
    with pytest.raises(FileNotFoundError, match="2024-03-01"):
        rollback(lake, "2024-03-01")

    rollback(lake, "2024-03-02")
    assert publish._retain(lake.published(ITEM_TO_ITEM), keep=1) == ()  # 03-03 is the newest date, and 03-02 is the current snapshot
    assert published_dates(lake) == ["2024-03-02", "2024-03-03"] and _run_of(lake) == "2024-03-02"
    assert _publish(lake, "2024-03-04", 0.8, retention=1).removed_versions == ("2024-03-02", "2024-03-03")
    assert published_dates(lake) == ["2024-03-04"] and read_latest(tmp_path).num_rows == 2
    assert len(list(lake.published(ITEM_TO_ITEM).glob("*.parquet"))) == 1


def test_republishing_a_run_date_makes_a_new_commit(tmp_path):
    lake = Lake(tmp_path)
    first = _publish(lake, "2024-03-01", 0.8, rows=2)
    second = _publish(lake, "2024-03-01", 0.8, rows=3)
    assert (first.version, second.version) == (0, 1) and first.path == second.path
    assert published_dates(lake) == ["2024-03-01"] and read_latest(tmp_path).num_rows == 3
    assert json.loads(lake.latest_pointer.read_text())["tables"][ITEM_TO_ITEM]["delta_version"] == 1
    assert [c["run_date"] for c in _table(lake).history()] == ["2024-03-01"] * 2
    _publish(lake, "2024-03-02", 0.8)
    rollback(lake, "2024-03-01")  # the newest commit of that date
    assert read_latest(tmp_path).num_rows == 3


def test_a_crash_before_the_commit_leaves_the_table_and_latest_as_they_were(tmp_path, monkeypatch):
    lake = Lake(tmp_path)
    folder = lake.published(ITEM_TO_ITEM)

    def killed(*args, **kwargs):
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr(publish, "_commit", killed)
    with pytest.raises(RuntimeError):
        _publish(lake, "2024-03-01", 0.8)
    assert published_dates(lake) == [] and not lake.latest_pointer.exists() and not DeltaTable.is_deltatable(str(folder))
    monkeypatch.undo()
    first = _publish(lake, "2024-03-01", 0.8)
    latest = lake.latest_pointer.read_bytes()

    monkeypatch.setattr(publish, "_commit", killed)
    with pytest.raises(RuntimeError):
        _publish(lake, "2024-03-02", 0.8, rows=3)
    monkeypatch.undo()
    assert _table(lake).version() == first.version and _run_of(lake) == "2024-03-01"
    assert lake.latest_pointer.read_bytes() == latest and published_dates(lake) == ["2024-03-01"]
    assert len(list(folder.glob("*.parquet"))) == 3  # the committed file and two that no commit names

    second = _publish(lake, "2024-03-02", 0.8, rows=3, retention=5)
    assert second.version == first.version + 1 and _run_of(lake) == "2024-03-02"
    assert {p.name for p in folder.glob("*.parquet")} == {Path(u).name for u in DeltaTable(folder, version=0).file_uris()
                                                          + _table(lake).file_uris()}  # vacuum removed the orphans


READER = """
import json, os, sys
from pathlib import Path
import polars as pl
from recsys.publish import read_latest
lake, stop, progress = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
reads, bad, seen = 0, [], set()
while not stop.exists():
    if reads % 2:
        table = pl.read_delta(str(lake / "recommendations" / "item_to_item")).to_arrow()
    else:
        table = read_latest(lake)
    tags = set(table.column("run_id").to_pylist())
    tag = min(tags)
    if len(tags) != 1 or table.num_rows != int(tag.split("-")[1]):
        bad.append([sorted(tags), table.num_rows])
    reads += 1
    seen.add(tag)
    tmp = progress.with_name(progress.name + ".tmp")
    tmp.write_text(json.dumps({"reads": reads, "bad": bad, "seen": sorted(seen)}))
    os.replace(tmp, progress)
"""


@pytest.mark.slow
def test_a_reader_in_a_loop_never_sees_a_partial_or_mixed_version(tmp_path):
    """A separate process reads the table in a loop (deltalake and polars in turn) while 30 runs are
    published (same and new dates, retention vacuuming old ones): every read is one whole run.

    After each publication the publisher waits until the reader has finished two more reads: the
    second of them began after the commit, so every run is seen, while reads overlap publications.
    """
    lake = Lake(tmp_path / "lake")

    def recs(k: int) -> pa.Table:
        rows = 500 + 37 * k
        tag = f"run-{rows}"
        return pa.table({"item_id": [f"i{n // 20}" for n in range(rows)], "rank": pa.array([n % 20 + 1 for n in range(rows)], pa.int32()),
                         "rec_item_id": [f"j{n}" for n in range(rows)], "score": pa.array(np.linspace(1, 0, rows), pa.float32()),
                         "model": ["m"] * rows, "run_id": [tag] * rows}, schema=ITEM_TO_ITEM_SCHEMA)

    publish_item_to_item(lake, recs(0), "2024-03-01", "r0", "m", {"auc": 0.8})
    stop, progress = tmp_path / "stop", tmp_path / "progress.json"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(lake.root), str(stop), str(progress)], cwd=PROJECT_ROOT)

    def reads() -> int:
        return json.loads(progress.read_text())["reads"] if progress.exists() else 0

    def wait_for_reads(n: int) -> None:
        deadline = time.monotonic() + 300  # only so that a stuck reader fails the test instead of hanging it
        while reads() < n:
            assert reader.poll() is None, "the reader died"
            assert time.monotonic() < deadline, f"the reader did not finish read {n}"
            time.sleep(0.005)

    try:
        wait_for_reads(1)
        for k in range(1, 31):
            day = f"2024-03-{1 + k // 3:02d}"  # three publications per day: re-publishing a date, then a new date
            publish_item_to_item(lake, recs(k), day, f"r{k}", "m", {"auc": 0.8}, retention=3)
            wait_for_reads(reads() + 2)
    finally:
        stop.touch()
        assert reader.wait(timeout=120) == 0
    result = json.loads(progress.read_text())
    assert result["bad"] == [] and len(result["seen"]) == 31, result
    assert len(published_dates(lake)) == 3
