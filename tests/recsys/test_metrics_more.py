"""Metric functions where ``test_metrics.py`` leaves gaps: ties across the labels, empty inputs, symmetry."""

import numpy as np
import pytest

from recsys.metrics import auc_roc, hit_rate, precision_recall


def test_auc_without_negatives_is_nan():
    assert np.isnan(auc_roc(np.array([1.0, 2.0]), np.array([])))


def test_auc_is_symmetric_and_order_free():
    rng = np.random.default_rng(3)
    pos, neg = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 30).astype(float)
    auc = auc_roc(pos, neg)
    assert auc_roc(neg, pos) == pytest.approx(1.0 - auc)  # ties count half both ways
    assert auc_roc(rng.permutation(pos), rng.permutation(neg)) == pytest.approx(auc)


def test_auc_counts_a_tie_between_labels_as_half():
    # pairs: (2 vs 1) win, (2 vs 2) tie, (1 vs 1) tie, (1 vs 2) loss -> (1 + 0.5 + 0.5) / 4
    assert auc_roc(np.array([2, 1]), np.array([1, 2])) == pytest.approx(0.5)
    # (3 vs 3) tie, (3 vs 0) win -> 1.5 / 2
    assert auc_roc(np.array([3]), np.array([3, 0])) == pytest.approx(0.75)


def test_precision_recall_merges_a_tie_across_labels_into_one_point():
    # thresholds 0.8 (pos), 0.5 (pos + neg tied), 0.2 (neg)
    precision, recall = precision_recall(np.array([0.8, 0.5]), np.array([0.5, 0.2]))
    assert precision.tolist() == pytest.approx([1.0, 2 / 3, 0.5])
    assert recall.tolist() == pytest.approx([0.5, 1.0, 1.0])


def test_precision_recall_without_positives_has_zero_recall():
    precision, recall = precision_recall(np.array([]), np.array([0.3, 0.1]))
    assert precision.tolist() == [0.0, 0.0] and recall.tolist() == [0.0, 0.0]


def test_hit_rate_finds_the_target_in_any_column_and_counts_a_row_once():
    recommended = np.array([[5, 6, 7], [7, 7, 7], [1, 2, 3]])
    assert hit_rate(recommended, np.array([7, 7, 4])) == pytest.approx(2 / 3)


def test_hit_rate_of_no_targets_is_nan():
    assert np.isnan(hit_rate(np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)))
