"""The user x item matrix, its normalised graph, BPR sampling, and the MF-BPR and LightGCN models."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
import torch

from recsys.interactions import Interactions, bpr_triples, normalized_adjacency, sample_negatives
from recsys.models.base import USER_TO_ITEM, TrainingInputs
from recsys.models.lightgcn import LightGCNModel, propagate
from recsys.models.mf_bpr import MFBPRModel, batch_size_for, bpr_loss, train_bpr
from recsys.models.params import LightGCNParams, MFBPRParams
from recsys.models.user_curves import RankingCurve, hold_out_latest
from recsys.ranking import FIRST_BLOCK_ROWS


def _inputs(interactions: Interactions, seed: int = 3) -> TrainingInputs:
    """Only what user-to-item models read: the interactions (no item graph, no walks)."""
    return TrainingInputs(None, None, None, seed=seed, threads=1, interactions=interactions)


def _random(n_users: int, n_items: int, nnz: int, seed: int) -> Interactions:
    rng = np.random.default_rng(seed)
    return Interactions.from_indices(rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz),
                                     rng.integers(1, 4, nnz).astype(float), n_users=n_users, n_items=n_items)


# -- Interactions -------------------------------------------------------------------------------

def test_from_pairs_sums_duplicates_or_counts_each_distinct_pair_once():
    users = ["bob", "amy", "bob", "amy", "bob"]
    items = ["x", "y", "x", "x", "z"]
    summed = Interactions.from_pairs(users, items, weights=[1.0, 2.0, 3.0, 0.5, 1.0], binary=False)
    assert summed.user_ids.tolist() == ["amy", "bob"] and summed.item_ids.tolist() == ["x", "y", "z"]
    assert (summed.n_users, summed.n_items, summed.nnz) == (2, 3, 4)
    assert summed.items_of(0).tolist() == [0, 1] and summed.weights_of(0).tolist() == [0.5, 2.0]
    assert summed.items_of(1).tolist() == [0, 2] and summed.weights_of(1).tolist() == [4.0, 1.0]
    assert Interactions.from_pairs(users, items, binary=False).weights_of(1).tolist() == [2.0, 1.0]  # events counted
    binary = Interactions.from_pairs(users, items, weights=[1.0, 2.0, 3.0, 0.5, 1.0])
    assert binary.weights.tolist() == [1.0] * 4 and binary.weights.dtype == np.float32
    assert binary.indices.tolist() == summed.indices.tolist() and binary.indptr.tolist() == [0, 2, 4]
    assert binary.contains(np.array([0, 0, 1, 1]), np.array([1, 2, 2, 1])).tolist() == [True, False, True, False]


def test_from_indices_keeps_empty_users_and_rejects_bad_indices():
    R = Interactions.from_indices(np.array([2, 0, 2]), np.array([1, 3, 0]), n_users=4, n_items=5)
    assert R.indptr.tolist() == [0, 1, 1, 3, 3] and R.indices.tolist() == [3, 0, 1]
    assert R.user_degrees().tolist() == [1, 0, 2, 0] and R.item_degrees().tolist() == [1, 1, 0, 1, 0]
    with pytest.raises(ValueError):
        Interactions.from_indices(np.array([0]), np.array([5]), n_users=1, n_items=5)
    with pytest.raises(ValueError):
        Interactions.from_indices(np.array([-1]), np.array([0]))


def test_filter_repeats_until_every_user_and_item_has_its_minimum():
    # item "rare" has one user; dropping it leaves u3 with one item, which then drops u3 and takes
    # item "c" below two users in the next round
    pairs = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c"), ("u3", "c"), ("u3", "rare"),
             ("u4", "a"), ("u4", "b")]
    R = Interactions.from_pairs([p[0] for p in pairs], [p[1] for p in pairs])
    kept, counts = R.filter(min_user_events=2, min_item_events=2)
    assert kept.user_ids.tolist() == ["u1", "u2", "u4"] and kept.item_ids.tolist() == ["a", "b"]
    assert kept.nnz == 6 and all(kept.items_of(u).tolist() == [0, 1] for u in range(3))
    assert (counts.users, counts.items, counts.interactions) == (1, 2, 3) and counts.rounds == 4
    same, none = kept.filter(2, 2)
    assert same.nnz == kept.nnz and (none.users, none.items, none.interactions) == (0, 0, 0)


# -- the normalised adjacency -------------------------------------------------------------------

def test_normalized_adjacency_of_two_users_and_three_items_by_hand():
    # u0: items 0, 1; u1: items 1, 2; item 3 has no user. Degrees: users 2, 2; items 1, 2, 1, 0.
    R = Interactions.from_indices(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 2]), n_users=2, n_items=4)
    a, h = 1 / np.sqrt(2), 0.5  # 1/sqrt(2*1), 1/sqrt(2*2)
    expected = np.array([
        # u0 u1 i0 i1 i2 i3
        [0, 0, a, h, 0, 0],
        [0, 0, 0, h, a, 0],
        [a, 0, 0, 0, 0, 0],
        [h, h, 0, 0, 0, 0],
        [0, a, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ])
    adjacency = normalized_adjacency(R)
    assert adjacency.layout == torch.sparse_csr and adjacency.dtype == torch.float32
    assert adjacency._nnz() == 2 * R.nnz
    np.testing.assert_allclose(adjacency.to_dense().numpy(), expected, rtol=1e-6)


def test_normalized_adjacency_matches_networkx_on_a_random_weighted_graph():
    R = _random(n_users=9, n_items=12, nnz=30, seed=1)  # some users and items have no edge
    graph = nx.Graph()
    nodes = [("u", u) for u in range(R.n_users)] + [("i", i) for i in range(R.n_items)]
    graph.add_nodes_from(nodes)
    graph.add_weighted_edges_from((("u", int(u)), ("i", int(i)), float(w)) for u, i, w in zip(R.rows, R.indices, R.weights))
    A = nx.to_numpy_array(graph, nodelist=nodes, weight="weight")
    degree = np.array([graph.degree(n, weight="weight") for n in nodes], dtype=float)
    scale = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    expected = scale[:, None] * A * scale[None, :]
    assert (degree == 0).any()  # the isolated-node case is exercised
    np.testing.assert_allclose(normalized_adjacency(R).to_dense().numpy(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_propagation_is_the_mean_of_dense_powers_and_its_gradient_is_autograds(layers):
    R = _random(n_users=6, n_items=8, nnz=20, seed=2)
    adjacency = normalized_adjacency(R)
    dense = adjacency.to_dense().double().numpy()
    ego = np.random.default_rng(0).normal(size=(R.n_users + R.n_items, 4))
    expected, layer = ego.copy(), ego
    for _ in range(layers):
        layer = dense @ layer
        expected += layer
    expected /= layers + 1
    got = propagate(adjacency, torch.from_numpy(ego).float(), layers).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    x = torch.from_numpy(ego).float().requires_grad_()
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    (propagate(adjacency, x, layers) * weights).sum().backward()
    x_dense = torch.from_numpy(ego).float().requires_grad_()
    dense_t, total, layer_t = torch.from_numpy(dense).float(), x_dense, x_dense
    for _ in range(layers):
        layer_t = dense_t @ layer_t
        total = total + layer_t
    (total / (layers + 1) * weights).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x_dense.grad.numpy(), rtol=1e-5, atol=1e-6)


# -- BPR sampling and loss ----------------------------------------------------------------------

@pytest.mark.parametrize("rounds", [0, 2])
def test_bpr_epoch_uses_each_positive_once_and_never_a_positive_as_negative(rounds):
    R = _random(n_users=50, n_items=30, nnz=600, seed=4)  # dense: ~1/3 of pairs are positives
    full = Interactions.from_indices(np.r_[R.rows, np.zeros(29, int)], np.r_[R.indices, np.arange(29)],
                                     n_users=50, n_items=30)  # user 0 misses only item 29
    users, positives, negatives = bpr_triples(full, np.random.default_rng(0), rounds=rounds)
    assert users.dtype == positives.dtype == negatives.dtype == np.int64
    entries = np.sort(users * full.n_items + positives)
    assert entries.tolist() == (full.rows * full.n_items + full.indices).tolist()  # each positive exactly once
    assert not full.contains(users, negatives).any()
    assert (negatives[users == 0] == 29).all()
    drawn = bpr_triples(full, np.random.default_rng(0), n=5000, rounds=rounds)
    assert len(drawn[0]) == 5000 and full.contains(drawn[0], drawn[1]).all() and not full.contains(drawn[0], drawn[2]).any()


@pytest.mark.parametrize("rounds", [0, 3])
def test_negatives_are_uniform_over_the_users_non_positives(rounds):
    R = Interactions.from_indices(np.array([0, 0, 0, 1]), np.array([1, 2, 5, 0]), n_users=2, n_items=8)
    n = 50_000
    negatives = sample_negatives(R, np.zeros(n, dtype=np.int64), np.random.default_rng(7), rounds=rounds)
    counts = np.bincount(negatives, minlength=8)
    assert counts[[1, 2, 5]].tolist() == [0, 0, 0]
    np.testing.assert_allclose(counts[[0, 3, 4, 6, 7]] / n, 0.2, atol=0.01)


def test_a_user_with_every_item_has_no_negative_and_is_left_out_of_an_epoch():
    R = Interactions.from_indices(np.array([0, 0, 1]), np.array([0, 1, 0]), n_users=2, n_items=2)
    users, positives, negatives = bpr_triples(R, np.random.default_rng(0))
    assert users.tolist() == [1] and positives.tolist() == [0] and negatives.tolist() == [1]
    with pytest.raises(ValueError):
        sample_negatives(R, np.array([0]), np.random.default_rng(0))


def test_bpr_loss_matches_a_hand_computed_value():
    u = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    i = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    j = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # margins: u0: 1 - 0 = 1; u1: 2 - 2 = 0 -> softplus(-1), softplus(0)
    bpr_expected = (np.log1p(np.exp(-1.0)) + np.log(2.0)) / 2
    squares = (1 + 4) + (2 + 1) + (1 + 2)  # |u|^2 + |i|^2 + |j|^2 over the batch
    total, bpr = bpr_loss(u, i, j, u, i, j, l2=0.1)
    assert bpr.item() == pytest.approx(bpr_expected, rel=1e-6)
    assert total.item() == pytest.approx(bpr_expected + 0.1 * 0.5 * squares / 2, rel=1e-6)
    # the L2 term is on the ego embeddings given, not on the scoring ones
    assert bpr_loss(u, i, j, 0 * u, 0 * i, 0 * j, l2=0.1)[0].item() == pytest.approx(bpr_expected, rel=1e-6)


# -- the models on a planted dataset ------------------------------------------------------------

def _planted(seed: int = 0, group_users: int = 30, group_items: int = 40, per_user: int = 12, held: int = 3):
    """Two groups: users of group g only ever touch items of group g. ``held`` items per user are held out."""
    rng = np.random.default_rng(seed)
    users, items, held_out = [], [], []
    for g in range(2):
        for u in range(g * group_users, (g + 1) * group_users):
            chosen = g * group_items + rng.choice(group_items, per_user + held, replace=False)
            users += [u] * per_user
            items += chosen[:per_user].tolist()
            held_out.append(chosen[per_user:])
    R = Interactions.from_indices(np.array(users), np.array(items), n_users=2 * group_users, n_items=2 * group_items)
    return R, np.array(held_out), group_users, group_items


def _mean_auc_of_held_out_against_other_group(model, R, held_out, group_users, group_items) -> float:
    scores = model.user_scores(np.arange(R.n_users))
    assert scores.shape == (R.n_users, R.n_items) and scores.dtype == np.float32
    aucs = []
    for u in range(R.n_users):
        other = np.arange(group_items) + (group_items if u < group_users else 0)
        own = scores[u, held_out[u]][:, None]
        aucs.append((own > scores[u, other][None, :]).mean())
    return float(np.mean(aucs))


MODELS = [
    (MFBPRModel, MFBPRParams(dim=16, lr=0.02, l2=1e-3, batch_size=64, epochs=10)),  # more epochs overfit the train items
    (LightGCNModel, LightGCNParams(dim=16, lr=0.02, l2=1e-4, batch_size=64, epochs=20, layers=2)),
]


@pytest.mark.parametrize("cls,params", MODELS, ids=["mf_bpr", "lightgcn"])
def test_models_rank_held_out_items_of_the_users_own_group_first(cls, params):
    R, held_out, group_users, group_items = _planted()
    assert cls.serves == frozenset({USER_TO_ITEM})
    untrained = cls.fit(_inputs(R), params.model_copy(update={"epochs": 1, "lr": 1e-6}))
    trained = cls.fit(_inputs(R), params)
    assert _mean_auc_of_held_out_against_other_group(untrained, R, held_out, group_users, group_items) < 0.8
    assert _mean_auc_of_held_out_against_other_group(trained, R, held_out, group_users, group_items) > 0.95
    curve = trained.meta["curve"]
    assert [c["epoch"] for c in curve] == list(range(1, params.epochs + 1))
    assert all(c["triples"] == R.nnz and c["seconds"] >= 0 and c["batch_size"] == params.batch_size for c in curve)
    assert curve[-1]["loss"] < 0.5 * curve[0]["loss"]  # the loss falls


def test_the_batch_grows_so_that_an_epoch_takes_at_most_max_batches_per_epoch_steps():
    params = MFBPRParams(batch_size=10, max_batches_per_epoch=4)
    assert [batch_size_for(n, params) for n in (1, 40, 41, 1000, 1001)] == [10, 10, 11, 250, 251]
    assert batch_size_for(10**7, params.model_copy(update={"max_batches_per_epoch": None})) == 10
    assert LightGCNParams().max_batches_per_epoch == 256 and MFBPRParams().max_batches_per_epoch is None


def test_lightgcn_takes_fewer_steps_per_epoch_as_the_graph_grows():
    params = LightGCNParams(batch_size=10, max_batches_per_epoch=100, max_propagated_per_epoch=4000)
    # triples x steps stays within 4,000: 10 steps of 10 for 100 triples, 10 of 40 for 400, 4 of 250 for 1,000
    assert [batch_size_for(n, params) for n in (100, 400, 1000, 4000, 10**6)] == [10, 40, 250, 4000, 10**6]
    assert batch_size_for(10**6, params.model_copy(update={"max_propagated_per_epoch": None})) == 10**4
    defaults = LightGCNParams()
    assert batch_size_for(50_000, defaults) == 2048  # the sample's size: the paper's batch
    assert batch_size_for(4_112_055, defaults) == 257_004  # the 10M-event log: 16 steps per epoch

    R, held_out, group_users, group_items = _planted()
    capped = LightGCNParams(dim=16, lr=0.02, batch_size=64, epochs=20, layers=2, max_batches_per_epoch=3)
    trained = LightGCNModel.fit(_inputs(R), capped)
    curve = trained.meta["curve"]
    assert {c["batch_size"] for c in curve} == {-(-R.nnz // 3)}  # 720 triples: 3 steps of 240, not 12 of 64
    assert {c["lr"] for c in curve} == {0.02 * 240 / 64}  # and 3.75 times the step
    assert curve[-1]["loss"] < 0.5 * curve[0]["loss"]
    assert _mean_auc_of_held_out_against_other_group(trained, R, held_out, group_users, group_items) > 0.9


def test_a_validation_propagates_the_graph_once_however_many_blocks_it_ranks():
    # 200 validation users are ranked in two blocks (64 rows, then the rest): before, each block
    # propagated the whole graph again, 26-36 s of each LightGCN epoch at 10M events
    R = _random(n_users=200, n_items=30, nnz=2000, seed=5)
    train, held = hold_out_latest(R, np.arange(R.nnz), min_items=3)
    curve = RankingCurve(train, held)
    assert len(curve.users) > FIRST_BLOCK_ROWS
    adjacency, calls = normalized_adjacency(train), []

    def counted(ego: torch.Tensor) -> torch.Tensor:
        calls.append(ego.requires_grad and torch.is_grad_enabled())
        return propagate(adjacency, ego, 2)

    params = MFBPRParams(dim=8, batch_size=1000, epochs=2, patience=0)
    train_bpr(train, params, seed=1, propagate=counted, curve=curve)
    steps = -(-len(bpr_triples(train, np.random.default_rng(1))[0]) // 1000)
    assert calls.count(True) == 2 * steps  # the training steps
    assert calls.count(False) == 2 + 1  # one propagation per validation, one for the final embeddings


@pytest.mark.parametrize("cls,params", MODELS, ids=["mf_bpr", "lightgcn"])
def test_models_are_deterministic_for_a_seed(cls, params):
    R, *_ = _planted(seed=1)
    params = params.model_copy(update={"epochs": 3})
    a, b = cls.fit(_inputs(R, seed=11), params), cls.fit(_inputs(R, seed=11), params)
    c = cls.fit(_inputs(R, seed=12), params)
    assert np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
    assert [r["loss"] for r in a.meta["curve"]] == [r["loss"] for r in b.meta["curve"]]
    assert not np.array_equal(a.users, c.users)


def test_lightgcn_stores_the_propagated_ego_embeddings():
    R, *_ = _planted(seed=2, group_users=5, group_items=6, per_user=3, held=1)
    params = LightGCNParams(dim=4, lr=0.01, batch_size=8, epochs=2, layers=3)
    model = LightGCNModel.fit(_inputs(R), params)
    dense = normalized_adjacency(R).to_dense().double().numpy()
    expected, layer = model.ego.astype(np.float64), model.ego.astype(np.float64)
    for _ in range(3):
        layer = dense @ layer
        expected = expected + layer
    expected /= 4
    np.testing.assert_allclose(np.vstack([model.users, model.items]), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls,params", MODELS, ids=["mf_bpr", "lightgcn"])
def test_save_and_load_give_identical_scores_without_pickle(tmp_path, cls, params):
    R = Interactions.from_pairs(["ann", "ann", "bo", "cy", "cy"], ["x", "y", "y", "x", "z"])
    model = cls.fit(_inputs(R), params.model_copy(update={"epochs": 2}))
    model.save(tmp_path)
    for path in tmp_path.glob("*.npy"):
        assert np.load(path, allow_pickle=False).dtype != object
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["name"] == cls.name and meta["params"] == params.model_copy(update={"epochs": 2}).model_dump()
    loaded = cls.load(tmp_path, _inputs(R))
    users = np.array([2, 0, 1])
    assert np.array_equal(loaded.user_scores(users), model.user_scores(users))
    assert loaded.user_ids.tolist() == ["ann", "bo", "cy"] and loaded.item_ids.tolist() == ["x", "y", "z"]
    assert loaded.meta["curve"] == model.meta["curve"]


def test_fit_without_interactions_fails_with_a_clear_message():
    with pytest.raises(ValueError, match="interactions"):
        MFBPRModel.fit(TrainingInputs(None, None, None), MFBPRParams(epochs=1))
