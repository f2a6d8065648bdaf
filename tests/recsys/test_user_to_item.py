"""The user-to-item path around the models: the stored matrix, the validation split, the test holdout,
the metrics row, the published table's contract, and its Delta publication and rollback."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from recsys.config import InteractionsConfig
from recsys.evaluate_users import build_user_holdout, pick_user_champion, user_metrics_row
from recsys.interactions import Interactions, load_user_items, save_user_items
from recsys.lake import Lake
from recsys.models.base import USER_TO_ITEM, TrainingInputs
from recsys.models.mf_bpr import MFBPRModel
from recsys.models.params import MFBPRParams, NoParams
from recsys.models.popular import PopularModel
from recsys.models.user_curves import BestEpoch, RankingCurve, hold_out_latest
from recsys.publish import USER_TO_ITEM_SCHEMA, current_run, publish_table, read_latest, user_to_item_table
from recsys.train import load_user_matrix
from tasks.maintenance import rollback_latest

# u1: a b c (c last), u2: a b, u3: b c d e (e last); item f only via u4, who has one item
PAIRS = [("u1", "a", 1, 1.0, 10), ("u1", "b", 2, 4.0, 20), ("u1", "c", 1, 1.0, 30),
         ("u2", "a", 1, 5.0, 5), ("u2", "b", 1, 1.0, 6),
         ("u3", "b", 1, 1.0, 1), ("u3", "c", 3, 3.0, 2), ("u3", "d", 1, 1.0, 3), ("u3", "e", 1, 1.0, 4),
         ("u4", "f", 1, 1.0, 9)]


def _pairs() -> pa.Table:
    users, items, events, weight, last = zip(*PAIRS)
    return pa.table({"user_id": list(users), "item_id": list(items), "events": list(events), "weight": list(weight),
                     "last_seen": list(last)})


def _matrix(tmp_path, **settings) -> tuple[Interactions, Interactions | None, Interactions]:
    save_user_items(_pairs(), tmp_path)
    return load_user_matrix(tmp_path, InteractionsConfig(**settings))


def test_stored_matrix_round_trips_with_either_weighting(tmp_path):
    save_user_items(_pairs(), tmp_path)
    binary, _ = load_user_items(tmp_path, "binary")
    weighted, _ = load_user_items(tmp_path, "event_weights")
    assert list(binary.matrix.user_ids) == ["u1", "u2", "u3", "u4"]
    assert list(binary.matrix.item_ids) == list("abcdef")
    assert binary.matrix.nnz == len(PAIRS) and set(binary.matrix.weights) == {1.0}
    assert list(weighted.matrix.weights_of(0)) == [1.0, 4.0, 1.0]
    assert list(binary.last_seen[binary.matrix.indptr[2]:binary.matrix.indptr[3]]) == [1, 2, 3, 4]


def test_filters_then_holds_out_each_qualifying_users_latest_item(tmp_path):
    train, held, history = _matrix(tmp_path, min_user_events=2, validation_min_items=3)
    assert list(history.user_ids) == ["u1", "u2", "u3"]  # u4 has one item; f goes with it
    assert list(history.item_ids) == list("abcde")
    assert {(history.user_ids[u], history.item_ids[i]) for u, i in zip(held.rows, held.indices)} == {("u1", "c"), ("u3", "e")}
    assert train.nnz + held.nnz == history.nnz
    assert not train.contains(held.rows, held.indices).any()
    _, no_held, whole = _matrix(tmp_path, validation_min_items=0)
    assert no_held is None and whole.nnz == len(PAIRS)


def test_hold_out_breaks_time_ties_by_the_higher_item():
    R = Interactions.from_indices(np.zeros(3, int), np.array([0, 1, 2]), n_users=1, n_items=3)
    _, held = hold_out_latest(R, np.array([5, 7, 7]), min_items=2)
    assert list(held.indices) == [2]


def test_holdout_keeps_new_items_of_warm_users_and_counts_the_rest(tmp_path):
    _, _, history = _matrix(tmp_path, validation_min_items=0)
    test = pa.table({"user_id": ["u1", "u1", "u1", "u2", "new", "new", "u3"],
                     "item_id": ["d", "a", "zz", "c", "a", "zz", "a"]})
    holdout = build_user_holdout(test, history)
    assert [history.user_ids[u] for u in holdout.users] == ["u1", "u2", "u3"]
    truth = [[history.item_ids[i] for i in holdout.truth_indices[lo:hi]]
             for lo, hi in zip(holdout.truth_indptr[:-1], holdout.truth_indptr[1:])]
    assert truth == [["d"], ["c"], ["a"]]
    assert holdout.summary() == {"test_users": 4, "users_evaluated": 3, "cold_users": 1, "test_pairs": 3,
                                 "unknown_item_pairs": 2, "repeat_pairs": 1}
    repeats = build_user_holdout(test, history, repeat_items=True)
    assert repeats.summary()["test_pairs"] == 4 and repeats.summary()["repeat_pairs"] == 1


def test_metrics_row_of_popular_by_hand(tmp_path):
    _, _, history = _matrix(tmp_path, validation_min_items=0)
    model = PopularModel.fit(TrainingInputs(None, None, None, interactions=history), NoParams())
    # popularity (distinct users): b 3, a 2, c 2, d 1, e 1, f 1; u1 (has a b c) gets d e f; u2 (a b) gets c d e
    test = pa.table({"user_id": ["u1", "u2"], "item_id": ["e", "c"]})
    holdout = build_user_holdout(test, history)
    row = user_metrics_row(model, holdout, history, (1, 2), repeat_items=False)
    assert row["hit@1"] == pytest.approx(0.5) and row["hit@2"] == pytest.approx(1.0)
    assert row["mrr@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert row["ndcg@2"] == pytest.approx((1 / np.log2(3) + 1.0) / 2)
    assert row["recall@1"] == pytest.approx(0.5) and row["precision@2"] == pytest.approx(0.5)
    assert row["users_evaluated"] == 2 and row["users_served"] == 1.0
    assert row["coverage@2"] == pytest.approx(3 / 6)  # d, e (u1) and c, d (u2)
    assert pick_user_champion([{"model": "x", "ndcg@2": 0.1}, {"model": "y", "ndcg@2": 0.3},
                               {"model": "z", "ndcg@2": float("nan")}], "ndcg@2") == "y"


def _trained_factor_model(history: Interactions) -> MFBPRModel:
    inputs = TrainingInputs(None, None, None, seed=1, interactions=history)
    return MFBPRModel.fit(inputs, MFBPRParams(dim=4, epochs=2, batch_size=4, patience=0))


def test_user_to_item_table_contract(tmp_path):
    _, _, history = _matrix(tmp_path, validation_min_items=0)
    model = _trained_factor_model(history)
    table = user_to_item_table(model, history, n=2, run_id="r1", batch_size=3)
    assert table.schema == USER_TO_ITEM_SCHEMA
    rows = table.to_pylist()
    seen = {(u, i) for u, i, *_ in PAIRS}
    assert not [r for r in rows if (r["user_id"], r["item_id"]) in seen]  # no training item
    by_user: dict[str, list[dict]] = {}
    for r in rows:
        by_user.setdefault(r["user_id"], []).append(r)
    assert sorted(by_user) == ["u1", "u2", "u3", "u4"] and list(by_user) == sorted(by_user)
    for user, recs in by_user.items():
        assert [r["rank"] for r in recs] == [1, 2]  # N rows per user (each has >= 2 unseen items)
        assert len({r["item_id"] for r in recs}) == 2  # no duplicates
        assert recs[0]["score"] >= recs[1]["score"]
    assert {r["model"] for r in rows} == {"mf_bpr"} and {r["run_id"] for r in rows} == {"r1"}
    with_seen = user_to_item_table(model, None, n=6, run_id="r1")
    assert with_seen.num_rows == 4 * 6  # exclude_seen off: every item, the user's own too


def test_user_table_publishes_gates_and_rolls_back_beside_item_to_item(tmp_path):
    _, _, history = _matrix(tmp_path / "m", validation_min_items=0)
    model = _trained_factor_model(history)
    lake = Lake(tmp_path / "lake")
    first = user_to_item_table(model, history, 2, "run-1")
    result = publish_table(lake, USER_TO_ITEM, first, "2024-03-01", "run-1", "mf_bpr", {"ndcg@20": 0.30}, "ndcg@20", 0.02)
    assert result.published and result.items == 4
    worse = publish_table(lake, USER_TO_ITEM, first, "2024-03-02", "run-2", "mf_bpr", {"ndcg@20": 0.20}, "ndcg@20", 0.02)
    assert not worse.published and "ndcg@20" in worse.reason
    second = user_to_item_table(model, history, 1, "run-3")
    assert publish_table(lake, USER_TO_ITEM, second, "2024-03-03", "run-3", "mf_bpr", {"ndcg@20": 0.31}, "ndcg@20").published
    assert read_latest(lake.root, USER_TO_ITEM).num_rows == 4
    restored = rollback_latest(lake.root, "2024-03-01")
    assert list(restored) == [USER_TO_ITEM]  # the item table has no commit of that date
    assert read_latest(lake.root, USER_TO_ITEM).num_rows == 8
    assert current_run(lake, USER_TO_ITEM)["run_id"] == "run-1"
    with pytest.raises(FileNotFoundError):
        rollback_latest(lake.root, str(dt.date(2020, 1, 1)))


def test_ranking_curve_scores_only_users_with_a_held_out_item(tmp_path):
    train, held, _ = _matrix(tmp_path, validation_min_items=3)
    curve = RankingCurve(train, held)
    assert len(curve.users) == 2
    values = curve(lambda users: torch_scores(train.n_items, users))
    assert set(values) == {"validation_ndcg@20", "validation_recall@20"}
    assert values["validation_recall@20"] == 1.0  # 5 items, 20 slots: every held-out item is ranked


def torch_scores(n_items: int, users):
    import torch

    return torch.zeros(len(users), n_items)


def _stopping_epoch(values: list[float | None], patience: int, min_gain: float) -> tuple[int | None, int]:
    """(the epoch after which training stops, None: it never does; the best epoch kept)."""
    best = BestEpoch(patience, lambda: None, min_gain)
    for epoch, value in enumerate(values, start=1):
        if best.update(epoch, value):
            return epoch, best.best_epoch
    return None, best.best_epoch


def test_early_stopping_ignores_gains_within_min_gain_but_keeps_the_best_epoch():
    # LightGCN's validation NDCG@20 at 10M events, epochs 1-6 (docs/benchmarks.md), then more plateau
    plateau = [0.337208, 0.337227, 0.336342, 0.336155, 0.337625, 0.336445, 0.3371, 0.3368, 0.33765, 0.3369, 0.3366]
    assert _stopping_epoch(plateau, 5, 0.002) == (6, 5)  # no 0.2% gain after epoch 1: stop after 6, keep epoch 5
    assert _stopping_epoch(plateau, 5, 0.0) == (None, 9)  # every wobble restarts the patience
    climbing = [0.30 * 1.001 ** k for k in range(40)]  # +0.1% per epoch: 0.3% every three epochs
    assert _stopping_epoch(climbing, 5, 0.002) == (None, 40)
    assert _stopping_epoch([0.1, 0.2, None, float("nan"), 0.19, 0.2, 0.2], 5, 0.002) == (7, 2)
    assert _stopping_epoch([-0.5, -0.4, -0.4], 1, 0.002) == (3, 2)  # a share of |value|: negative values too


def test_train_device_auto_is_the_cpu_here_and_cuda_without_a_gpu_fails_clearly():
    import torch

    from recsys.train import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="train.device is cuda"):
            resolve_device("cuda")
