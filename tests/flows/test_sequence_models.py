"""The nightly flow on the embedded sample with the sequence models listed: they train on the sessions the
graph stage writes, every model is scored on the same next-item predictions, and both tables publish."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recsys.config import PipelineConfig
from recsys.publish import read_latest

MODELS = ["popular", "item_knn", "word2vec", "gru4rec", "attrec", "sknn"]


@pytest.mark.slow
def test_nightly_with_sequence_models_on_the_sample(prefect_harness, tmp_path):
    from flows.nightly import nightly

    config = PipelineConfig.model_validate({
        "lake": str(tmp_path / "lake"),
        "walks": {"walks_per_node": 2, "walk_length": 10},
        "train": {"models": MODELS, "gru4rec": {"n_epochs": 3}, "attrec": {"epochs": 5}, "word2vec": {"epochs": 2}},
    })
    result = nightly(config=config)
    evaluation = result.evaluate
    assert result.graph.sequences > 1000

    rows = {r["model"]: r for r in evaluation.next_item_rows}
    assert set(rows) == set(MODELS)
    assert len({r["predictions"] for r in rows.values()}) == 1 and rows["popular"]["predictions"] > 1000
    # GRU4Rec reads the session so far: it must beat the popularity floor on the next item
    assert rows["gru4rec"]["next_recall@20"] > rows["popular"]["next_recall@20"]
    assert rows["gru4rec"]["next_recall@20_lo"] > rows["popular"]["next_recall@20_hi"]
    for row in rows.values():
        assert 0 <= row["next_mrr@20"] <= row["next_recall@20"] <= row["next_recall@50"] <= 1
        assert row["next_recall@20_lo"] <= row["next_recall@20"] <= row["next_recall@20_hi"]
    stored = pq.read_table(evaluation.next_item_path)
    assert stored.num_rows == len(MODELS) and set(stored.column("dataset").to_pylist()) == {"sample"}

    # the item-to-item champion is the best next-item Recall@20 among the models that serve the table
    item_rows = {r["model"]: r for r in evaluation.rows}
    assert set(item_rows) == set(MODELS) and evaluation.metric == "next_recall"
    assert evaluation.champion == max(item_rows, key=lambda m: item_rows[m]["next_recall"])
    assert item_rows["gru4rec"]["next_recall"] == rows["gru4rec"]["next_recall@20"]
    users = {r["model"] for r in evaluation.user_rows}
    assert {"gru4rec", "attrec", "sknn", "popular", "item_knn"} <= users

    report = Path(result.report.path).read_text()
    assert "## Next-item metrics" in report and "| gru4rec |" in report and "| attrec |" in report
    assert result.publish.published and result.publish_users is not None and result.publish_users.published
    published = read_latest(tmp_path / "lake")
    assert set(published.column("model").to_pylist()) == {evaluation.champion}
    user_table = read_latest(tmp_path / "lake", "user_to_item")
    assert set(user_table.column("model").to_pylist()) == {evaluation.user_champion}
