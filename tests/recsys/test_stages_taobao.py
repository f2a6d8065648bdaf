"""Every stage once on the real Taobao log, every registered model included (small walk and training
settings to keep CI fast). Category is the side information; the test day's items that never
appeared in training but have a category form the cold split."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from deltalake import DeltaTable

from recsys.config import PipelineConfig
from recsys.evaluate import evaluate_models
from recsys.graph import build_graph
from recsys.holdout import build_holdout, build_validation, load_holdout
from recsys.ingest import ingest
from recsys.lake import Lake, read_walks
from recsys.models import with_curves
from recsys.publish import ITEM_TO_ITEM, item_to_item_table, publish_item_to_item, read_latest
from recsys.report import write_report
from recsys.train import load_model, load_training_inputs, train_models, training_threads
from recsys.transition import TransitionTable
from recsys.walks import generate_walks
from tasks.plan import plan_run
from tests.conftest import TAOBAO, dataset

pytestmark = pytest.mark.slow

MODELS = ("word2vec", "skipgram", "side_info_avg", "eges", "mf_pairs", "mf_walks", "popular", "item_knn")
SMALL = {"epochs": 2, "vector_size": 32}

# Each stage is a fixture that runs the stages before it, so any test runs alone (pytest -k test_publish).


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
    ingested = ingest(spark, config.ingest, Lake(config.lake))
    return {"config": config, "plan": plan_run(config), "ingest": ingested, "lake": Lake(config.lake)}


@pytest.fixture(scope="module")
def graph(run, spark):
    plan, config = run["plan"], run["config"]
    return build_graph(spark, config.graph, run["lake"], plan.window, plan.paths.graph, plan.validation)


@pytest.fixture(scope="module")
def walks(run, graph, spark):
    table = TransitionTable.load(run["plan"].paths.graph)
    return generate_walks(spark, table, run["config"].walks, run["config"].seed, run["plan"].paths.walks)


@pytest.fixture(scope="module")
def validation(run, graph, spark):
    plan, config = run["plan"], run["config"]
    catalog = load_training_inputs(plan.paths.graph).catalog
    return build_validation(spark, run["lake"], plan.window, config.graph, plan.validation,
                            config.evaluate.validation_pairs, catalog, plan.paths.graph, config.seed, plan.paths.validation)


@pytest.fixture(scope="module")
def trained(run, graph, walks, validation):
    plan, config = run["plan"], run["config"]
    inputs = load_training_inputs(plan.paths.graph, plan.paths.walks, plan.paths.validation, config.seed,
                                  training_threads(config.train.deterministic))
    return train_models(config.train.models, config.train.params_for, inputs, plan.paths.model)


@pytest.fixture(scope="module")
def evaluated(run, trained, spark):
    plan, config = run["plan"], run["config"]
    inputs = load_training_inputs(plan.paths.graph, seed=config.seed)
    build_holdout(spark, run["lake"], plan.window, config.graph, config.evaluate, inputs.catalog, config.seed,
                  plan.paths.holdout)
    return evaluate_models(trained, inputs, load_holdout(plan.paths.holdout), config.evaluate.k, "auc", plan.context(),
                           plan.paths.metrics, plan.paths.plots)


def test_ingest(run):
    assert run["ingest"].balanced and run["ingest"].rows_accepted > 84000


def test_plan_uses_the_last_day_as_test_and_ignores_stray_days(run):
    plan = run["plan"]
    assert (plan.run_date, plan.test_from) == ("2017-12-03", "2017-12-03")
    assert plan.train_until == "2017-12-02"


def test_graph(run, graph, spark):
    result = graph
    table = TransitionTable.load(run["plan"].paths.graph)
    assert result.nodes == table.n_nodes and result.edges == table.n_edges > 100_000
    events = spark.read.parquet(str(run["config"].lake / "events"))
    in_training = events.where("event_date BETWEEN '2017-11-24' AND '2017-12-02'").count()
    assert result.validation_events > 0 and result.train_events + result.validation_events == in_training
    assert result.cold_items > 1000  # test-day items with a category but no training event
    sums = np.bincount(np.repeat(np.arange(table.n_nodes), table.out_degree()), weights=table.probs, minlength=table.n_nodes)
    assert np.allclose(sums[table.out_degree() > 0], 1.0, atol=1e-5)


def test_walks(run, walks):
    result = walks
    walks = read_walks(run["plan"].paths.walks)
    assert len(walks) == result.walks == 2 * result.start_nodes
    assert pc.max(pc.list_value_length(walks)).as_py() == 10


def test_train(run, trained, validation):
    result = trained
    assert [m.name for m in result.models] == list(MODELS)
    assert validation.positives > 100 and validation.negatives == validation.positives
    catalog = load_training_inputs(run["plan"].paths.graph).catalog
    for name in with_curves():
        meta = json.loads((run["plan"].paths.model(name) / "model.json").read_text())
        assert len(meta["curve"]) == SMALL["epochs"] and meta["curve"][-1]["loss"] < meta["curve"][0]["loss"], name
        assert list(result.model(name).curve) == meta["curve"], name
        assert all(0.5 < r["validation_auc"] <= 1.0 for r in meta["curve"]), name
        has_vector = np.load(run["plan"].paths.model(name) / "has_vector.npy")
        cold_with_vector = has_vector[catalog.n_nodes:].sum() if len(has_vector) > catalog.n_nodes else 0
        if name in ("side_info_avg", "eges"):
            assert len(has_vector) == catalog.n_items and cold_with_vector > 0.5 * catalog.n_cold, name
        else:
            assert cold_with_vector == 0, name


def test_evaluate(run, evaluated, trained):
    result = evaluated
    rows = {r["model"]: r for r in result.rows}
    assert set(rows) == set(MODELS)
    assert not any(math.isnan(rows[m]["auc"]) for m in rows)  # every model scored every pair
    # with these small walks (2 per node of length 10) word2vec is about 0.05 above popular on seen pairs
    beats_popular = {name: rows[name]["auc_seen"] - rows["popular"]["auc_seen"] for name in ("word2vec", *with_curves())}
    assert all(margin > 0.03 for margin in beats_popular.values()), beats_popular
    assert rows["skipgram"]["auc_seen"] >= rows["word2vec"]["auc_seen"] - 0.03
    assert rows["word2vec"]["positives_cold"] > 1000
    for name in ("word2vec", "skipgram", "mf_pairs", "mf_walks", "popular", "item_knn"):
        assert rows[name]["auc_cold"] == 0.5, name  # no vector for a cold item: the fallback ties every pair
    for name in ("side_info_avg", "eges"):
        assert rows[name]["auc_cold"] >= 0.65 and rows[name]["auc"] > rows["skipgram"]["auc"], name
    assert all((run["plan"].paths.plots / f"pr_{m}.png").stat().st_size > 0 for m in MODELS)
    report = write_report(run["plan"].paths.report, pa.Table.from_pylist(list(result.rows)), run["plan"].context(),
                          result.champion, "auc", {"graph": {"nodes": 1}}, {m.name: list(m.curve) for m in trained.models if m.curve}).read_text()
    assert "dataset: **taobao**" in report and "train 2017-11-24..2017-12-02, test 2017-12-03..2017-12-03" in report
    assert "## Learning curves" in report and (run["plan"].paths.plots / "learning_curves.png").stat().st_size > 0


def test_publish(run, graph, trained, evaluated):
    plan = run["plan"]
    inputs = load_training_inputs(plan.paths.graph)
    model = load_model(evaluated.champion, trained.model(evaluated.champion).path, inputs)
    recs = item_to_item_table(model, inputs.catalog, run["config"].publish.top_n, plan.run_id)
    result = publish_item_to_item(run["lake"], recs, plan.run_date, plan.run_id, evaluated.champion,
                                  {"auc": evaluated.row(evaluated.champion)["auc"]})
    table = read_latest(run["config"].lake)
    assert table.num_rows == result.rows > 0 and table.equals(DeltaTable(result.path).to_pyarrow_table())
    assert pc.sum(pc.equal(table.column("item_id"), table.column("rec_item_id"))).as_py() == 0
    pointer = json.loads((run["config"].lake / "recommendations" / "_LATEST").read_text())
    assert pointer["run_date"] == "2017-12-03" and pointer["tables"][ITEM_TO_ITEM]["model"] == evaluated.champion
