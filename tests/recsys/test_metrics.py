"""Metric functions against hand-computed values and networkx-free brute force."""

import numpy as np
import pytest

from recsys.metrics import auc_roc, hit_rate, precision_recall


def _brute_auc(pos, neg):
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_with_ties_matches_brute_force():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 60).astype(float), rng.integers(0, 4, 50).astype(float)
    assert auc_roc(pos, neg) == pytest.approx(_brute_auc(pos, neg))


def test_scores_of_minus_infinity_tie_with_each_other(recwarn):
    pos, neg = np.array([-np.inf, 1.0, -np.inf]), np.array([-np.inf, 0.0, 1.0])  # as a sequence model scores the unknown
    assert auc_roc(pos, neg) == pytest.approx(_brute_auc(pos, neg))  # 3.5 / 9: a -inf pair is half a win
    precision, recall = precision_recall(pos, neg)
    assert precision.tolist() == pytest.approx([0.5, 1 / 3, 0.5]) and recall.tolist() == pytest.approx([1 / 3, 1 / 3, 1.0])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_auc_extremes():
    assert auc_roc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auc_roc(np.array([0.0]), np.array([1.0])) == 0.0
    assert auc_roc(np.zeros(3), np.zeros(4)) == 0.5
    assert np.isnan(auc_roc(np.array([]), np.array([1.0])))


def test_precision_recall_curve():
    precision, recall = precision_recall(np.array([0.9, 0.5]), np.array([0.7, 0.1]))
    assert precision.tolist() == [1.0, 0.5, 2 / 3, 0.5]
    assert recall.tolist() == [0.5, 0.5, 1.0, 1.0]


def test_hit_rate_ignores_padding():
    recommended = np.array([[1, 2, -1], [3, -1, -1], [-1, -1, -1]])
    assert hit_rate(recommended, np.array([2, 4, -1])) == pytest.approx(1 / 3)


def test_precision_recall_of_nothing_is_empty():
    precision, recall = precision_recall(np.array([]), np.array([]))
    assert len(precision) == len(recall) == 0
