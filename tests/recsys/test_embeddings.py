"""The PyTorch embedding family: the closed-form steps against autograd, the pieces of word2vec's
recipe, the catalogue and side-information parts, and every model on a graph with known structure."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from recsys.catalog import Catalog, build_catalog
from recsys.config import TrainConfig, WalksConfig
from recsys.models.params import MFParams, SideInfoParams, SkipGramParams
from recsys.models import model_class, with_curves
from recsys.models.base import TrainingInputs
from recsys.models.negative_sampling import (EdgePairs, FlatWalks, LinearDecay, UnigramNegatives, WalkPairs, keep_probabilities,
                                             negative_sampling_step, window_pairs)
from recsys.models.side_info import ItemParts, SideInfoTrainer, item_parts, price_buckets
from recsys.transition import TransitionTable
from recsys.walks import generate_walks_local

SMALL = {"vector_size": 8, "epochs": 4, "window": 3, "sample": 0.0, "batch_size": 64}


def _autograd_step(h, out, contexts, negatives, lr, out_bias=None, h_bias=None):
    """The same SGD step through autograd on the summed SGNS loss."""
    h, out = h.clone().requires_grad_(), out.clone().requires_grad_()
    groups, _ = negatives.shape
    s_pos = (h * out[contexts]).sum(1)
    s_neg = torch.bmm(h.view(groups, -1, h.shape[1]), out[negatives].transpose(1, 2))
    params = [h, out]
    if out_bias is not None:
        out_bias, h_bias = out_bias.clone().requires_grad_(), h_bias.clone().requires_grad_()
        s_pos = s_pos + out_bias[contexts] + h_bias
        s_neg = s_neg + out_bias[negatives][:, None, :] + h_bias.view(groups, -1, 1)
        params += [out_bias, h_bias]
    loss = -(torch.nn.functional.logsigmoid(s_pos).sum() + torch.nn.functional.logsigmoid(-s_neg).sum())
    loss.backward()
    return [-lr * p.grad for p in params], loss.item() / h.shape[0]


@pytest.mark.parametrize("group, bias", [(1, False), (2, False), (4, True)])
def test_closed_form_step_is_the_autograd_step(group, bias):
    gen = torch.Generator().manual_seed(0)
    h, out = torch.randn(8, 5, generator=gen), torch.randn(10, 5, generator=gen)
    contexts = torch.tensor([1, 2, 3, 1, 4, 5, 6, 1])
    negatives = torch.randint(0, 10, (8 // group, 3), generator=gen)
    out_bias, h_bias = (torch.randn(10, generator=gen), torch.randn(8, generator=gen)) if bias else (None, None)
    expected, expected_loss = _autograd_step(h, out, contexts, negatives, 0.1, out_bias, h_bias)
    updated = out.clone()
    updated_bias = out_bias.clone() if bias else None
    dh, dh_bias, loss = negative_sampling_step(h, contexts, negatives, updated, 0.1, updated_bias, h_bias)
    assert torch.allclose(dh, expected[0], atol=1e-5)
    assert torch.allclose(updated - out, expected[1], atol=1e-5)
    if bias:
        assert torch.allclose(updated_bias - out_bias, expected[2], atol=1e-5)
        assert torch.allclose(dh_bias, expected[3], atol=1e-5)
    assert loss == pytest.approx(expected_loss, rel=1e-5)  # the batch's mean loss, before the update


def test_side_information_step_is_the_autograd_step_with_learned_weights():
    parts = ItemParts(np.array([[0, 4, 6], [1, 4, -1], [2, 5, 7], [3, 5, 6]]), ("id", "category", "price"), 8)
    trainer = SideInfoTrainer(parts, 4, 3, learned_weights=True, seed=0)
    gen = torch.Generator().manual_seed(1)
    trainer.context = torch.randn(4, 3, generator=gen)
    trainer.logits = torch.randn(4, 3, generator=gen)
    centres, contexts = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 0, 3, 2])
    negatives = torch.tensor([[2, 3], [0, 1]])
    table, logits, context = (t.clone().requires_grad_() for t in (trainer.parts, trainer.logits, trainer.context))
    rows = torch.from_numpy(parts.rows[centres.numpy()])
    mask = rows >= 0
    a = torch.softmax(logits[centres].masked_fill(~mask, float("-inf")), 1)
    h = (a[..., None] * table[rows.clamp(min=0)]).sum(1)
    s_pos = (h * context[contexts]).sum(1)
    s_neg = torch.bmm(h.view(2, 2, 3), context[negatives].transpose(1, 2))
    loss = -(torch.nn.functional.logsigmoid(s_pos).sum() + torch.nn.functional.logsigmoid(-s_neg).sum())
    loss.backward()
    before = [t.clone() for t in (trainer.parts, trainer.logits, trainer.context)]
    trainer.step(centres, contexts, negatives, 0.1)
    for old, new, grad in zip(before, (trainer.parts, trainer.logits, trainer.context), (table.grad, logits.grad, context.grad)):
        assert torch.allclose(new - old, -0.1 * grad, atol=1e-5)


def test_subsampling_keeps_rare_items_and_thins_frequent_ones():
    counts = np.array([1, 10, 1000, 0])
    keep = keep_probabilities(counts, 1e-2)
    threshold = 1e-2 * counts.sum()
    assert keep[0] == 1.0 and keep[3] == 0.0
    assert keep[2] == pytest.approx((np.sqrt(1000 / threshold) + 1) * threshold / 1000)
    assert (keep_probabilities(counts, 0.0) == 1.0).all()


def test_window_pairs_stay_inside_walks_and_the_window():
    walks = FlatWalks.from_lists([[0, 1, 2, 3, 4], [5, 6, 7]])
    tokens, owner = walks.gather(np.array([1, 0]))
    assert tokens.tolist() == [5, 6, 7, 0, 1, 2, 3, 4] and owner.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    centres, contexts = window_pairs(tokens, owner, 2, np.random.default_rng(0))
    assert len(centres) > 0
    assert ((centres >= 5) == (contexts >= 5)).all()  # never across walks
    position = {t: i for i, t in enumerate(tokens.tolist())}
    gaps = np.abs(np.array([position[c] - position[o] for c, o in zip(centres, contexts)]))
    assert gaps.min() >= 1 and gaps.max() <= 2
    full, _ = window_pairs(tokens, owner, 1, np.random.default_rng(0))
    assert len(full) == 2 * (4 + 2)  # window 1: every neighbour pair, both ways


def test_walk_pairs_cover_every_walk_once_per_epoch():
    walks = FlatWalks.from_lists([[i, i + 1] for i in range(0, 40, 2)])
    source = WalkPairs(walks, 40, window=1, sample=0.0, chunk_tokens=7)
    chunks = list(source.epoch(np.random.default_rng(0)))
    assert len(chunks) > 1 and sum(w for *_, w in chunks) == pytest.approx(1.0)
    centres = np.concatenate([c for c, _, _ in chunks])
    assert sorted(centres.tolist()) == list(range(40))


def test_negatives_follow_the_unigram_distribution_to_the_power_075():
    counts = np.array([1, 16, 0, 81])
    drawn = UnigramNegatives(counts).draw(np.random.default_rng(0), (200_000,))
    expected = counts ** 0.75 / (counts ** 0.75).sum()
    assert np.allclose(np.bincount(drawn, minlength=4) / len(drawn), expected, atol=0.005)
    assert (drawn != 2).all()


def test_learning_rate_decays_linearly_over_the_whole_run():
    decay = LinearDecay(0.025, 0.0001)
    assert decay.at(0) == 0.025 and decay.at(1) == pytest.approx(0.0001) and decay.at(2) == pytest.approx(0.0001)
    assert decay.at(0.5) == pytest.approx((0.025 + 0.0001) / 2)


def _two_cliques(size: int = 6) -> TransitionTable:
    edges = [(a, b) for g in (0, size) for a in range(g, g + size) for b in range(g, g + size) if a != b]
    ids = np.array([f"i{n:02d}" for n in range(2 * size)], dtype=object)
    return TransitionTable.from_edges(ids, np.array([e[0] for e in edges]), np.array([e[1] for e in edges]), np.ones(len(edges)))


def _side_items(table: TransitionTable) -> pa.Table:
    """Clique 0 is category a, clique 1 category b; two cold items, one per category, and one without side info."""
    ids = table.item_ids.tolist() + ["cold_a", "cold_b"]
    categories = ["a"] * 6 + ["b"] * 6 + ["a", "b"]
    prices = [float(n) for n in range(14)]
    return pa.table({"item_id": ids + ["no_side"], "category": categories + [None], "brand": [None] * 15,
                     "price": prices + [None]})


def _inputs(tmp_path, seed: int = 5) -> TrainingInputs:
    """In memory, as the train stage hands them over: no file is written."""
    table = _two_cliques()
    stats = pa.table({"item_id": table.item_ids.tolist(), "events": [1] * 12})
    walks = generate_walks_local(table, WalksConfig(walks_per_node=10, walk_length=10), seed=1)
    return TrainingInputs(table, build_catalog(table, _side_items(table)), stats, walks.column("walk").combine_chunks(),
                          seed=seed, threads=1)


def _config() -> TrainConfig:
    return TrainConfig(skipgram=SkipGramParams(**SMALL), side_info=SideInfoParams(**SMALL, price_buckets=2),
                       mf=MFParams(**SMALL, alpha=0.05))


def test_catalog_puts_nodes_first_then_cold_items_with_side_information():
    table = _two_cliques()
    catalog = build_catalog(table, _side_items(table))
    assert catalog.n_nodes == 12 and catalog.item_ids[12:].tolist() == ["cold_a", "cold_b"]
    assert catalog.indices_of(["i03", "cold_b", "no_side"]).tolist() == [3, 13, -1]
    assert catalog.category[[0, 6, 12]].tolist() == ["a", "b", "a"]


def test_item_parts_give_each_item_its_id_category_and_price_bucket():
    table = _two_cliques()
    parts = item_parts(build_catalog(table, _side_items(table)), buckets=2)
    assert parts.names == ("id", "category", "price")
    assert parts.rows[0].tolist() == [0, 12, 14] and parts.rows[12].tolist() == [-1, 12, 15]
    assert price_buckets(np.array([1.0, np.nan, 3.0, 2.0]), 2).tolist() == [0, -1, 1, 1]


@pytest.mark.parametrize("name", with_curves())
def test_each_pytorch_model_separates_two_cliques_deterministically_with_falling_loss(tmp_path, name):
    inputs = _inputs(tmp_path)
    model = model_class(name).fit(inputs, _config().params_for(name))
    again = model_class(name).fit(_inputs(tmp_path / "again"), _config().params_for(name))
    assert np.array_equal(model.left, again.left)  # one thread + seed -> identical vectors
    curve = model.meta["curve"]
    assert len(curve) == 4 and curve[-1]["loss"] < curve[0]["loss"]
    nodes = np.arange(12)
    idx, _ = model.similar(nodes, 4)
    same_clique = (idx // 6) == (nodes // 6)[:, None]
    assert same_clique.mean() > 0.9 and (idx != nodes[:, None]).all()


@pytest.mark.parametrize("name", ["side_info_avg", "eges"])
def test_cold_items_get_vectors_from_side_information_only_and_are_never_recommended(tmp_path, name):
    inputs = _inputs(tmp_path)
    model = model_class(name).fit(inputs, _config().params_for(name))
    assert model.has_vector[:14].all() and len(model.has_vector) == 14  # no_side is not in the catalogue
    scores = model.pair_scores(np.array([12, 12, 13, 13]), np.array([0, 6, 6, 0]))
    assert scores[0] > scores[1] and scores[2] > scores[3]  # a cold item sits with its category
    idx, _ = model.similar(np.arange(14), 5)
    assert (idx < 12).all() and (idx[12:] >= 0).all()  # cold items get neighbours, are never one


@pytest.mark.parametrize("name", ["word2vec", "skipgram", "mf_pairs", "mf_walks"])
def test_id_only_models_have_no_vector_for_cold_items(tmp_path, name):
    params = _config().params_for(name)
    model = model_class(name).fit(_inputs(tmp_path), params.model_copy(update={"vector_size": 8}) if name == "word2vec" else params)
    fallback = np.float32(model.fallback)
    assert model.pair_scores(np.array([12, 0]), np.array([0, 13])).tolist() == [fallback, fallback]
    idx, _ = model.similar(np.array([12, 13]), 3)
    assert (idx == -1).all()
    if name.startswith("mf"):  # a logit's "unrelated" is the mean score of random pairs, below a related pair's
        within, across = model.pair_scores(np.array([0, 6]), np.array([1, 7])), model.pair_scores(np.array([0, 6]), np.array([7, 1]))
        assert across.max() < model.fallback + 1.0 and within.min() > model.fallback
    else:
        assert model.fallback == 0.0


def test_edge_pairs_of_a_graph_without_edges_yield_nothing():
    source = EdgePairs(np.zeros(4, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0), pairs_per_epoch=10)
    assert list(source.epoch(np.random.default_rng(0))) == []
    assert UnigramNegatives(np.zeros(3)).cdf.tolist() == [0.0, 0.0, 0.0]


def test_catalog_round_trips(tmp_path):
    table = _two_cliques()
    catalog = build_catalog(table, _side_items(table))
    catalog.save(tmp_path)
    loaded = Catalog.load(tmp_path)
    assert loaded.item_ids.tolist() == catalog.item_ids.tolist() and loaded.n_nodes == 12
    assert np.allclose(loaded.price, catalog.price, equal_nan=True)


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch():
    from recsys.models.negative_sampling import Schedule, train_pairs
    from recsys.models.skipgram import SkipGramTrainer

    table = _two_cliques()
    walks = generate_walks_local(table, WalksConfig(walks_per_node=5, walk_length=10), seed=1)
    source = WalkPairs(FlatWalks.from_arrow(walks.column("walk")), 12, window=2, sample=0.0)
    trainer = SkipGramTrainer(12, 4, seed=3)
    aucs, seen = iter([0.6, 0.8, 0.7, 0.75, 0.9, 0.95]), {}

    def scripted(model) -> float:  # the validation AUC after each epoch, and a copy of the centre vectors then
        seen[len(seen) + 1] = model.centre.clone()
        return next(aucs)

    records = train_pairs(trainer, source, UnigramNegatives(source.counts), Schedule(6, 0.025, 0.0001, 2, 16, 8), 0,
                          scripted, patience=2)
    assert [r.epoch for r in records] == [1, 2, 3, 4]  # no better AUC in epochs 3 and 4: stop
    assert [r.best for r in records] == [False, True, False, False]
    assert torch.equal(trainer.centre, seen[2]) and not torch.equal(seen[2], seen[4])


def test_without_patience_every_epoch_runs_and_the_last_is_kept():
    from recsys.models.negative_sampling import Schedule, train_pairs
    from recsys.models.skipgram import SkipGramTrainer

    table = _two_cliques()
    walks = generate_walks_local(table, WalksConfig(walks_per_node=5, walk_length=10), seed=1)
    source = WalkPairs(FlatWalks.from_arrow(walks.column("walk")), 12, window=2, sample=0.0)
    records = train_pairs(SkipGramTrainer(12, 4, seed=3), source, UnigramNegatives(source.counts),
                          Schedule(3, 0.025, 0.0001, 2, 16, 8), 0, lambda model: 0.5)
    assert [r.best for r in records] == [False, False, True]
