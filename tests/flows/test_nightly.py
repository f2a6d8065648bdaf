"""The nightly flow end to end through Prefect on the embedded sample, and the deployments file."""

from __future__ import annotations

import importlib
import json
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
    assert config.ingest.input.is_file()
    flow.validate_parameters(deployment["parameters"])  # what Prefect does before a run starts


def test_bad_parameters_fail_before_any_stage(prefect_harness, tmp_path):
    from flows.nightly import nightly

    with pytest.raises(Exception, match="walk_length"):
        nightly(config={"lake": str(tmp_path / "lake"), "walks": {"walk_length": 1}})
    assert not (tmp_path / "lake").exists()


def _run(lake: Path):
    from flows.nightly import nightly

    return nightly(config=PipelineConfig(lake=lake))


@pytest.mark.slow
def test_nightly_flow_on_the_sample(prefect_harness, tmp_path):
    result = _run(tmp_path / "lake")
    rows = {r["model"]: r for r in result.evaluate.rows}

    assert result.ingest.balanced and result.ingest.rows_read > 50_000
    assert rows["word2vec"]["auc"] >= 0.90
    assert rows["word2vec"]["hit_rate"] > rows["popular"]["hit_rate"]
    report = Path(result.evaluate.report_path).read_text()
    assert "item_knn" in report and "train 2024-" in report and "seed: 42" in report
    assert all(Path(result.evaluate.report_path).parent.joinpath("plots", f"pr_{m}.png").exists() for m in rows)
    assert pq.read_table(result.evaluate.metrics_path).num_rows == 3

    published = read_latest(tmp_path / "lake")
    assert published.column_names == PUBLISHED_COLUMNS
    assert pc.sum(pc.equal(published.column("item_id"), published.column("rec_item_id"))).as_py() == 0
    per_item = published.group_by("item_id").aggregate([("rank", "count"), ("rank", "max")])
    assert set(per_item.column("rank_count").to_pylist()) == {20} and set(per_item.column("rank_max").to_pylist()) == {20}
    pointer = json.loads((tmp_path / "lake" / "recommendations" / "_LATEST").read_text())
    assert pointer["run_date"] == result.plan.run_date and pointer["tables"]["item_to_item"]["model"] == result.evaluate.champion

    again = _run(tmp_path / "lake-2")
    assert read_latest(tmp_path / "lake-2").equals(published)
    assert _same_metrics(again.evaluate.rows, result.evaluate.rows)


def _same_metrics(a, b) -> bool:
    drop = {"train_seconds"}
    return [{k: v for k, v in r.items() if k not in drop} for r in a] == [{k: v for k, v in r.items() if k not in drop} for r in b]
