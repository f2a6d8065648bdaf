"""Every stage once on the real Taobao log (small walk and training settings to keep CI fast)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
import pytest

from recsys import pipeline
from recsys.config import PipelineConfig
from recsys.publish import read_latest
from recsys.transition import TransitionTable
from recsys.lake import read_walks
from tests.conftest import TAOBAO, dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    lake = tmp_path_factory.mktemp("taobao") / "lake"
    config = PipelineConfig.model_validate({
        "lake": str(lake), "dataset": "taobao",
        "ingest": {"preset": "taobao", "input": str(dataset(TAOBAO)), "items_input": None},
        "walks": {"walks_per_node": 2, "walk_length": 10},
        "train": {"word2vec": {"epochs": 2, "vector_size": 32}},
    })
    ingested = pipeline.run_ingest(config)
    plan = pipeline.plan_run(config)
    return {"config": config, "plan": plan, "ingest": ingested}


def test_ingest(run):
    assert run["ingest"].balanced and run["ingest"].rows_accepted > 84000


def test_plan_uses_the_last_day_as_test_and_ignores_stray_days(run):
    plan = run["plan"]
    assert (plan.run_date, plan.test_from) == ("2017-12-03", "2017-12-03")
    assert plan.train_until == "2017-12-02"


def test_graph(run):
    result = pipeline.run_graph(run["config"], run["plan"])
    table = TransitionTable.load(run["plan"].paths.graph)
    assert result.nodes == table.n_nodes and result.edges == table.n_edges > 100_000
    sums = np.bincount(np.repeat(np.arange(table.n_nodes), table.out_degree()), weights=table.probs, minlength=table.n_nodes)
    assert np.allclose(sums[table.out_degree() > 0], 1.0, atol=1e-5)


def test_walks(run):
    result = pipeline.run_walks(run["config"], run["plan"])
    walks = read_walks(run["plan"].paths.walks)
    assert len(walks) == result.walks == 2 * result.start_nodes
    assert pc.max(pc.list_value_length(walks)).as_py() == 10


def test_train(run):
    result = pipeline.run_train(run["config"], run["plan"])
    assert [m.name for m in result.models] == ["word2vec", "popular", "item_knn"]


def test_evaluate(run):
    result = pipeline.run_evaluate(run["config"], run["plan"])
    rows = {r["model"]: r for r in result.rows}
    assert set(rows) == {"word2vec", "popular", "item_knn"}
    assert all(0.0 <= rows[m]["auc"] <= 1.0 for m in rows)
    assert rows["word2vec"]["auc_seen"] > rows["popular"]["auc_seen"]
    report = run["plan"].paths.report.read_text()
    assert "dataset: **taobao**" in report and "train 2017-11-24..2017-12-02, test 2017-12-03..2017-12-03" in report
    run["evaluation"] = result


def test_publish(run):
    result = pipeline.run_publish(run["config"], run["plan"], run["evaluation"])
    table = read_latest(run["config"].lake)
    assert table.num_rows == result.rows > 0
    assert pc.sum(pc.equal(table.column("item_id"), table.column("rec_item_id"))).as_py() == 0
    pointer = json.loads((run["config"].lake / "recommendations" / "_LATEST").read_text())
    assert pointer["run_date"] == "2017-12-03"
