"""Adding a model is one file and one registry line: a toy model, registered here, goes through the
train, evaluate and publish stages like the built-in ones, on in-memory data and a real Delta table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pydantic import Field

from recsys.catalog import build_catalog
from recsys.config import PipelineConfig
from recsys.evaluate import evaluate_models
from recsys.lake import Lake
from recsys.models import REGISTRY, ModelSpec, register
from recsys.models.base import ItemModel, TrainingInputs, read_meta, top_n_rows, write_meta
from recsys.publish import item_to_item_table, publish_item_to_item, read_latest
from recsys.settings import Strict
from recsys.train import load_model, train_models
from recsys.transition import TransitionTable


class NeighbourIdParams(Strict):
    offset: float = Field(0.5, description="added to every score")


class NeighbourIdModel(ItemModel):
    """Items with close node indices are related: ``score(a, b) = offset - |a - b|``."""

    name = "neighbour_id"

    def __init__(self, n_items: int, offset: float):
        self.n_items, self.offset, self.meta = n_items, offset, {}

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: NeighbourIdParams) -> "NeighbourIdModel":
        return cls(inputs.table.n_nodes, params.offset)

    def known_items(self) -> np.ndarray:
        return np.arange(self.n_items)

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        known = (a >= 0) & (b >= 0)
        return np.where(known, self.offset - np.abs(a - b), 0.0).astype(np.float32)

    def similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.offset - np.abs(nodes[:, None] - np.arange(self.n_items)[None, :]).astype(np.float32)
        scores[np.arange(len(nodes)), nodes] = -np.inf
        return top_n_rows(scores, n)

    def save(self, folder: Path) -> None:
        write_meta(folder, name=self.name, n_items=self.n_items, offset=self.offset)

    @classmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "NeighbourIdModel":
        meta = read_meta(folder)
        return cls(meta["n_items"], meta["offset"])


@pytest.fixture
def registered():
    register(ModelSpec("neighbour_id", f"{__name__}:NeighbourIdModel", NeighbourIdParams, "neighbour_id"))
    yield
    REGISTRY.pop("neighbour_id")


def _chain(n: int = 8) -> tuple[TrainingInputs, pa.Table]:
    """A path graph 0-1-...-n-1 and a holdout whose positives are neighbours on it."""
    ids = np.array([f"i{k}" for k in range(n)], dtype=object)
    src, dst = np.arange(n - 1), np.arange(1, n)
    table = TransitionTable.from_edges(ids, np.r_[src, dst], np.r_[dst, src], np.ones(2 * (n - 1)))
    inputs = TrainingInputs(table, build_catalog(table, None), pa.table({"item_id": ids.tolist(), "events": [1] * n}))
    a, b = np.r_[src, src], np.r_[dst, (src + n // 2) % n]
    holdout = pa.table({"a": a, "b": b, "label": np.r_[np.ones(n - 1), np.zeros(n - 1)].astype(np.int8),
                        "split": ["seen"] * len(a)})
    return inputs, holdout


def test_a_registered_toy_model_is_trained_evaluated_and_published(registered, tmp_path):
    config = PipelineConfig.model_validate({"lake": str(tmp_path / "lake"), "train": {"models": ["neighbour_id", "popular"]}})
    assert config.train.params_for("neighbour_id") == NeighbourIdParams()  # no block in the config: the defaults
    inputs, holdout = _chain()

    trained = train_models(config.train.models, config.train.params_for, inputs, lambda name: tmp_path / "models" / name)
    assert [m.name for m in trained.models] == ["neighbour_id", "popular"]
    assert trained.model("neighbour_id").serves == ("item_to_item",)

    context = {"run_id": "r1", "dataset": "toy", "seed": 0, "train_from": "2024-01-01", "train_until": "2024-01-02",
               "test_from": "2024-01-03", "test_until": "2024-01-03"}
    evaluation = evaluate_models(trained, inputs, holdout, 2, "auc", context, tmp_path / "metrics.parquet", tmp_path / "plots")
    assert evaluation.row("neighbour_id")["auc"] == 1.0 and evaluation.row("popular")["auc"] == 0.5
    assert evaluation.champion == "neighbour_id"

    model = load_model("neighbour_id", Path(trained.model("neighbour_id").path), inputs)
    recs = item_to_item_table(model, inputs.catalog, 2, "r1")
    result = publish_item_to_item(Lake(tmp_path / "lake"), recs, "2024-01-03", "r1", "neighbour_id",
                                  {"auc": evaluation.row("neighbour_id")["auc"]})
    published = read_latest(tmp_path / "lake")
    assert result.published and published.num_rows == 16
    assert published.filter(pa.compute.equal(published.column("item_id"), "i3")).column("rec_item_id").to_pylist() == ["i2", "i4"]
    assert json.loads((tmp_path / "lake" / "recommendations" / "_LATEST").read_text())["tables"]["item_to_item"]["model"] == "neighbour_id"


def test_an_unregistered_model_fails_validation_naming_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown models \['neighbour_id'\]; registered: \["):
        PipelineConfig.model_validate({"train": {"models": ["neighbour_id"]}})
