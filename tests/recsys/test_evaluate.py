"""The evaluate stage's scoring on a hand-made holdout and a hand-made model, every figure computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recsys.evaluate import metrics_table, pick_champion, score_model
from recsys.models.base import ItemModel
from recsys.models.embedding import EmbeddingModel

# A symmetric relatedness matrix over catalogue items 0..4 (4 is a cold item this model knows).
# Row by row, best first: 0 -> 1 .9, 4 .7 | 1 -> 0 .9, 2 .35 | 2 -> 4 .6, 0 .5 | 3 -> 4 .8, 2 .4 | 4 -> 3 .8, 0 .7
_UPPER = {(0, 1): 0.9, (0, 2): 0.5, (0, 3): 0.2, (0, 4): 0.7, (1, 2): 0.35, (1, 3): 0.3, (1, 4): 0.1,
          (2, 3): 0.4, (2, 4): 0.6, (3, 4): 0.8}
RELATED = np.zeros((5, 5), dtype=np.float32)
for (i, j), s in _UPPER.items():
    RELATED[i, j] = RELATED[j, i] = s

# (a, b, label, split): scores .9 .4 .7 and the fallback 0 for the positives; .5 .35 .1 .6 .8 0 for the negatives
HOLDOUT_ROWS = [
    (0, 1, 1, "seen"), (2, 3, 1, "seen"), (0, 4, 1, "cold"), (1, -1, 1, "unknown"),
    (0, 2, 0, "seen"), (2, 1, 0, "seen"), (1, 4, 0, "cold"), (2, 4, 0, "cold"), (3, 4, 0, "cold"), (2, -1, 0, "unknown"),
]


def _holdout(rows=HOLDOUT_ROWS) -> pa.Table:
    a, b, label, split = zip(*rows)
    return pa.table({"src": [f"i{x}" for x in a], "dst": [f"i{x}" for x in b], "label": pa.array(label, pa.int8()),
                     "a": pa.array(a, pa.int64()), "b": pa.array(b, pa.int64()), "split": list(split)})


class MatrixModel(ItemModel):
    """Scores and neighbours read off a small dense matrix; -1 scores 0.0 and may not be asked for neighbours."""

    serves = frozenset({"item_to_item"})

    def __init__(self, name: str, scores: np.ndarray):
        self.name, self.scores, self.meta = name, scores, {}

    @classmethod
    def fit(cls, inputs, params):  # not trained: built from its matrix
        raise NotImplementedError

    def known_items(self) -> np.ndarray:
        return np.arange(len(self.scores))

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        known = (a >= 0) & (b >= 0)
        out = np.zeros(len(a), dtype=np.float32)
        out[known] = self.scores[a[known], b[known]]
        return out

    def similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        if (nodes < 0).any():  # an index of -1 would silently read the last row
            raise ValueError(f"asked for neighbours of an unknown item: {nodes.tolist()}")
        rows = self.scores[nodes].copy()
        rows[np.arange(len(nodes)), nodes] = -np.inf
        idx = np.argsort(-rows, axis=1, kind="stable")[:, :n]
        return idx, np.take_along_axis(rows, idx, axis=1)

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path, inputs) -> "MatrixModel":
        raise NotImplementedError


def test_auc_overall_and_per_split_by_hand():
    scores = score_model(MatrixModel("m", RELATED), _holdout(), k=1)
    # positives .9 .4 .7 0 vs negatives .5 .35 .1 .6 .8 0: wins 6 + 3 + 5 + (tie) .5 of 24 pairs
    assert scores.auc == pytest.approx(14.5 / 24)
    assert scores.auc_seen == pytest.approx(3 / 4)  # .9 .4 vs .5 .35
    assert scores.auc_cold == pytest.approx(2 / 3)  # .7 vs .1 .6 .8
    assert scores.name == "m"


@pytest.mark.parametrize("k, expected", [(1, 2 / 8), (2, 5 / 8)])
def test_hit_rate_counts_both_directions_and_unknown_items_as_misses(k, expected):
    # anchor -> target: 0->1, 2->3, 0->4, 1->(-1), 1->0, 3->2, 4->0, (-1)->1
    # top-1 hits: 0->1, 1->0; top-2 adds 0->4 (0: 1, 4), 3->2 (3: 4, 2), 4->0 (4: 3, 0)
    assert score_model(MatrixModel("m", RELATED), _holdout(), k=k).hit_rate == pytest.approx(expected)


def test_precision_recall_curve_comes_from_positive_against_negative_scores():
    scores = score_model(MatrixModel("m", RELATED), _holdout(), k=1)
    # thresholds .9(+) .8(-) .7(+) .6(-) .5(-) .4(+) .35(-) .1(-) 0(+ and -)
    assert scores.precision.tolist() == pytest.approx([1, 1 / 2, 2 / 3, 2 / 4, 2 / 5, 3 / 6, 3 / 7, 3 / 8, 4 / 10])
    assert scores.recall.tolist() == pytest.approx([1 / 4, 1 / 4, 2 / 4, 2 / 4, 2 / 4, 3 / 4, 3 / 4, 3 / 4, 1])


class GivenVectors(EmbeddingModel):
    """The shared embedding scorer over vectors the test chooses."""

    @classmethod
    def fit(cls, inputs, params):  # not trained: built from its vectors
        raise NotImplementedError


def test_an_id_only_model_gets_exactly_half_on_the_cold_split_and_misses_there():
    vectors = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1], [0, 0]], dtype=np.float32)  # item 4 has no vector
    model = GivenVectors("ids", vectors, np.array([1, 1, 1, 1, 0], bool))
    rows = [(0, 1, 1, "seen"), (2, 3, 1, "seen"), (0, 4, 1, "cold"), (3, 4, 1, "cold"),
            (0, 2, 0, "seen"), (2, 0, 0, "seen"), (1, 4, 0, "cold"), (2, 4, 0, "cold")]
    scores = score_model(model, _holdout(rows), k=1)
    assert scores.auc_cold == 0.5  # every cold pair scores the fallback: all ties
    assert scores.auc_seen == 1.0  # within-group cosines ~.995 beat across-group ~.1 and 0
    # 0->1, 1->0, 2->3, 3->2 hit; 0->4, 4->0, 3->4, 4->3 miss (no vector: neither anchor nor neighbour)
    assert scores.hit_rate == pytest.approx(4 / 8)


def test_a_split_without_pairs_scores_nan_not_a_crash():
    rows = [(0, 1, 1, "seen"), (0, 3, 0, "seen")]
    scores = score_model(MatrixModel("m", RELATED), _holdout(rows), k=1)
    assert scores.auc == scores.auc_seen == 1.0 and math.isnan(scores.auc_cold)


def test_metrics_table_one_row_per_model_with_counts_and_context():
    holdout = _holdout()
    first = score_model(MatrixModel("first", RELATED), holdout, k=2)
    second = score_model(MatrixModel("second", RELATED.T[::-1, ::-1].copy()), holdout, k=2)
    table = metrics_table([first, second], holdout, {"dataset": "tiny", "seed": 3}, 2, {"first": 1.5})
    assert table.column_names == ["model", "auc", "auc_seen", "auc_cold", "hit_rate", "k", "positives",
                                  "positives_seen", "positives_cold", "auc_se", "auc_seen_se", "auc_cold_se",
                                  "hit_rate_se", "predictions", "next_recall", "next_recall_se", "next_recall_lo",
                                  "next_recall_hi", "next_mrr", "next_mrr_se", "next_mrr_lo", "next_mrr_hi",
                                  "train_seconds", "dataset", "seed"]
    assert table.column("model").to_pylist() == ["first", "second"]
    rows = table.to_pylist()
    assert [(r["positives"], r["positives_seen"], r["positives_cold"], r["k"]) for r in rows] == [(4, 2, 1, 2)] * 2
    assert [(r["dataset"], r["seed"]) for r in rows] == [("tiny", 3)] * 2
    assert rows[0]["train_seconds"] == 1.5 and math.isnan(rows[1]["train_seconds"])  # not timed: NaN
    assert [r["auc"] for r in rows] == pytest.approx([first.auc, second.auc])
    assert [r["hit_rate"] for r in rows] == pytest.approx([first.hit_rate, second.hit_rate])
    assert rows[0]["auc"] != rows[1]["auc"]  # the rows are not one model's figures repeated


def _metrics(models: list[str], values: list[float], metric: str = "auc") -> pa.Table:
    return pa.table({"model": models, metric: pa.array(values, pa.float64())})


@pytest.mark.parametrize("values, champion", [
    ([0.6, 0.8, 0.7], "b"),
    ([float("nan"), 0.1, 0.7], "c"),  # NaN loses, even to a poor score
    ([0.7, 0.8, 0.8], "b"),  # a tie goes to the model listed first
    ([0.8, float("nan"), 0.8], "a"),
    ([float("nan")] * 3, "a"),  # nothing computable: the first listed
])
def test_pick_champion(values, champion):
    assert pick_champion(_metrics(["a", "b", "c"], values), "auc") == champion


def test_pick_champion_reads_the_named_metric():
    table = _metrics(["a", "b"], [0.9, 0.5]).append_column("hit_rate", pa.array([0.1, 0.2]))
    assert pick_champion(table, "hit_rate") == "b" and pick_champion(table, "auc") == "a"
