"""AttRec (recsys.models.attrec): the attention mask, the score and the loss against direct computations,
no look-ahead, determinism, learning a deterministic pattern, persistence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsys.catalog import Catalog
from recsys.models.attrec import AttRecModel, attention_weights, hinge_loss, prefix_windows, timing_signal, \
    training_windows
from recsys.models.base import TrainingInputs
from recsys.models.params import AttRecParams
from recsys.sequences import Sequences


def _inputs(sequences: list[list[int]], n_items: int, seed: int = 3, users: list[str] | None = None) -> TrainingInputs:
    """Only what a sequence model reads: the catalogue (for ``n_items``) and the sequences."""
    ids = np.array([f"i{i}" for i in range(n_items)], dtype=object)
    catalog = Catalog(ids, n_items, np.full(n_items, None, object), np.full(n_items, None, object), np.full(n_items, np.nan))
    inputs = TrainingInputs(None, catalog, None, seed=seed, threads=1)
    inputs.sequences = Sequences.from_lists(sequences, users)
    return inputs


def _params(**overrides) -> AttRecParams:
    settings = dict(L=3, T=2, dim=8, epochs=2, batch_size=4, init_std=0.3, l2=0.0)
    return AttRecParams(**{**settings, **overrides})


SMALL = [[0, 1, 2, 3, 4], [2, 3, 5], [6, 1], [4, 0, 2, 6, 5, 1]]


# -- the pieces -------------------------------------------------------------------------------------------

def test_attention_gives_padding_nothing_and_real_rows_sum_to_one():
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(3, 4, 5, generator=generator)
    k = torch.randn(3, 4, 5, generator=generator)
    valid = torch.tensor([[False, False, True, True], [True, True, True, True], [False, False, False, True]])
    w = attention_weights(q, k, valid)
    assert w.shape == (3, 4, 4) and torch.isfinite(w).all()
    assert (w[:, :, :][~valid[:, None, :].expand(-1, 4, -1)] == 0).all()  # no query attends to a padded key
    assert (w[~valid] == 0).all()  # a padded query has no row
    np.testing.assert_allclose(w.sum(2)[valid].numpy(), 1.0, rtol=1e-6)
    diagonal = torch.diagonal(w, dim1=1, dim2=2)
    assert (diagonal[:2] == 0).all()  # the paper's mask: never the query's own key ...
    assert diagonal[2, 3] == 1.0  # ... unless it is the window's only real item
    # the weights are the softmax of the scaled logits over the allowed keys: row 2 of window 1 by hand
    logits = (q[1, 2] @ k[1].T / math.sqrt(5)).numpy()
    expected = np.exp(logits[[0, 1, 3]] - logits[[0, 1, 3]].max())
    np.testing.assert_allclose(w[1, 2, [0, 1, 3]].numpy(), expected / expected.sum(), rtol=1e-5)
    without = attention_weights(q, k, valid, mask_diagonal=False)
    assert (torch.diagonal(without, dim1=1, dim2=2)[1] > 0).all()


def test_timing_signal_is_the_transformer_sinusoids():
    signal = timing_signal(5, 7).numpy()
    assert signal.shape == (5, 7) and (signal[:, 6] == 0).all()  # odd width: one zero channel
    inverse = np.exp(-np.arange(3) * math.log(1e4) / 2)
    np.testing.assert_allclose(signal[:, :3], np.sin(np.arange(5)[:, None] * inverse), atol=1e-6)
    np.testing.assert_allclose(signal[:, 3:6], np.cos(np.arange(5)[:, None] * inverse), atol=1e-6)


def test_windows_cut_every_position_and_pad_both_ends():
    sequences = Sequences.from_lists([[10, 11, 12, 13], [20, 21], [30]])
    owner, inputs, targets = training_windows(sequences, window=2, targets=2, pad=99)
    assert owner.tolist() == [0, 0, 0, 1]
    assert inputs.tolist() == [[99, 10], [10, 11], [11, 12], [99, 20]]
    assert targets.tolist() == [[11, 12], [12, 13], [13, -1], [21, -1]]
    assert prefix_windows(sequences.items, sequences.offsets, 2, 99).tolist() == \
        [[99, 10], [10, 11], [11, 12], [12, 13], [99, 20], [20, 21], [99, 30]]


def test_hinge_loss_matches_a_direct_sum():
    rng = np.random.default_rng(1)
    positive, negative = rng.random((4, 3)), rng.random((4, 3, 2))
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], bool)
    expected = sum(max(0.0, 0.3 + positive[b, t] - negative[b, t, k])
                   for b in range(4) for t in range(3) for k in range(2) if mask[b, t]) / 4
    got = hinge_loss(torch.tensor(positive), torch.tensor(negative), torch.tensor(mask), margin=0.3)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert expected > 0 and hinge_loss(torch.tensor(positive), torch.tensor(negative) + 5.0, torch.tensor(mask), 0.3).item() == 0.0


# -- scores -----------------------------------------------------------------------------------------------

def _numpy_scores(model: AttRecModel, window: list[int], user: int | None) -> np.ndarray:
    """``-y`` over all items for one left-padded window, straight from the paper's equations."""
    net, L, omega = model.net, model.params.L, model.params.omega
    X = net.short.detach().numpy()[:-1]
    V, U, W = net.long.detach().numpy(), net.users.detach().numpy(), net.project.detach().numpy()
    real = [i for i in window if i != net.pad]
    values = X[real]  # (n, d)
    d = X.shape[1]
    half = d // 2
    inverse = np.exp(-np.arange(half) * math.log(1e4) / max(half - 1, 1))
    positions = np.arange(L - len(real), L)[:, None] * inverse
    te = np.concatenate([np.sin(positions), np.cos(positions)], 1)
    qk = np.maximum((values + te) @ W, 0.0)
    logits = qk @ qk.T / math.sqrt(d)
    if len(real) > 1:
        np.fill_diagonal(logits, -np.inf)
    weights = np.exp(logits - logits.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    m = (weights @ values).mean(0)
    short = ((m[None, :] - X) ** 2).sum(1)
    if user is None:
        return -short
    return -(omega * ((U[user][None, :] - V) ** 2).sum(1) + (1 - omega) * short)


def test_position_scores_are_the_negated_paper_distance():
    inputs = _inputs(SMALL, n_items=7, users=["a", "b", "c", "d"])
    model = AttRecModel.fit(inputs, _params(omega=0.3))
    seq = Sequences.from_lists([[0, 1, 2, 3, 4], [5]], users=["b", "stranger"])
    scores = model.position_scores(seq.items, seq.offsets, seq.users)
    assert scores.shape == (6, 7) and scores.dtype == np.float32
    user_b = model.trained_users.tolist().index("b")
    windows = prefix_windows(seq.items, seq.offsets, 3, model.net.pad)
    for p in range(5):
        np.testing.assert_allclose(scores[p], _numpy_scores(model, windows[p].tolist(), user_b), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores[5], _numpy_scores(model, windows[5].tolist(), None), rtol=1e-4, atol=1e-5)
    anonymous = model.position_scores(seq.items, seq.offsets, None)
    np.testing.assert_allclose(anonymous[2], _numpy_scores(model, windows[2].tolist(), None), rtol=1e-4, atol=1e-5)
    assert not np.allclose(anonymous[2], scores[2])  # the user's long-term term does change the row


def test_no_row_sees_a_later_item_or_another_sequence():
    model = AttRecModel.fit(_inputs(SMALL, n_items=7), _params())
    items = np.array([0, 1, 2, 3, 4, 5, 6, 1], np.int64)
    offsets = np.array([0, 5, 8], np.int64)
    users = np.array(["u0", "u3"], dtype=object)
    base = model.position_scores(items, offsets, users)
    for changed in range(len(items)):
        other = items.copy()
        other[changed] = (other[changed] + 3) % 7
        again = model.position_scores(other, offsets, users)
        sequence_end = offsets[np.searchsorted(offsets, changed, side="right")]
        unchanged = np.r_[np.arange(0, changed), np.arange(sequence_end, len(items))]
        np.testing.assert_array_equal(again[unchanged], base[unchanged])
        assert not np.array_equal(again[changed], base[changed])  # the changed position itself does matter
    np.testing.assert_array_equal(model.last_scores(items, offsets, users), base[[4, 7]])


# -- training -----------------------------------------------------------------------------------------------

def test_same_seed_same_weights_other_seed_other_weights():
    params = _params(epochs=2)
    first = AttRecModel.fit(_inputs(SMALL, n_items=7, seed=5), params)
    second = AttRecModel.fit(_inputs(SMALL, n_items=7, seed=5), params)
    third = AttRecModel.fit(_inputs(SMALL, n_items=7, seed=6), params)
    for name, p in first.net.named_parameters():
        assert torch.equal(p, dict(second.net.named_parameters())[name])
        assert not torch.equal(p, dict(third.net.named_parameters())[name])
    assert first.meta["curve"] == [{**c, "seconds": s["seconds"]} for c, s in zip(second.meta["curve"], first.meta["curve"])]
    assert first.meta["epochs"] == 2 and first.known_items().tolist() == list(range(7))


def test_a_deterministic_successor_pattern_is_learnt():
    n_items = 12
    successor = np.random.default_rng(0).permutation(n_items)  # item i is always followed by successor[i]
    sequences = []
    for s in range(12):
        item, sequence = s % n_items, []
        for _ in range(10):
            sequence.append(int(item))
            item = successor[item]
        sequences.append(sequence)
    inputs = _inputs(sequences, n_items=n_items, seed=2)
    model = AttRecModel.fit(inputs, AttRecParams(L=2, T=1, dim=16, epochs=60, batch_size=16, lr=0.02, init_std=0.1,
                                                 negatives=3, l2=0.0))
    seq = inputs.sequences
    prefix_end, target_at = seq.positions()
    scores = model.position_scores(seq.items, seq.offsets, None)[prefix_end]
    # Ranked, as the paper ranks, among the items the user did not just have: the short-term intent is a
    # mean of the window's own embeddings, which are the targets' embeddings too, so the window's items
    # sit closest to it; the successor must come next.
    window = prefix_windows(seq.items, seq.offsets, 2, n_items)[prefix_end]
    rows = np.repeat(np.arange(len(scores)), 2)
    real = window.ravel() < n_items
    scores[rows[real], window.ravel()[real]] = -np.inf
    ranks = (scores > scores[np.arange(len(scores)), seq.items[target_at]][:, None]).sum(1) + 1
    assert np.mean(ranks <= 3) >= 0.9, np.bincount(ranks)
    assert np.mean(ranks == 1) >= 0.4, np.bincount(ranks)  # chance: 1 in 10
    losses = [c["loss"] for c in model.meta["curve"]]
    assert losses[-1] < 0.6 * losses[0]


def test_fit_refuses_missing_or_empty_sequences():
    inputs = _inputs([[0, 1]], n_items=2)
    inputs.sequences = None
    with pytest.raises(ValueError, match="sequences"):
        AttRecModel.fit(inputs, _params())
    inputs.sequences = Sequences.empty()
    with pytest.raises(ValueError, match="sequences"):
        AttRecModel.fit(inputs, _params())
    with pytest.raises(ValueError, match="two items"):
        AttRecModel.fit(_inputs([[0], [1]], n_items=2), _params())


def test_save_and_load_give_identical_scores(tmp_path):
    inputs = _inputs(SMALL, n_items=7)
    model = AttRecModel.fit(inputs, _params())
    model.save(tmp_path / "attrec")
    loaded = AttRecModel.load(tmp_path / "attrec", inputs)
    seq = Sequences.from_lists([[0, 1, 2, 3], [6, 5]], users=["u1", "nobody"])
    np.testing.assert_array_equal(loaded.position_scores(seq.items, seq.offsets, seq.users),
                                  model.position_scores(seq.items, seq.offsets, seq.users))
    assert loaded.known_items().tolist() == model.known_items().tolist()
    assert loaded.meta["curve"] == model.meta["curve"] and loaded.recommend_seen is True
    with np.load(tmp_path / "attrec" / "weights.npz", allow_pickle=False) as arrays:  # no object arrays
        assert arrays["user_ids"].dtype.kind == "U"
    neighbours, _ = loaded.similar(np.array([0, 3]), 2)  # the base class's item-to-item continuation works
    assert neighbours.shape == (2, 2) and (neighbours[0] != 0).all() and (neighbours[1] != 3).all()


def test_an_item_no_training_sequence_holds_is_never_recommended():
    model = AttRecModel.fit(_inputs([[0, 1, 2], [2, 0]], n_items=4), _params())
    scores = model.position_scores(np.array([0, 1]), np.array([0, 2]), None)
    assert np.isneginf(scores[:, 3]).all() and np.isfinite(scores[:, :3]).all()
    assert model.known_items().tolist() == [0, 1, 2]
