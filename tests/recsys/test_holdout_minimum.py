"""Meaningful holdouts (issue 13, item 5b-d): below the minimum no champion is picked and nothing is
published; the gate compares with the published run only when both holdouts reached the minimum, and
states both figures with their confidence intervals; each commit records its holdout size."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from recsys.evaluate import auc_standard_error, evaluate_models, too_small
from recsys.evaluate_users import evaluate_user_models
from recsys.lake import Lake
from recsys.metrics import auc_roc
from recsys.models.base import TrainingInputs
from recsys.models.params import NoParams
from recsys.publish import (HOLDOUT_TOO_SMALL, ITEM_TO_ITEM_SCHEMA, REFUSED_BY_GATE, current_run, gate,
                            item_headline, publish_item_to_item)
from recsys.train import train_models
from tests.recsys.test_registry import _chain
from tests.recsys.test_user_to_item import _matrix

CONTEXT = {"run_id": "r1", "dataset": "toy", "seed": 0, "train_from": "2024-01-01", "train_until": "2024-01-02",
           "test_from": "2024-01-03", "test_until": "2024-01-03"}


def test_auc_standard_error_is_hanley_and_mcneils():
    # Hanley & McNeil (1982), by hand for A = 0.8 and 50 + 50 scores:
    # Q1 = .8/1.2, Q2 = 2 * .64/1.8; (.16 + 49 (Q1 - .64) + 49 (Q2 - .64)) / 2500 = 0.0019804..
    assert auc_standard_error(0.8, 50, 50) == pytest.approx(math.sqrt(0.0019804), rel=1e-3)
    assert math.isnan(auc_standard_error(0.8, 0, 50)) and math.isnan(auc_standard_error(float("nan"), 5, 5))
    # and it is the spread of the AUC over resampled holdouts (a bootstrap), within 15%
    rng = np.random.default_rng(0)
    positives, negatives = rng.normal(1.0, 1, 200), rng.normal(0.0, 1, 200)
    boot = [auc_roc(rng.choice(positives, 200), rng.choice(negatives, 200)) for _ in range(400)]
    assert auc_standard_error(auc_roc(positives, negatives), 200, 200) == pytest.approx(np.std(boot), rel=0.15)


def test_item_holdout_below_the_minimum_picks_no_champion(tmp_path):
    inputs, holdout = _chain()  # 7 held-out pairs
    trained = train_models(("popular",), lambda name: NoParams(), inputs, lambda name: tmp_path / "models" / name)
    small = evaluate_models(trained, inputs, holdout, 2, "auc", CONTEXT, tmp_path / "m.parquet", tmp_path / "plots",
                            min_positives=8)
    assert small.champion == "" and small.rows[0]["positives"] == 7  # scored and reported all the same
    assert "holdout too small: 7 held-out pairs" in small.holdout_too_small
    assert "evaluate.min_positives 8" in small.holdout_too_small
    enough = evaluate_models(trained, inputs, holdout, 2, "auc", CONTEXT, tmp_path / "m.parquet", tmp_path / "plots",
                             min_positives=7)
    assert enough.champion == "popular" and enough.holdout_too_small == ""
    row = enough.rows[0]
    assert row["auc_se"] == pytest.approx(auc_standard_error(row["auc"], 7, 7))
    assert row["hit_rate_se"] == pytest.approx(math.sqrt(row["hit_rate"] * (1 - row["hit_rate"]) / 14))
    assert "positives_seen" in too_small({"positives": 500, "positives_seen": 3}, "auc_seen", 100)  # the metric's own split


def test_user_holdout_below_the_minimum_picks_no_champion(tmp_path):
    _, _, history = _matrix(tmp_path / "matrix", validation_min_items=0)
    inputs = TrainingInputs(None, None, None, interactions=history, user_history=history)
    trained = train_models(("popular",), lambda name: NoParams(), inputs, lambda name: tmp_path / "models" / name)
    test = pa.table({"user_id": ["u1", "u2"], "item_id": ["e", "c"]})  # two users evaluated
    args = (trained, inputs, test, (1, 2), "ndcg@2", False, CONTEXT, tmp_path / "users.parquet")
    small = evaluate_user_models(*args, min_users=3)
    assert small.champion == "" and "2 users evaluated" in small.too_small and "evaluate.min_users 3" in small.too_small
    enough = evaluate_user_models(*args, min_users=2)
    assert enough.champion == "popular" and enough.too_small == ""
    # popular ranks u1's new item e 2nd (ndcg 1/log2 3) and u2's c 1st (1): the mean's standard error
    values = [1 / math.log2(3), 1.0]
    assert enough.rows[0]["ndcg@2_se"] == pytest.approx(np.std(values, ddof=1) / math.sqrt(2))


def _recs(tag: str) -> pa.Table:
    return pa.table({"item_id": ["a", "a"], "rank": pa.array([1, 2], pa.int32()), "rec_item_id": ["b", "c"],
                     "score": pa.array([1.0, 0.5], pa.float32()), "model": ["m", "m"], "run_id": [tag] * 2},
                    schema=ITEM_TO_ITEM_SCHEMA)


def _headline(auc: float, positives: int) -> dict:
    row = {"auc": auc, "auc_seen": auc, "auc_cold": float("nan"), "hit_rate": 0.1, "positives": positives,
           "positives_seen": positives, "positives_cold": 0, "auc_se": auc_standard_error(auc, positives, positives)}
    return item_headline(row)


def _publish(lake: Lake, day: str, auc: float, positives: int, minimum: int = 100):
    return publish_item_to_item(lake, _recs(day), day, f"run-{day}", "m", _headline(auc, positives), "auc", 0.02,
                                min_size=minimum)


def test_a_lucky_tiny_holdout_never_blocks_later_runs(tmp_path):
    """The issue: a champion picked on 9 pairs (AUC 0.95) stood in the table and the gate refused every later run."""
    lake = Lake(tmp_path)
    publish_item_to_item(lake, _recs("2024-03-01"), "2024-03-01", "run-1", "m", _headline(0.95, 9), "auc", 0.02)  # before the minimum existed
    assert current_run(lake)["metrics"]["positives"] == 9  # the commit records its holdout size
    later = _publish(lake, "2024-03-02", 0.80, 5000)
    assert later.published, later.reason
    assert "not compared with the published 2024-03-01 run's auc 0.9500" in later.comparison
    assert "below the minimum of 100" in later.comparison and "5000 positives" in later.comparison


def test_a_run_below_the_minimum_is_refused_and_leaves_the_reference(tmp_path):
    lake = Lake(tmp_path)
    _publish(lake, "2024-03-01", 0.80, 5000)
    small = _publish(lake, "2024-03-02", 0.99, 9)
    assert not small.published and small.cause == HOLDOUT_TOO_SMALL and "holdout too small" in small.reason
    assert current_run(lake)["run_date"] == "2024-03-01"


def test_the_gate_states_both_figures_with_their_confidence_intervals(tmp_path):
    lake = Lake(tmp_path)
    _publish(lake, "2024-03-01", 0.80, 5000)
    worse = _publish(lake, "2024-03-02", 0.70, 4000)
    assert not worse.published and worse.cause == REFUSED_BY_GATE
    se_new, se_old = auc_standard_error(0.70, 4000, 4000), auc_standard_error(0.80, 5000, 5000)
    assert (f"auc 0.7000 (95% CI {0.70 - 1.959964 * se_new:.4f}..{0.70 + 1.959964 * se_new:.4f}, 4000 positives) "
            f"is worse than the published 2024-03-01 run's auc 0.8000 (95% CI {0.80 - 1.959964 * se_old:.4f}.."
            f"{0.80 + 1.959964 * se_old:.4f}, 5000 positives)") in worse.reason
    within = _publish(lake, "2024-03-03", 0.79, 4000)
    assert within.published and "within the tolerance 0.02" in within.comparison and "95% CI" in within.comparison


def test_without_a_minimum_the_gate_compares_as_before():
    previous = {"run_date": "2024-03-01", "metrics": {"auc": 0.95, "positives": 9}}
    assert gate(previous, {"auc": 0.80, "positives": 5000}, "auc", 0.02).refused
    assert not gate(previous, {"auc": 0.80, "positives": 5000}, "auc", 0.02, min_size=100).refused
