"""User-to-item evaluation: full ranking of all items for every test user, the same for every model.

Protocol (DESIGN.md, "Evaluation protocol"; He et al. 2020, "LightGCN", SIGIR, section 4.1): the
ground truth of a user is the distinct items of its test-day events. A user is evaluated when it has
at least one test item and a row in the training window's user x item matrix (``history``); its
training-window items are excluded from the ranking and, unless ``repeat_items``, from its truth
(only new items count). Test items the matrix does not hold (never seen in training, or filtered out)
cannot be ranked by any model: they are counted and left out of the truth. Users with test items but
no training history are counted apart (``cold_users``) and scored with the popularity fallback that
serves them. Metrics come from ``recsys.ranking`` (Recall, NDCG, Precision, HitRate, MRR @ each K,
catalogue coverage, users served), computed from one top-max(K) list per user, scored in batches of
users, so memory is O(batch x items). Each metric comes with the standard error of its mean over the
users (``<metric>_se``, e.g. ``ndcg@20_se``: the sample standard deviation over sqrt(users)). A
champion is picked only when at least ``evaluate.min_users`` users were evaluated.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from recsys.interactions import Interactions
from recsys.lake import write_parquet_atomic
from recsys.models.base import USER_TO_ITEM, TrainingInputs, UserModel
from recsys.ranking import catalogue_coverage, csr_from_pairs, csr_take_rows, ranking_metrics, \
    ranking_metrics_per_user, top_k_in_batches, users_served
from recsys.train import TrainResult, load_model

log = logging.getLogger(__name__)

SCORE_BATCH = 1024  # users scored at once: one (batch x n_items) float block


@dataclass(frozen=True)
class UserHoldout:
    """The test truth in the matrix's index space: row ``r`` of the CSR is user ``users[r]``."""

    users: np.ndarray  # user indices evaluated (test items and training history), ascending
    truth_indptr: np.ndarray
    truth_indices: np.ndarray
    test_users: int  # users with at least one test-day event
    cold_users: int  # of those, users without training history
    cold_truth: tuple[np.ndarray, np.ndarray]  # the cold users' known test items, as a CSR
    unknown_items: int  # test pairs whose item the matrix does not hold
    repeat_pairs: int  # test pairs of an item the user had in training (dropped unless repeat_items)

    def summary(self) -> dict[str, int]:
        return {"test_users": self.test_users, "users_evaluated": int(len(self.users)), "cold_users": self.cold_users,
                "test_pairs": int(len(self.truth_indices)), "unknown_item_pairs": self.unknown_items,
                "repeat_pairs": self.repeat_pairs}


@dataclass(frozen=True)
class UserEvaluation:
    metrics_path: str
    champion: str
    metric: str
    rows: tuple[dict, ...]
    holdout: dict  # UserHoldout.summary(), plus the cold users' fallback metrics
    too_small: str = ""  # why no champion was picked although models were scored, or ""


def build_user_holdout(test_pairs: pa.Table, history: Interactions, repeat_items: bool = False) -> UserHoldout:
    """Map the test days' (user_id, item_id) pairs onto ``history``'s indices (see the module docstring)."""
    user_index = {u: i for i, u in enumerate(history.user_ids)}
    item_index = {t: i for i, t in enumerate(history.item_ids)}
    users = np.array([user_index.get(u, -1) for u in test_pairs.column("user_id").to_pylist()], dtype=np.int64)
    items = np.array([item_index.get(t, -1) for t in test_pairs.column("item_id").to_pylist()], dtype=np.int64)
    test_user_ids = test_pairs.column("user_id").to_pylist()
    known_item = items >= 0
    warm = users >= 0
    repeat = np.zeros(len(users), dtype=bool)
    repeat[warm & known_item] = history.contains(users[warm & known_item], items[warm & known_item])
    keep = warm & known_item & (repeat_items | ~repeat)
    rows, cols = csr_from_pairs(users[keep], items[keep], history.n_users)
    evaluated = np.flatnonzero(np.diff(rows) > 0)
    indptr, indices = csr_take_rows(rows, cols, evaluated)
    cold_ids = sorted({u for u, w in zip(test_user_ids, warm) if not w})
    cold_pos = {u: r for r, u in enumerate(cold_ids)}
    cold_rows = np.array([cold_pos[u] for u, w, k in zip(test_user_ids, warm, known_item) if not w and k], dtype=np.int64)
    cold = csr_from_pairs(cold_rows, items[~warm & known_item], len(cold_ids))
    return UserHoldout(evaluated, indptr, indices, len(set(test_user_ids)), len(cold_ids), cold,
                       int((~known_item).sum()), int((warm & known_item & repeat).sum()))


def top_items(model: UserModel, users: np.ndarray, k: int, exclude: Interactions | None,
              batch_size: int = SCORE_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """The model's top-``k`` items for ``users`` (indices of its matrix), ``exclude``'s items ranked last."""
    def score(batch: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(model.user_scores(batch.numpy()))

    masks = (exclude.indptr, exclude.indices) if exclude is not None else (None, None)
    return top_k_in_batches(score, users, k, *masks, batch_size=batch_size)


def user_metrics_row(model: UserModel, holdout: UserHoldout, history: Interactions, ks: tuple[int, ...],
                     repeat_items: bool) -> dict:
    """Every ranking metric of one model on the holdout, plus coverage and the share of users served."""
    k_max = max(ks)
    top, _ = model.exact_top_items(holdout.users, k_max, None if repeat_items else history)
    names = [f"{m}@{k}" for m in ("recall", "ndcg", "precision", "hit", "mrr") for k in ks]
    metrics = ranking_metrics(top, holdout.truth_indptr, holdout.truth_indices, ks) if len(holdout.users) else \
        {name: math.nan for name in names}
    per_user = ranking_metrics_per_user(top, holdout.truth_indptr, holdout.truth_indices, ks) \
        if len(holdout.users) else {}
    row = {"model": model.name, **{name: metrics[name] for name in sorted(metrics) if "@" in name},
           **{f"{name}_se": mean_standard_error(per_user.get(name)) for name in sorted(names)},
           f"coverage@{k_max}": catalogue_coverage(top, history.n_items) if len(top) else math.nan,
           "users_served": users_served(top), "users_evaluated": int(len(holdout.users))}
    return row


def mean_standard_error(values: np.ndarray | None) -> float:
    """The standard error of a mean over users: sample standard deviation / sqrt(users); NaN under 2 users."""
    if values is None:
        return math.nan
    values = values[~np.isnan(values)]
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def too_few_users(evaluated: int, minimum: int) -> str:
    """Why ``evaluated`` users cannot pick a user-to-item champion, or "" when they can."""
    if evaluated >= minimum:
        return ""
    return (f"holdout too small: {evaluated} users evaluated (test-day items and training history) < evaluate.min_users "
            f"{minimum}, so no champion was picked and the gate's reference stays; widen window.test_days or choose "
            "another window.run_date")


def cold_fallback_metrics(history: Interactions, holdout: UserHoldout, ks: tuple[int, ...]) -> dict[str, float]:
    """The popularity fallback's metrics on the users without training history (what serves them)."""
    indptr, indices = holdout.cold_truth
    if not holdout.cold_users or not len(indices):
        return {}
    popularity = torch.from_numpy(history.item_degrees().astype(np.float32))
    top, _ = top_k_in_batches(lambda b: popularity.expand(len(b), -1), np.arange(holdout.cold_users), max(ks))
    metrics = ranking_metrics(top, indptr, indices, ks)
    return {f"cold_{name}": value for name, value in metrics.items() if "@" in name}


def pick_user_champion(rows: list[dict], metric: str) -> str:
    """The model with the highest ``metric`` (ties: the first listed); "" when no model has it."""
    scored = [r for r in rows if r.get(metric) is not None and not math.isnan(r[metric])]
    return max(scored, key=lambda r: r[metric])["model"] if scored else ""


def evaluate_user_models(trained: TrainResult, inputs: TrainingInputs, test_pairs: pa.Table, ks: tuple[int, ...],
                         champion_metric: str, repeat_items: bool, context: dict, metrics_path: Path,
                         min_users: int = 0) -> UserEvaluation:
    """Score every trained model that serves user-to-item on the test days; write ``user_metrics.parquet``.
    With fewer than ``min_users`` users evaluated, no champion is picked (``too_small`` says why)."""
    history = inputs.user_history
    if history is None:
        raise ValueError("user-to-item evaluation needs the training window's user x item matrix")
    holdout = build_user_holdout(test_pairs, history, repeat_items)
    log.info("evaluate users: %s", holdout.summary())
    rows = []
    for trained_model in (m for m in trained.models if USER_TO_ITEM in m.serves):
        model = load_model(trained_model.name, Path(trained_model.path), inputs)
        if list(model.item_ids) != list(history.item_ids) or list(model.user_ids) != list(history.user_ids):
            raise ValueError(f"model {model.name} was trained on another user x item matrix than this run's")
        row = user_metrics_row(model, holdout, history, ks, repeat_items)
        row["train_seconds"] = trained_model.seconds
        rows.append({**row, **context})
        log.info("evaluate users: %s %s", model.name, {k: round(v, 4) for k, v in row.items()
                                                       if isinstance(v, float) and "@" in k and k.endswith("20")})
    table = pa.Table.from_pylist(rows)
    if rows:
        write_parquet_atomic(table, metrics_path)
    small = too_few_users(len(holdout.users), min_users) if rows else ""
    champion = "" if small else pick_user_champion(rows, champion_metric)
    if small:
        log.warning("evaluate users: %s", small)
    log.info("evaluate users: champion by %s is %s", champion_metric, champion or "none")
    summary = {**holdout.summary(), **cold_fallback_metrics(history, holdout, ks)}
    return UserEvaluation(str(metrics_path), champion, champion_metric, tuple(rows), summary, small)
