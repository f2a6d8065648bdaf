"""The NCF family: pointwise instances and loss, GMF, MLP, NeuMF and NeuMF's pre-training initialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recsys.interactions import Interactions
from recsys.models.base import USER_TO_ITEM, TrainingInputs
from recsys.models.gmf import GMF, GMFModel
from recsys.models.mlp import MLP, MLPModel
from recsys.models.neumf import NeuMF, NeuMFModel, neumf_from_pretrained
from recsys.models.params import GMFParams, MLPParams, NeuMFParams
from recsys.models.pointwise import pointwise_instances, pointwise_loss, score_all
from recsys.models.user_curves import CURVE_METRIC, RankingCurve
from tests.recsys.test_graph_cf import _inputs, _mean_auc_of_held_out_against_other_group, _planted, _random


def _seeded(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter (biases included) random, so no identity below holds by accident of zeros."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return module.eval()


# -- instances and loss -------------------------------------------------------------------------

def test_instances_give_the_negatives_per_positive_and_never_a_positive_as_negative():
    R = _random(n_users=50, n_items=30, nnz=600, seed=4)  # dense: ~1/3 of pairs are positives
    R = Interactions.from_indices(np.r_[R.rows, np.zeros(29, int)], np.r_[R.indices, np.arange(29)],
                                  n_users=50, n_items=30)  # user 0 misses only item 29
    users, items, labels = pointwise_instances(R, 4, np.random.default_rng(0))
    assert len(users) == len(items) == len(labels) == 5 * R.nnz
    assert users.dtype == items.dtype == np.int64 and labels.dtype == np.float32
    pos, neg = labels == 1, labels == 0
    assert (pos | neg).all() and pos.sum() == R.nnz
    assert np.sort(users[pos] * R.n_items + items[pos]).tolist() == (R.rows * R.n_items + R.indices).tolist()
    assert np.bincount(users[neg], minlength=R.n_users).tolist() == (4 * R.user_degrees()).tolist()
    assert not R.contains(users[neg], items[neg]).any()
    assert (items[neg & (users == 0)] == 29).all()
    assert not (np.diff(users) >= 0).all()  # shuffled, not grouped by user
    again = pointwise_instances(R, 4, np.random.default_rng(1))[1]
    assert not np.array_equal(again, items)  # drawn afresh


def test_a_user_with_every_item_is_left_out_of_the_instances():
    R = Interactions.from_indices(np.array([0, 0, 1]), np.array([0, 1, 0]), n_users=2, n_items=2)
    users, items, labels = pointwise_instances(R, 3, np.random.default_rng(0))
    assert sorted(zip(users.tolist(), items.tolist(), labels.tolist())) == [(1, 0, 1.0)] + [(1, 1, 0.0)] * 3


def test_pointwise_loss_of_a_gmf_batch_matches_a_hand_computation():
    gmf = GMF(n_users=2, n_items=3, dim=2)
    with torch.no_grad():
        gmf.mf.user.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        gmf.mf.item.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 3.0]]))
        gmf.predict.weight.copy_(torch.tensor([[0.5, -1.0]]))
        gmf.predict.bias.fill_(0.25)
    users, items, labels = torch.tensor([0, 0, 1]), torch.tensor([0, 2, 2]), torch.tensor([1.0, 0.0, 1.0])
    # p*q: (1, 2), (0, 6), (0, -3) -> logits 0.5 - 2 + .25 = -1.25, -6 + .25 = -5.75, 3 + .25 = 3.25
    logits = np.array([-1.25, -5.75, 3.25])
    expected = (np.log1p(np.exp(1.25)) + np.log1p(np.exp(-5.75)) + np.log1p(np.exp(-3.25))) / 3
    squared_rows = (5 + 2) + (5 + 9) + (1 + 9)  # |p_u|^2 + |q_i|^2 of each instance
    squared_weights = 0.25 + 1.0  # |h|^2; the bias is not penalised
    args = gmf(users, items), labels, gmf.embedding_rows(users, items), gmf.dense_weights()
    np.testing.assert_allclose(args[0].detach().numpy(), logits, rtol=1e-6)
    total, log_loss = pointwise_loss(*args, l2=0.1)
    assert log_loss.item() == pytest.approx(expected, rel=1e-6)
    assert total.item() == pytest.approx(expected + 0.1 * (squared_rows / 3 + squared_weights), rel=1e-6)
    assert pointwise_loss(*args, l2=0.0)[0].item() == pytest.approx(expected, rel=1e-6)


# -- the networks -------------------------------------------------------------------------------

NETWORKS = {
    "gmf": lambda: GMF(7, 11, 4),
    "mlp": lambda: MLP(7, 11, (8, 6, 3)),
    "mlp_no_hidden": lambda: MLP(7, 11, (6,)),
    "neumf": lambda: NeuMF(7, 11, 4, (8, 6, 3)),
}


@pytest.mark.parametrize("make", NETWORKS.values(), ids=NETWORKS.keys())
def test_scores_of_users_against_all_items_in_blocks_are_the_pairs_logits(make):
    module = _seeded(make(), seed=5)
    users = torch.tensor([3, 0, 6, 3])
    with torch.no_grad():
        expected = module(users.repeat_interleave(11), torch.arange(11).repeat(4)).view(4, 11)
        for max_pairs in (1, 10, 1000):  # one item per block, a few items per block, one block
            np.testing.assert_allclose(score_all(module, users, 11, max_pairs).numpy(), expected.numpy(),
                                       rtol=1e-5, atol=1e-6)


def test_neumf_from_pretrained_copies_gmf_and_mlp_and_mixes_their_logits_with_alpha():
    gmf, mlp, alpha = _seeded(GMF(7, 11, 4), 1), _seeded(MLP(7, 11, (8, 6, 3)), 2), 0.3
    neumf = neumf_from_pretrained(gmf, mlp, alpha)
    assert torch.equal(neumf.mf.user.weight, gmf.mf.user.weight) and torch.equal(neumf.mf.item.weight, gmf.mf.item.weight)
    assert torch.equal(neumf.tower.user.weight, mlp.tower.user.weight)
    assert torch.equal(neumf.tower.item.weight, mlp.tower.item.weight)
    assert len(neumf.tower.hidden) == len(mlp.tower.hidden) == 2
    for mine, theirs in zip(neumf.tower.hidden, mlp.tower.hidden):
        assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)
    h = neumf.predict.weight[0]
    assert torch.allclose(h[:4], alpha * gmf.predict.weight[0]) and torch.allclose(h[4:], (1 - alpha) * mlp.predict.weight[0])
    assert neumf.predict.bias.item() == pytest.approx(alpha * gmf.predict.bias.item() + (1 - alpha) * mlp.predict.bias.item())
    users, items = torch.arange(7).repeat_interleave(11), torch.arange(11).repeat(7)
    with torch.no_grad():
        mixed = alpha * gmf(users, items) + (1 - alpha) * mlp(users, items)
        np.testing.assert_allclose(neumf(users, items).numpy(), mixed.numpy(), rtol=1e-5, atol=1e-6)
        neumf.mf.user.weight.add_(1.0)  # copies, not shared tensors: the GMF stays as it was
    assert not torch.equal(neumf.mf.user.weight, gmf.mf.user.weight)


# -- the models on a planted dataset ------------------------------------------------------------

MODELS = {
    "gmf": (GMFModel, GMFParams(dim=8, lr=0.01, batch_size=128, epochs=8)),
    "mlp": (MLPModel, MLPParams(layers=(32, 16, 8), lr=0.01, batch_size=128, epochs=8)),
    "neumf_pretrained_sgd": (NeuMFModel, NeuMFParams(dim=8, layers=(32, 16, 8), lr=0.01, batch_size=128, epochs=8)),
    "neumf_scratch": (NeuMFModel, NeuMFParams(dim=8, layers=(32, 16, 8), lr=0.01, batch_size=128, epochs=8, pretrain=False)),
}


@pytest.mark.parametrize("cls,params", MODELS.values(), ids=MODELS.keys())
def test_models_rank_held_out_items_of_the_users_own_group_first(cls, params):
    R, held_out, group_users, group_items = _planted()
    assert cls.serves == frozenset({USER_TO_ITEM})
    untrained = cls.fit(_inputs(R), params.model_copy(update={"epochs": 1, "lr": 1e-6}))
    trained = cls.fit(_inputs(R), params)
    assert _mean_auc_of_held_out_against_other_group(untrained, R, held_out, group_users, group_items) < 0.8
    assert _mean_auc_of_held_out_against_other_group(trained, R, held_out, group_users, group_items) > 0.95
    curve = trained.meta["curve"]
    assert [c["epoch"] for c in curve] == list(range(1, params.epochs + 1))
    assert all(c["instances"] == 5 * R.nnz and c["seconds"] >= 0 for c in curve)
    assert [c["best"] for c in curve] == [False] * (params.epochs - 1) + [True]  # no validation: the last epoch
    chance = 0.5004  # the log loss of predicting the label rate 1/5 for every instance
    if getattr(params, "pretrain", False):
        pretrain = trained.meta["pretrain_curves"]
        assert len(pretrain["gmf"]) == len(pretrain["mlp"]) == params.epochs
        assert pretrain["gmf"][-1]["loss"] < chance and pretrain["mlp"][-1]["loss"] < chance
        assert curve[0]["loss"] < chance  # NeuMF starts from the pre-trained parts, not from chance
    else:
        assert "pretrain_curves" not in trained.meta
        assert curve[0]["loss"] > 0.8 * chance and curve[-1]["loss"] < 0.8 * chance  # the loss falls


def test_early_stopping_keeps_the_epoch_with_the_best_validation_ndcg():
    R, held_out, *_ = _planted(seed=3)
    validation = Interactions.from_indices(np.arange(R.n_users), held_out[:, 0], n_users=R.n_users, n_items=R.n_items)
    inputs = TrainingInputs(None, None, None, seed=0, threads=1, interactions=R, user_validation=validation)
    params = GMFParams(dim=16, lr=0.05, batch_size=64, epochs=20, patience=2)
    model = GMFModel.fit(inputs, params)
    curve = model.meta["curve"]
    values = [c[f"validation_{CURVE_METRIC}"] for c in curve]
    best = [c["epoch"] for c in curve if c["best"]]
    assert len(best) == 1 and values[best[0] - 1] == max(values) and best[0] == 1 + int(np.argmax(values))
    assert len(curve) < params.epochs and len(curve) - best[0] == params.patience  # stopped early
    rescored = RankingCurve(R, validation)(lambda users: torch.from_numpy(model.user_scores(users.numpy())))
    assert rescored[f"validation_{CURVE_METRIC}"] == pytest.approx(values[best[0] - 1], abs=1e-6)  # the best epoch's parameters


# -- determinism, progress, persistence ---------------------------------------------------------

def test_models_are_deterministic_and_neumf_pretrains_the_gmf_trained_alone():
    R, *_ = _planted(seed=1, group_users=8, group_items=10, per_user=4, held=1)
    gmf_params = GMFParams(dim=4, lr=0.01, batch_size=32, epochs=2)
    a, b = GMFModel.fit(_inputs(R, seed=11), gmf_params), GMFModel.fit(_inputs(R, seed=11), gmf_params)
    c = GMFModel.fit(_inputs(R, seed=12), gmf_params)
    users = np.arange(R.n_users)
    assert np.array_equal(a.user_scores(users), b.user_scores(users))
    assert not np.array_equal(a.user_scores(users), c.user_scores(users))
    calls = []
    inputs = _inputs(R, seed=11)
    inputs.progress = lambda done, total: calls.append((done, total))
    neumf = NeuMFModel.fit(inputs, NeuMFParams(dim=4, layers=(8, 4), lr=0.01, batch_size=32, epochs=2))
    losses = [r["loss"] for r in a.meta["curve"]]
    assert [r["loss"] for r in neumf.meta["pretrain_curves"]["gmf"]] == losses
    assert calls == [(k, 6) for k in range(1, 7)]


@pytest.mark.parametrize("cls,params", [
    (GMFModel, GMFParams(dim=4, epochs=2)),
    (MLPModel, MLPParams(layers=(8, 4, 2), epochs=2)),
    (NeuMFModel, NeuMFParams(dim=3, layers=(8, 4), epochs=2, alpha=0.7)),
], ids=["gmf", "mlp", "neumf"])
def test_save_and_load_give_identical_scores_without_pickle(tmp_path, cls, params):
    R = Interactions.from_pairs(["ann", "ann", "bo", "cy", "cy"], ["x", "y", "y", "x", "z"])
    model = cls.fit(_inputs(R), params)
    model.save(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert all(name.endswith(".npy") for name in files if name != "model.json")
    for path in tmp_path.glob("*.npy"):
        assert np.load(path, allow_pickle=False).dtype != object
    assert len(files) == len(model.module.state_dict()) + 3  # one file per tensor, the ids, the meta
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["name"] == cls.name and meta["params"] == params.model_dump(mode="json") and meta["seed"] == 3
    assert ("pretrain_curves" in meta) == (cls is NeuMFModel)
    loaded = cls.load(tmp_path, _inputs(R))
    users = np.array([2, 0, 1])
    scores = loaded.user_scores(users)
    assert scores.shape == (3, 3) and scores.dtype == np.float32
    assert np.array_equal(scores, model.user_scores(users))
    assert loaded.user_ids.tolist() == ["ann", "bo", "cy"] and loaded.item_ids.tolist() == ["x", "y", "z"]
    assert loaded.meta["curve"] == model.meta["curve"]
