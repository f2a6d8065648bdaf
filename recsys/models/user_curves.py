"""Learning curves and early stopping of the user-to-item models, on a ranking validation split.

The split (``hold_out_latest``) takes, from every user with at least ``min_items`` distinct training
items, the item of its latest interaction out of the training matrix: leave-one-out by time, the
validation of the NCF paper (He et al. 2017, "Neural Collaborative Filtering", WWW) and of
RecBole's ``LS`` split, here inside the training window so the test days stay untouched.

``RankingCurve`` scores those users against all items with their remaining training items excluded
(``recsys.ranking``: the same full-ranking code and metrics as the evaluate stage) and returns
NDCG@20 and Recall@20; ``BestEpoch`` keeps the parameters of the best epoch so far and says when
``patience`` epochs have passed without a gain of more than ``min_gain`` (a share) over the value of the
last epoch that made one (``patience`` 0: never stop early). The tolerance is Keras' ``min_delta``, made
relative: on a plateau the 5,000 users' NDCG moves by a few tenths of a percent from epoch to epoch, and
without it each such wobble restarted the patience (docs/benchmarks.md, LightGCN at 10M events).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from recsys.interactions import Interactions
from recsys.ranking import csr_take_rows, ranking_metrics, top_k_in_batches

CURVE_K = 20
CURVE_METRIC = f"ndcg@{CURVE_K}"

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # CPU int64 user indices (B,) -> scores (B, n_items)


def hold_out_latest(interactions: Interactions, last_seen: np.ndarray, min_items: int = 3) -> tuple[Interactions, Interactions]:
    """``(train, held_out)``: for each user with at least ``min_items`` items, the one with the latest
    ``last_seen`` (ties: the highest item index) moves to ``held_out``. ``last_seen`` is parallel to
    ``interactions.indices``. Both keep every user and item index (a user may have an empty row)."""
    R = interactions
    rows = R.rows
    eligible = R.user_degrees() >= min_items
    order = np.lexsort((R.indices, last_seen, rows))  # per user, ascending time then item: its last entry is held out
    last_of_user = np.zeros(R.n_users, dtype=np.int64)
    last_of_user[rows[order]] = order  # the last write per user wins: its latest entry
    held = np.zeros(R.nnz, dtype=bool)
    held[last_of_user[eligible & (R.user_degrees() > 0)]] = True

    def part(mask: np.ndarray) -> Interactions:
        return Interactions.from_indices(rows[mask], R.indices[mask], R.weights[mask], n_users=R.n_users,
                                         n_items=R.n_items, user_ids=R.user_ids, item_ids=R.item_ids)

    return part(~held), part(held)


class RankingCurve:
    """``curve(score_fn)`` -> NDCG@20 and Recall@20 of the validation users (see the module docstring)."""

    def __init__(self, train: Interactions, held_out: Interactions, max_users: int = 5000, seed: int = 0,
                 batch_size: int = 1024):
        users = np.flatnonzero(held_out.user_degrees() > 0)
        if len(users) > max_users:  # a fixed sample: every epoch is scored on the same users
            users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
        self.users, self.batch_size = users, batch_size
        self.exclude = (train.indptr, train.indices)
        self.truth = csr_take_rows(held_out.indptr, held_out.indices, users)

    @classmethod
    def of(cls, train: Interactions | None, held_out: Interactions | None, seed: int = 0) -> "RankingCurve | None":
        if train is None or held_out is None or held_out.nnz == 0:
            return None
        return cls(train, held_out, seed=seed)

    def __call__(self, score_fn: ScoreFn) -> dict[str, float]:
        top, _ = top_k_in_batches(score_fn, self.users, CURVE_K, *self.exclude, batch_size=self.batch_size)
        metrics = ranking_metrics(top, *self.truth, ks=(CURVE_K,))
        return {f"validation_{CURVE_METRIC}": round(metrics[CURVE_METRIC], 6),
                f"validation_recall@{CURVE_K}": round(metrics[f"recall@{CURVE_K}"], 6)}


class BestEpoch:
    """Early stopping: remembers the best validation value and a snapshot of that epoch's parameters,
    and the last epoch that gained more than ``min_gain`` (a share) over the previous such epoch."""

    def __init__(self, patience: int, snapshot: Callable[[], Any], min_gain: float = 0.0):
        self.patience, self.snapshot, self.min_gain = patience, snapshot, min_gain
        self.best_value, self.best_epoch, self.state = -math.inf, 0, None
        self.gained_value, self.gained_epoch = -math.inf, 0

    def update(self, epoch: int, value: float | None) -> bool:
        """Record ``epoch``'s value; True when training should stop."""
        if value is None or math.isnan(value):
            return self._out_of_patience(epoch)
        if value > self.best_value:
            self.best_value, self.best_epoch, self.state = value, epoch, self.snapshot()
        if not self.gained_epoch or value > self.gained_value + self.min_gain * abs(self.gained_value):
            self.gained_value, self.gained_epoch = value, epoch
        return self._out_of_patience(epoch)

    def _out_of_patience(self, epoch: int) -> bool:
        return self.patience > 0 and self.gained_epoch > 0 and epoch - self.gained_epoch >= self.patience


def mark_best(curve: list[dict], best_epoch: int) -> list[dict]:
    """Flag the epoch whose parameters the model keeps (``best``: the last one when nothing was better)."""
    keep = best_epoch or len(curve)
    for record in curve:
        record["best"] = record["epoch"] == keep
    return curve


def detached_state(*tensors: torch.Tensor | torch.nn.Module) -> list[torch.Tensor]:
    """A copy of the parameters, for ``BestEpoch``."""
    out = []
    for t in tensors:
        out += [p.detach().clone() for p in (t.parameters() if isinstance(t, torch.nn.Module) else [t])]
    return out


def restore_state(state: list[torch.Tensor], *tensors: torch.Tensor | torch.nn.Module) -> None:
    targets = []
    for t in tensors:
        targets += list(t.parameters()) if isinstance(t, torch.nn.Module) else [t]
    with torch.no_grad():
        for target, value in zip(targets, state, strict=True):
            target.copy_(value)
