"""Ranking metrics as pure array functions: AUC-ROC with ties, precision-recall curve, HitRate@K."""

from __future__ import annotations

import numpy as np


def auc_roc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score(pos) > score(neg)) + 0.5 P(tie): the Mann-Whitney U statistic over all pos x neg pairs."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    scores = np.concatenate([positive, negative]).astype(np.float64)
    ranks = _average_ranks(scores)
    rank_sum = ranks[: len(positive)].sum()
    u = rank_sum - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    starts = np.r_[0, np.flatnonzero(sorted_vals[1:] != sorted_vals[:-1]) + 1]  # not np.diff: -inf - -inf is nan
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks start..end-1 (0-based) -> mean of (start+1 .. end)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def precision_recall(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score threshold, highest threshold first."""
    if len(positive) + len(negative) == 0:
        return np.zeros(0), np.zeros(0)
    scores = np.concatenate([positive, negative])
    labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), len(scores) - 1]
    true_pos = np.cumsum(labels)[last_of_tie]
    predicted = last_of_tie + 1
    return true_pos / predicted, true_pos / max(len(positive), 1)


def hit_rate(recommended: np.ndarray, targets: np.ndarray) -> float:
    """Share of rows whose target appears among that row's recommendations (-1 entries never match)."""
    if len(targets) == 0:
        return float("nan")
    hits = (recommended == targets[:, None]) & (targets[:, None] >= 0)
    return float(hits.any(axis=1).mean())
