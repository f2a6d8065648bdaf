"""Every stage once on the real Taobao log, every registered model included (small walk and training
settings to keep CI fast). Category is the side information; the test day's items that never
appeared in training but have a category form the cold split."""

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
from recsys.models import WITH_CURVES
from recsys.pipeline import training_inputs
from tests.conftest import TAOBAO, dataset

pytestmark = pytest.mark.slow

MODELS = ("word2vec", "skipgram", "side_info_avg", "eges", "mf_pairs", "mf_walks", "popular", "item_knn")
SMALL = {"epochs": 2, "vector_size": 32}


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    lake = tmp_path_factory.mktemp("taobao") / "lake"
    config = PipelineConfig.model_validate({
        "lake": str(lake), "dataset": "taobao",
        "ingest": {"preset": "taobao", "input": str(dataset(TAOBAO)), "items_input": None},
        "walks": {"walks_per_node": 2, "walk_length": 10},
        "train": {"models": list(MODELS), "word2vec": {"epochs": 2, "vector_size": 32},
                  **{block: SMALL for block in ("skipgram", "side_info", "mf")}},
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


def test_graph(run, spark):
    result = pipeline.run_graph(run["config"], run["plan"])
    table = TransitionTable.load(run["plan"].paths.graph)
    assert result.nodes == table.n_nodes and result.edges == table.n_edges > 100_000
    events = spark.read.parquet(str(run["config"].lake / "events"))
    in_training = events.where("event_date BETWEEN '2017-11-24' AND '2017-12-02'").count()
    assert result.validation_events > 0 and result.train_events + result.validation_events == in_training
    assert result.cold_items > 1000  # test-day items with a category but no training event
    sums = np.bincount(np.repeat(np.arange(table.n_nodes), table.out_degree()), weights=table.probs, minlength=table.n_nodes)
    assert np.allclose(sums[table.out_degree() > 0], 1.0, atol=1e-5)


def test_walks(run):
    result = pipeline.run_walks(run["config"], run["plan"])
    walks = read_walks(run["plan"].paths.walks)
    assert len(walks) == result.walks == 2 * result.start_nodes
    assert pc.max(pc.list_value_length(walks)).as_py() == 10


def test_train(run):
    result = pipeline.run_train(run["config"], run["plan"])
    assert [m.name for m in result.models] == list(MODELS)
    validation = json.loads((run["plan"].paths.root / "stages" / "validation.json").read_text())
    assert validation["positives"] > 100 and validation["negatives"] == validation["positives"]
    catalog = training_inputs(run["config"], run["plan"]).catalog
    for name in WITH_CURVES:
        meta = json.loads((run["plan"].paths.model(name) / "model.json").read_text())
        assert len(meta["curve"]) == SMALL["epochs"] and meta["curve"][-1]["loss"] < meta["curve"][0]["loss"], name
        assert all(0.5 < r["validation_auc"] <= 1.0 for r in meta["curve"]), name
        has_vector = np.load(run["plan"].paths.model(name) / "has_vector.npy")
        cold_with_vector = has_vector[catalog.n_nodes:].sum() if len(has_vector) > catalog.n_nodes else 0
        if name in ("side_info_avg", "eges"):
            assert len(has_vector) == catalog.n_items and cold_with_vector > 0.5 * catalog.n_cold, name
        else:
            assert cold_with_vector == 0, name


def test_evaluate(run):
    result = pipeline.run_evaluate(run["config"], run["plan"])
    rows = {r["model"]: r for r in result.rows}
    assert set(rows) == set(MODELS)
    assert all(0.0 <= rows[m]["auc"] <= 1.0 for m in rows)
    # with these small walks (2 per node of length 10) word2vec is about 0.05 above popular on seen pairs
    beats_popular = {name: rows[name]["auc_seen"] - rows["popular"]["auc_seen"] for name in ("word2vec", *WITH_CURVES)}
    assert all(margin > 0.03 for margin in beats_popular.values()), beats_popular
    assert rows["skipgram"]["auc_seen"] >= rows["word2vec"]["auc_seen"] - 0.03
    assert rows["word2vec"]["positives_cold"] > 1000
    for name in ("word2vec", "skipgram", "mf_pairs", "mf_walks", "popular", "item_knn"):
        assert rows[name]["auc_cold"] == 0.5, name  # no vector for a cold item: the fallback ties every pair
    for name in ("side_info_avg", "eges"):
        assert rows[name]["auc_cold"] >= 0.65 and rows[name]["auc"] > rows["skipgram"]["auc"], name
    report = run["plan"].paths.report.read_text()
    assert "dataset: **taobao**" in report and "train 2017-11-24..2017-12-02, test 2017-12-03..2017-12-03" in report
    assert "## Learning curves" in report and (run["plan"].paths.plots / "learning_curves.png").stat().st_size > 0
    run["evaluation"] = result


def test_publish(run):
    result = pipeline.run_publish(run["config"], run["plan"], run["evaluation"])
    table = read_latest(run["config"].lake)
    assert table.num_rows == result.rows > 0
    assert pc.sum(pc.equal(table.column("item_id"), table.column("rec_item_id"))).as_py() == 0
    pointer = json.loads((run["config"].lake / "recommendations" / "_LATEST").read_text())
    assert pointer["run_date"] == "2017-12-03"
