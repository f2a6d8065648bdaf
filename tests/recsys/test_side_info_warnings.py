"""The side-information models on a log that has none: they train (on item ids only), and say so in
the log, in the model's meta and in the train stage's result, which the report shows."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest

from recsys.catalog import build_catalog
from recsys.config import TrainConfig, WalksConfig
from recsys.models.base import TrainingInputs
from recsys.models.params import SideInfoParams
from recsys.models.side_info import EGESModel, SideInfoAvgModel
from recsys.train import train_models
from recsys.transition import TransitionTable
from recsys.walks import generate_walks_local

SMALL = SideInfoParams(vector_size=8, epochs=2, window=3, sample=0.0, batch_size=64)


def _inputs(side: pa.Table | None) -> TrainingInputs:
    ids = np.array([f"i{n}" for n in range(6)], dtype=object)
    edges = [(a, b) for a in range(6) for b in range(6) if a != b and a // 3 == b // 3]
    table = TransitionTable.from_edges(ids, np.array([e[0] for e in edges]), np.array([e[1] for e in edges]),
                                       np.ones(len(edges)))
    walks = generate_walks_local(table, WalksConfig(walks_per_node=4, walk_length=6), seed=1)
    stats = pa.table({"item_id": ids.tolist(), "events": [1] * 6})
    return TrainingInputs(table, build_catalog(table, side), stats, walks.column("walk").combine_chunks(), seed=3,
                          threads=1)


@pytest.mark.parametrize("model, name", [(SideInfoAvgModel, "side_info_avg"), (EGESModel, "eges")])
def test_without_side_information_the_model_warns_in_the_log_and_its_meta(model, name, caplog):
    with caplog.at_level(logging.WARNING, logger="recsys"):
        fitted = model.fit(_inputs(None), SMALL)

    [warning] = fitted.meta["warnings"]
    assert warning.startswith(f"{name}: no item has side information (category, brand or price)")
    assert "ingest.items_input" in warning
    assert [r.getMessage() for r in caplog.records if r.name == "recsys.models.side_info"] == [warning]
    assert fitted.has_vector.all()  # it still trains: on item ids only


def test_with_side_information_there_is_no_warning(caplog):
    side = pa.table({"item_id": [f"i{n}" for n in range(6)], "category": ["a"] * 3 + ["b"] * 3,
                     "brand": [None] * 6, "price": [None] * 6}, schema=pa.schema(
        [("item_id", pa.string()), ("category", pa.string()), ("brand", pa.string()), ("price", pa.float64())]))
    with caplog.at_level(logging.WARNING, logger="recsys"):
        fitted = SideInfoAvgModel.fit(_inputs(side), SMALL)
    assert fitted.meta["warnings"] == [] and not caplog.records


def test_the_train_stage_records_each_models_warnings(tmp_path):
    config = TrainConfig(models=("side_info_avg", "popular"), side_info=SMALL)
    result = train_models(config.models, config.params_for, _inputs(None), lambda name: tmp_path / name)

    assert result.model("side_info_avg").warnings[0].startswith("side_info_avg: no item has side information")
    assert result.model("popular").warnings == ()
