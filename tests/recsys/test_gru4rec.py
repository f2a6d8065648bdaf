"""GRU4Rec: session-parallel batches, the sampled losses and scores, the GRU step, training and serving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.models.base import NEXT_ITEM
from recsys.models.gru4rec import (AdagradMomentum, GRU4RecModel, GRU4RecNet, NegativeSampler, bpr_max_loss,
                                   cross_entropy_loss, inputs_for_sequences, session_parallel_batches, top1_max_loss)
from recsys.models.params import GRU4RecParams
from recsys.sequences import Sequences

CYCLES = [[(s + k) % 4 for k in range(3 + s % 5)] for s in range(24)]  # 0 -> 1 -> 2 -> 3 -> 0 from every start


def _small(**overrides) -> GRU4RecParams:
    settings = dict(layers=(16,), batch_size=8, n_sample=4, n_epochs=10, learning_rate=0.3)
    return GRU4RecParams(**{**settings, **overrides})


def _fit(sequences: list[list[int]], n_items: int, seed: int = 0, **overrides) -> GRU4RecModel:
    return GRU4RecModel.fit(inputs_for_sequences(Sequences.from_lists(sequences), n_items, seed=seed), _small(**overrides))


def _random_net(n_items: int, seed: int, **overrides) -> GRU4RecNet:
    net = GRU4RecNet(n_items, _small(**overrides))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():  # biases too, so no identity holds by accident of zeros
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return net.eval()


# -- session-parallel mini-batches ----------------------------------------------------------------

def test_batches_of_hand_made_sessions_slot_by_slot():
    # lengths 3, 2, 1, 4, 2, 3: session 2 (one item) gives no step; two slots
    offsets = np.array([0, 3, 5, 6, 10, 12, 15])
    steps = list(session_parallel_batches(offsets, batch_size=2))
    assert [s.sessions.tolist() for s in steps] == [[0, 1], [0, 3], [4, 3], [5, 3], [5]]
    assert [s.slots.tolist() for s in steps] == [[0, 1], [0, 1], [0, 1], [0, 1], [0]]
    assert [s.inputs.tolist() for s in steps] == [[0, 3], [1, 6], [10, 7], [12, 8], [13]]
    assert [s.reset.tolist() for s in steps] == [[True, True], [False, True], [True, False], [True, False], [False]]
    assert [s.carry.tolist() for s in steps] == [[0, 1], [0, 1], [0, 1], [0, 1], [0]]
    for s in steps:
        assert (s.targets == s.inputs + 1).all()


def test_when_sessions_run_out_the_batch_shrinks_and_later_rows_keep_their_state():
    offsets = np.array([0, 4, 6, 10, 12])  # lengths 4, 2, 4, 2 in three slots
    steps = list(session_parallel_batches(offsets, batch_size=3))
    assert [s.sessions.tolist() for s in steps] == [[0, 1, 2], [0, 3, 2], [0, 2]]
    assert [s.slots.tolist() for s in steps] == [[0, 1, 2], [0, 1, 2], [0, 2]]
    assert [s.carry.tolist() for s in steps] == [[0, 1, 2], [0, 1, 2], [0, 2]]  # slot 1 is dropped, slot 2 kept
    assert [s.reset.tolist() for s in steps] == [[True] * 3, [False, True, False], [False, False]]
    assert [s.inputs.tolist() for s in steps] == [[0, 4, 6], [1, 10, 7], [2, 8]]


def test_every_next_item_is_predicted_once_and_states_reset_exactly_at_session_starts():
    rng = np.random.default_rng(5)
    lengths = rng.integers(0, 7, size=60)
    offsets = np.r_[0, np.cumsum(lengths)]
    owner = np.repeat(np.arange(len(lengths)), lengths)
    seen, slot_session, order = [], {}, []
    previous_slots = None
    for step in session_parallel_batches(offsets, batch_size=5):
        assert len(step.inputs) <= 5
        assert (owner[step.inputs] == step.sessions).all() and (owner[step.targets] == step.sessions).all()
        assert (step.targets == step.inputs + 1).all()
        assert (step.reset == (step.inputs == offsets[step.sessions])).all()  # reset <=> the session's first item
        if previous_slots is not None:
            assert (previous_slots[step.carry] == step.slots).all()  # each row continues its own slot
        for slot, session, reset in zip(step.slots, step.sessions, step.reset):
            assert reset == (slot_session.get(slot) != session)  # a slot changes session exactly at a reset
            if reset:
                order.append(session)
            slot_session[slot] = session
        previous_slots = step.slots
        seen += step.targets.tolist()
    expected = [p for s in range(len(lengths)) if lengths[s] >= 2 for p in range(offsets[s] + 1, offsets[s + 1])]
    assert sorted(seen) == expected
    assert order == [s for s in range(len(lengths)) if lengths[s] >= 2]  # sessions enter in their order


def test_no_batch_without_a_session_of_two_items():
    assert list(session_parallel_batches(np.array([0, 1, 2]), 4)) == []


# -- losses over a sampled score matrix -------------------------------------------------------------

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _negatives_softmax(row: np.ndarray, i: int) -> np.ndarray:
    weights = np.array([0.0 if j == i else np.exp(row[j]) for j in range(len(row))])
    return weights / weights.sum()


SCORES = np.random.default_rng(2).normal(0, 1.5, size=(3, 7))  # 3 targets + 4 samples


def test_cross_entropy_is_minus_log_softmax_of_each_rows_target():
    expected = [-np.log(np.exp(SCORES[i, i]) / np.exp(SCORES[i]).sum()) for i in range(3)]
    assert cross_entropy_loss(torch.tensor(SCORES)).numpy() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("bpreg", [0.0, 1.0, 0.3])
def test_bpr_max_matches_the_formula(bpreg):
    expected = []
    for i in range(3):
        s = _negatives_softmax(SCORES[i], i)
        ranking = sum(s[j] * _sigmoid(SCORES[i, i] - SCORES[i, j]) for j in range(7) if j != i)
        expected.append(-np.log(ranking) + bpreg * sum(s[j] * SCORES[i, j] ** 2 for j in range(7) if j != i))
    assert bpr_max_loss(torch.tensor(SCORES), bpreg).numpy() == pytest.approx(expected, rel=1e-9)


def test_top1_max_matches_the_formula():
    expected = []
    for i in range(3):
        s = _negatives_softmax(SCORES[i], i)
        expected.append(sum(s[j] * (_sigmoid(SCORES[i, j] - SCORES[i, i]) + _sigmoid(SCORES[i, j] ** 2))
                            for j in range(7) if j != i))
    assert top1_max_loss(torch.tensor(SCORES)).numpy() == pytest.approx(expected, rel=1e-9)


def test_losses_fall_when_the_target_rises():
    better = SCORES.copy()
    better[np.arange(3), np.arange(3)] += 2.0
    for loss in (cross_entropy_loss, lambda o: bpr_max_loss(o, 1.0), top1_max_loss):
        assert (loss(torch.tensor(better)) < loss(torch.tensor(SCORES))).all()


# -- the network ----------------------------------------------------------------------------------

def test_sampled_scores_are_state_times_the_outputs_embeddings_plus_bias():
    net = _random_net(9, seed=1)
    state = torch.randn(3, 16, generator=torch.Generator().manual_seed(3))
    outputs = torch.tensor([4, 0, 4, 8, 2])
    W, b = net.Wy.detach().numpy(), net.By.detach().numpy()[:, 0]
    expected = state.numpy() @ W[outputs.numpy()].T + b[outputs.numpy()]
    assert net.sampled_scores(state, outputs).detach().numpy() == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("constrained, embedding", [(True, 0), (False, 0), (False, 5)])
def test_a_gru_step_follows_the_papers_equations(constrained, embedding):
    net = _random_net(6, seed=2, layers=(4, 3), constrained_embedding=constrained, embedding=embedding)
    items = torch.tensor([5, 1])
    hidden = [torch.randn(2, 4, generator=torch.Generator().manual_seed(4)), torch.randn(2, 3)]
    got = [h.detach().numpy() for h in net.step(items, hidden)]
    p = {name: v.detach().numpy() for name, v in net.named_parameters()}
    if constrained:
        x = p["Wy"][items.numpy()]
    elif embedding:
        x = p["E"][items.numpy()]
    else:
        x = np.eye(6)[items.numpy()]  # one-hot
    for i, h in enumerate(h.numpy() for h in hidden):
        units = h.shape[1]
        proj = x @ p[f"w_in.{i}"] + p[f"bias.{i}"]
        rz = h @ p[f"w_rz.{i}"]
        r, z = _sigmoid(proj[:, units:2 * units] + rz[:, :units]), _sigmoid(proj[:, 2 * units:] + rz[:, units:])
        x = (1 - z) * h + z * np.tanh(proj[:, :units] + (r * h) @ p[f"w_h.{i}"])
        assert got[i] == pytest.approx(x, rel=1e-5, abs=1e-6)


def test_adagrad_with_momentum_updates_dense_and_only_the_touched_rows_of_sparse_weights():
    dense, table = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(4, 1))
    opt = AdagradMomentum([dense, table], lr=0.1, momentum=0.5)
    acc, mom, expected = np.zeros(2), np.zeros(2), np.ones(2)
    for g in ([1.0, -2.0], [0.5, 3.0]):
        opt.zero_grad()
        loss = (dense * torch.tensor(g)).sum() + torch.nn.functional.embedding(torch.tensor([1, 1]), table, sparse=True).sum()
        loss.backward()
        opt.step()
        acc += np.square(g)
        mom = 0.5 * mom - 0.1 * np.array(g) / np.sqrt(acc + 1e-6)
        expected += mom
    assert dense.detach().numpy() == pytest.approx(expected, rel=1e-6)
    row = 1.0 - 0.1 * 2 / np.sqrt(4 + 1e-6)  # gradient 2 (row 1 twice), then momentum
    row += 0.5 * (row - 1.0) - 0.1 * 2 / np.sqrt(8 + 1e-6)
    assert table.detach().numpy()[:, 0] == pytest.approx([1.0, row, 1.0, 1.0], rel=1e-6)


def test_negatives_follow_popularity_to_the_alpha_among_seen_items_only():
    counts = np.array([0, 1, 4, 16, 0])
    sampler = NegativeSampler(counts, alpha=0.5, n_sample=1000, rng=np.random.default_rng(0))
    drawn = torch.cat([sampler() for _ in range(20)]).numpy()
    share = np.bincount(drawn, minlength=5) / len(drawn)
    assert share[0] == share[4] == 0
    assert share[1:4] == pytest.approx(np.array([1, 2, 4]) / 7, abs=0.01)


# -- the model ------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [dict(), dict(loss="bpr-max"), dict(loss="top1-max"),
                                       dict(constrained_embedding=False, loss="bpr-max", momentum=0.3),
                                       dict(constrained_embedding=False, embedding=8, dropout_p_hidden=0.1, logq=1.0),
                                       dict(layers=(16, 12), n_sample=0)])
def test_learns_a_cycle_and_ranks_the_true_next_item_first(overrides):
    model = _fit(CYCLES, n_items=6, **overrides)
    test = Sequences.from_lists([[2, 3, 0, 1, 2], [1, 2], [3, 0, 1, 2, 3, 0]])
    scores = model.position_scores(test.items, test.offsets)
    assert scores.shape == (len(test.items), 6) and scores.dtype == np.float32
    assert (scores.argmax(1) == (test.items + 1) % 4).mean() >= 0.9
    assert np.isneginf(scores[:, 4:]).all()  # items 4 and 5 were never seen: never recommended
    assert model.known_items().tolist() == [0, 1, 2, 3]
    assert model.meta["curve"][-1]["loss"] < model.meta["curve"][0]["loss"]
    assert NEXT_ITEM in model.serves


def test_a_row_depends_only_on_its_prefix_and_sequences_do_not_mix():
    model = _fit(CYCLES, n_items=6, n_epochs=2)
    a = Sequences.from_lists([[0, 1, 2, 3, 0], [3, 3], [1]])
    b = Sequences.from_lists([[0, 1, 2, 1, 5], [3, 3], [1]])  # positions 3 and 4 differ
    sa, sb = model.position_scores(a.items, a.offsets), model.position_scores(b.items, b.offsets)
    assert np.array_equal(sa[:3], sb[:3]) and not np.allclose(sa[3], sb[3])
    assert np.array_equal(sa[5:], sb[5:])
    alone = [model.position_scores(a.sequence(s), np.array([0, a.lengths[s]])) for s in range(3)]
    assert np.allclose(sa, np.concatenate(alone), atol=1e-5)
    assert np.allclose(model.last_scores(a.items, a.offsets), sa[a.offsets[1:] - 1], atol=1e-6)


def test_same_seed_same_weights_other_seed_other_weights():
    settings = dict(n_epochs=2, dropout_p_hidden=0.3, dropout_p_embed=0.2)
    first, again, other = (_fit(CYCLES, 6, seed=s, **settings) for s in (3, 3, 4))
    for (name, p), q, r in zip(first.net.named_parameters(), again.net.parameters(), other.net.parameters()):
        assert torch.equal(p, q), name
    assert not torch.equal(first.net.Wy, other.net.Wy)


def test_progress_meta_and_errors():
    calls = []
    inputs = inputs_for_sequences(Sequences.from_lists(CYCLES), 6, seed=1)
    inputs.progress = lambda done, total: calls.append((done, total))
    model = GRU4RecModel.fit(inputs, _small(n_epochs=3))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert [r["epoch"] for r in model.meta["curve"]] == [1, 2, 3] and model.meta["seconds_per_epoch"] >= 0
    assert all(r["events"] == sum(len(c) - 1 for c in CYCLES) for r in model.meta["curve"])
    for bad in (None, Sequences.empty(), Sequences.from_lists([[1], [2]])):
        inputs.sequences = bad
        with pytest.raises(ValueError):
            GRU4RecModel.fit(inputs, _small())


def test_save_and_load_give_identical_scores(tmp_path):
    model = _fit(CYCLES, n_items=6, constrained_embedding=False, layers=(8, 6), recommend_seen=False)
    model.save(tmp_path / "gru4rec")
    inputs = inputs_for_sequences(Sequences.from_lists(CYCLES), 6)
    loaded = GRU4RecModel.load(tmp_path / "gru4rec", inputs)
    test = Sequences.from_lists([[0, 1, 2], [3, 1]])
    assert np.array_equal(loaded.position_scores(test.items, test.offsets), model.position_scores(test.items, test.offsets))
    assert loaded.known_items().tolist() == model.known_items().tolist() and loaded.recommend_seen is False
    assert loaded.meta["curve"] == model.meta["curve"]
    neighbours, _ = loaded.similar(np.array([0, 5]), 2)
    assert neighbours[0, 0] == 1 and neighbours[1].tolist() == [-1, -1]  # item 5 unseen: no neighbours
