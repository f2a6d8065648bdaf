"""NGCF (recsys/models/ngcf.py): propagation against a dense reference, node and message dropout, and training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recsys.interactions import Interactions, normalized_adjacency
from recsys.models.base import USER_TO_ITEM
from recsys.models.ngcf import DroppableAdjacency, NGCFModel, NGCFPropagation, _SparseMM
from recsys.models.params import NGCFParams
from recsys.models.user_curves import RankingCurve
from tests.recsys.test_graph_cf import _inputs, _mean_auc_of_held_out_against_other_group, _planted, _random

PARAMS = NGCFParams(dim=16, lr=0.01, l2=1e-4, batch_size=64, epochs=5, layers=2)


def _leaky(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.2 * x)


def _dense_reference(module: NGCFPropagation, dense_adjacency: np.ndarray, ego: np.ndarray) -> np.ndarray:
    """NGCF's propagation written out with dense float64 numpy, from the module's own weights."""
    outputs, layer = [ego], ego
    for weights in module.layers:
        w1, b1, w2, b2 = (p.detach().double().numpy() for p in (weights.w_sum, weights.b_sum, weights.w_bi, weights.b_bi))
        side = dense_adjacency @ layer
        layer = _leaky((side + layer) @ w1 + b1) + _leaky((layer * side) @ w2 + b2)
        outputs.append(layer / np.linalg.norm(layer, axis=1, keepdims=True))
    return np.hstack(outputs)


def _module(R: Interactions, dim: int = 4, layers: int = 3, message_dropout: float = 0.0, node_dropout: float = 0.0,
            seed: int = 5) -> NGCFPropagation:
    return NGCFPropagation(normalized_adjacency(R), dim, layers, message_dropout, node_dropout, seed)


# -- propagation ---------------------------------------------------------------------------------

def test_eval_propagation_matches_a_dense_reference():
    R = _random(6, 8, 20, seed=1)
    module = _module(R, message_dropout=0.5, node_dropout=0.5).eval()  # dropout set, but off in eval mode
    ego = torch.randn(R.n_users + R.n_items, 4, generator=torch.Generator().manual_seed(0))
    out = module(ego)
    assert out.shape == (R.n_users + R.n_items, 4 * 4)
    assert torch.equal(out[:, :4], ego)
    expected = _dense_reference(module, normalized_adjacency(R).to_dense().double().numpy(), ego.double().numpy())
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out[:, 4:8].detach().numpy(), axis=1), 1.0, rtol=1e-5)


def test_node_dropout_keeps_a_rescaled_subset_of_the_entries_and_gives_its_true_transpose():
    R = _random(40, 50, 600, seed=2)
    full = normalized_adjacency(R)
    dense = full.to_dense()
    dropped, transpose = DroppableAdjacency(full).dropped(0.3, torch.Generator().manual_seed(0))
    assert dropped.layout == torch.sparse_csr and transpose.layout == torch.sparse_csr
    kept = dropped.to_dense()
    assert ((kept != 0) <= (dense != 0)).all()  # a subset of the pattern
    torch.testing.assert_close(kept[kept != 0], dense[kept != 0] / 0.7)  # rescaled by 1 / (1 - p)
    share = dropped.values().numel() / full.values().numel()
    assert 0.62 < share < 0.78, share  # about 70% of ~1,100 entries kept
    assert torch.equal(transpose.to_dense(), kept.T)
    assert not torch.equal(kept, kept.T)  # entries are dropped independently, as the official code does
    again, _ = DroppableAdjacency(full).dropped(0.3, torch.Generator().manual_seed(1))
    assert not torch.equal(again.to_dense(), kept)


def test_sparse_product_backward_uses_the_transpose():
    R = _random(10, 12, 50, seed=3)
    dropped, transpose = DroppableAdjacency(normalized_adjacency(R)).dropped(0.4, torch.Generator().manual_seed(2))
    x = torch.randn(22, 3, requires_grad=True)
    weights = torch.randn(22, 3)
    (_SparseMM.apply(dropped, transpose, x) * weights).sum().backward()
    torch.testing.assert_close(x.grad, dropped.to_dense().T @ weights)


def test_train_mode_with_node_dropout_matches_dense_autograd_on_the_same_draw():
    R = _random(8, 9, 30, seed=4)
    module = _module(R, node_dropout=0.4).train()
    ego = torch.randn(17, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    state = module.generator.get_state()
    out = module(ego)
    replay = torch.Generator().manual_seed(0)
    replay.set_state(state)
    dropped, _ = module.adjacency.dropped(0.4, replay)  # the draw the forward pass used
    ego_dense = ego.detach().clone().requires_grad_()
    dense = dropped.to_dense()
    layers, layer = [ego_dense], ego_dense
    for weights in module.layers:
        side = dense @ layer
        layer = torch.nn.functional.leaky_relu((side + layer) @ weights.w_sum + weights.b_sum, 0.2) + \
            torch.nn.functional.leaky_relu((layer * side) @ weights.w_bi + weights.b_bi, 0.2)
        layers.append(torch.nn.functional.normalize(layer, dim=1))
    expected = torch.cat(layers, dim=1)
    torch.testing.assert_close(out, expected)
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out * probe).sum().backward()
    (expected * probe).sum().backward()
    torch.testing.assert_close(ego.grad, ego_dense.grad)  # the backward pass used Ã^T, not Ã


def test_dropout_only_in_train_mode():
    R = _random(8, 9, 30, seed=5)
    module = _module(R, message_dropout=0.3, node_dropout=0.3)
    ego = torch.randn(17, 4, generator=torch.Generator().manual_seed(3))
    module.eval()
    assert torch.equal(module(ego), module(ego))
    module.train()
    first, second = module(ego), module(ego)
    assert not torch.equal(first, second)
    assert torch.equal(first[:, :4], second[:, :4])  # the ego block is never dropped
    node_only = _module(R, node_dropout=0.3).train()
    assert not torch.equal(node_only(ego), node_only(ego))
    message_only = _module(R, message_dropout=0.3).train()
    assert (message_only(ego)[:, 4:] == 0).any()


# -- the model -----------------------------------------------------------------------------------

def test_ngcf_ranks_held_out_items_of_the_users_own_group_first():
    R, held_out, group_users, group_items = _planted()
    assert NGCFModel.serves == frozenset({USER_TO_ITEM}) and NGCFModel.name == "ngcf"
    untrained = NGCFModel.fit(_inputs(R), PARAMS.model_copy(update={"epochs": 1, "lr": 1e-6}))
    trained = NGCFModel.fit(_inputs(R), PARAMS)
    assert trained.users.shape == (R.n_users, 16 * 3) and trained.items.shape == (R.n_items, 16 * 3)
    assert _mean_auc_of_held_out_against_other_group(untrained, R, held_out, group_users, group_items) < 0.8
    assert _mean_auc_of_held_out_against_other_group(trained, R, held_out, group_users, group_items) > 0.95
    curve = trained.meta["curve"]
    assert [c["epoch"] for c in curve] == list(range(1, PARAMS.epochs + 1))
    assert curve[-1]["loss"] < 0.6 * curve[0]["loss"]


def test_ngcf_is_deterministic_for_a_seed_with_dropout_on():
    R, *_ = _planted(seed=1, group_users=10, group_items=15, per_user=5, held=1)
    params = PARAMS.model_copy(update={"epochs": 2, "node_dropout": 0.2, "message_dropout": 0.2})
    a, b = NGCFModel.fit(_inputs(R, seed=11), params), NGCFModel.fit(_inputs(R, seed=11), params)
    c = NGCFModel.fit(_inputs(R, seed=12), params)
    assert np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
    assert [r["loss"] for r in a.meta["curve"]] == [r["loss"] for r in b.meta["curve"]]
    assert not np.array_equal(a.users, c.users)


def test_save_and_load_give_identical_scores_without_pickle(tmp_path):
    R = Interactions.from_pairs(["ann", "ann", "bo", "cy", "cy"], ["x", "y", "y", "x", "z"])
    params = PARAMS.model_copy(update={"epochs": 2, "node_dropout": 0.1})
    model = NGCFModel.fit(_inputs(R), params)
    model.save(tmp_path)
    for path in tmp_path.glob("*.npy"):
        assert np.load(path, allow_pickle=False).dtype != object
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["name"] == "ngcf" and meta["params"] == params.model_dump()
    loaded = NGCFModel.load(tmp_path, _inputs(R))
    users = np.array([2, 0, 1])
    assert np.array_equal(loaded.user_scores(users), model.user_scores(users))
    assert loaded.user_ids.tolist() == ["ann", "bo", "cy"] and loaded.item_ids.tolist() == ["x", "y", "z"]


def test_curve_records_validation_and_early_stopping_keeps_the_best_epoch():
    R, held_out, *_ = _planted()
    validation = Interactions.from_indices(np.arange(R.n_users), held_out[:, 0], n_users=R.n_users, n_items=R.n_items)
    inputs = _inputs(R)
    inputs.user_validation = validation
    params = PARAMS.model_copy(update={"lr": 0.05, "epochs": 30, "patience": 2})
    model = NGCFModel.fit(inputs, params)
    curve = model.meta["curve"]
    ndcg = [c["validation_ndcg@20"] for c in curve]
    assert all("validation_recall@20" in c for c in curve)
    assert len(curve) < params.epochs  # it stopped early (measured: after epoch 8 of 30)
    best = [c for c in curve if c["best"]]
    assert len(best) == 1 and best[0]["epoch"] == int(np.argmax(ndcg)) + 1
    gained = [1]  # the epochs that restarted the patience: more than min_gain above the last such epoch
    for epoch, value in enumerate(ndcg[1:], start=2):
        gained += [epoch] if value > ndcg[gained[-1] - 1] * (1 + params.min_gain) else []
    assert len(curve) - gained[-1] == params.patience and best[0]["epoch"] >= gained[-1]
    # the stored embeddings are the best epoch's: scoring them again gives its validation figures
    again = RankingCurve(R, validation)(lambda users: torch.from_numpy(model.user_scores(users.numpy())))
    assert again["validation_ndcg@20"] == pytest.approx(best[0]["validation_ndcg@20"], abs=1e-5)
