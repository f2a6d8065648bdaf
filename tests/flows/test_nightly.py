"""The nightly flow end to end through Prefect on the embedded sample, and the deployments file."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from recsys.config import PipelineConfig
from recsys.publish import read_latest
from tests.conftest import PROJECT_ROOT

PUBLISHED_COLUMNS = ["item_id", "rank", "rec_item_id", "score", "model", "run_id"]


def _deployments() -> list[dict]:
    return yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]


def test_prefect_yaml_declares_nightly_and_manual_over_one_flow():
    deployments = {d["name"]: d for d in _deployments()}
    assert set(deployments) == {"nightly", "manual"}
    nightly, manual = deployments["nightly"], deployments["manual"]
    assert nightly["entrypoint"] == manual["entrypoint"] and nightly["parameters"] == manual["parameters"]
    (schedule,) = nightly["schedules"]
    assert schedule["timezone"] == "UTC" and len(schedule["cron"].split()) == 5
    assert not manual.get("schedules")


@pytest.mark.parametrize("name", ["nightly", "manual"])
def test_prefect_yaml_entrypoints_import_and_parameters_validate(name, monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)  # deployments run from the project root
    deployment = next(d for d in _deployments() if d["name"] == name)
    module_path, flow_name = deployment["entrypoint"].split(":")
    module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, flow_name)
    assert flow.name == "nightly"
    config = PipelineConfig.model_validate(deployment["parameters"]["config"])
    config.check_files()
    assert config.ingest.source().is_file()
    flow.validate_parameters(deployment["parameters"])  # what Prefect does before a run starts


def test_bad_parameters_fail_before_any_stage(prefect_harness, tmp_path):
    from flows.nightly import nightly

    with pytest.raises(Exception, match="walk_length"):
        nightly(config={"lake": str(tmp_path / "lake"), "walks": {"walk_length": 1}})
    assert not (tmp_path / "lake").exists()


@pytest.mark.slow
def test_nightly_flow_on_the_sample(prefect_harness, tmp_path):
    from flows.nightly import nightly

    result = nightly(config=PipelineConfig(lake=tmp_path / "lake"))
    rows = {r["model"]: r for r in result.evaluate.rows}

    assert result.ingest.balanced and result.ingest.rows_read > 50_000
    assert rows["word2vec"]["auc"] >= 0.90
    assert rows["word2vec"]["hit_rate"] > rows["popular"]["hit_rate"]
    report = Path(result.report.path).read_text()
    assert "item_knn" in report and "train 2024-03-01..2024-03-13, test 2024-03-14..2024-03-14" in report
    assert "seed: 42" in report and "rows_read=" in report and "## Publication" in report
    assert all(Path(result.report.path).parent.joinpath("plots", f"pr_{m}.png").exists() for m in rows)
    assert pq.read_table(result.evaluate.metrics_path).num_rows == 3

    published = read_latest(tmp_path / "lake")
    assert published.column_names == PUBLISHED_COLUMNS
    assert pc.sum(pc.equal(published.column("item_id"), published.column("rec_item_id"))).as_py() == 0
    per_item = published.group_by("item_id").aggregate([("rank", "count"), ("rank", "max")])
    # the champion by next-item Recall@20 is item_knn: up to 20 rows per item, ranks 1..count
    assert result.evaluate.metric == "next_recall" and result.evaluate.champion == "item_knn"
    assert max(per_item.column("rank_count").to_pylist()) == 20
    assert per_item.column("rank_count").to_pylist() == per_item.column("rank_max").to_pylist()
    next_rows = {r["model"]: r for r in result.evaluate.next_item_rows}
    assert next_rows["item_knn"]["next_recall@20"] > next_rows["popular"]["next_recall@20"]
    assert "## Next-item metrics" in report
    pointer = json.loads((tmp_path / "lake" / "recommendations" / "_LATEST").read_text())
    assert pointer["run_date"] == result.plan.run_date and pointer["tables"]["item_to_item"]["model"] == result.evaluate.champion

    # user_to_item: the champion (by NDCG@20) beats both baselines; N rows per user, no training item
    users = {r["model"]: r for r in result.evaluate.user_rows}
    assert set(users) == {"popular", "item_knn", "lightgcn"} and result.evaluate.user_champion == "lightgcn"
    assert users["lightgcn"]["ndcg@20"] > users["item_knn"]["ndcg@20"] > users["popular"]["ndcg@20"]
    assert result.evaluate.user_holdout["users_evaluated"] > 500 and "## User-to-item metrics" in report
    user_table = read_latest(tmp_path / "lake", "user_to_item")
    assert user_table.column_names == ["user_id", "rank", "item_id", "score", "model", "run_id"]
    per_user = user_table.group_by("user_id").aggregate([("rank", "count"), ("item_id", "count_distinct")])
    assert set(per_user.column("rank_count").to_pylist()) == {20} == set(per_user.column("item_id_count_distinct").to_pylist())
    assert per_user.num_rows == result.graph.users and pointer["tables"]["user_to_item"]["model"] == "lightgcn"
    events = pq.read_table(tmp_path / "lake" / "events", columns=["user_id", "item_id", "event_date"])
    trained = {(u, i) for u, i, d in zip(*(events.column(c).to_pylist() for c in ("user_id", "item_id", "event_date")))
               if result.plan.train_from <= str(d) <= result.plan.train_until}
    assert not [1 for u, i in zip(user_table.column("user_id").to_pylist(), user_table.column("item_id").to_pylist())
                if (u, i) in trained]

    # The README's command, in its own process and Prefect home, into a second lake: identical table.
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "COLUMNS": "200"}
    cli = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--lake", str(tmp_path / "lake-2")], cwd=PROJECT_ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    for expected in ("item-to-item metrics", "next-item metrics", "user-to-item metrics", "word2vec", "published item_to_item:",
                     "published user_to_item:", "report:", "run_date 2024-03-14"):
        assert expected in cli.stdout
    assert read_latest(tmp_path / "lake-2").equals(published)
    assert read_latest(tmp_path / "lake-2", "user_to_item").equals(user_table)
    second = pq.read_table(tmp_path / "lake-2" / "runs" / result.plan.run_id / "metrics.parquet")
    assert second.drop_columns(["train_seconds"]).to_pandas().equals(  # pandas: NaN (no cold pairs) equals NaN
            pq.read_table(result.evaluate.metrics_path).drop_columns(["train_seconds"]).to_pandas())
