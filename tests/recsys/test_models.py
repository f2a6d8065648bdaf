"""Models behind the registry: interface contracts on tiny inputs, word2vec on the sample's walks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recsys.catalog import build_catalog
from recsys.config import TrainConfig, WalksConfig
from recsys.models import REGISTRY, model_class
from recsys.models.params import NoParams, Word2VecParams
from recsys.models.base import TrainingInputs, top_n_rows
from recsys.models.embedding import EmbeddingModel
from recsys.transition import TransitionTable
from recsys.walks import generate_walks_local


def _inputs(tmp_path, table: TransitionTable, events: list[int], walks: pa.Table | None = None) -> TrainingInputs:
    """In memory, as the train stage hands them over: no file is written."""
    stats = pa.table({"item_id": table.item_ids.tolist(), "events": events})
    return TrainingInputs(table, build_catalog(table, None), stats,
                          walks.column("walk").combine_chunks() if walks is not None else None, seed=5, threads=1)


def _two_cliques(size: int = 6) -> TransitionTable:
    """Two cliques joined by nothing: items 0..size-1 and size..2*size-1."""
    edges = [(a, b) for g in (0, size) for a in range(g, g + size) for b in range(g, g + size) if a != b]
    ids = np.array([f"i{n:02d}" for n in range(2 * size)], dtype=object)
    return TransitionTable.from_edges(ids, np.array([e[0] for e in edges]), np.array([e[1] for e in edges]), np.ones(len(edges)))


def test_top_n_rows_orders_pads_and_skips_infinite():
    scores = np.array([[0.1, 0.9, -np.inf, 0.5], [0.2, 0.2, 0.1, 0.0]])
    idx, val = top_n_rows(scores, 5)
    assert idx.tolist() == [[1, 3, 0, -1, -1], [0, 1, 2, 3, -1]]
    assert val[0, :3].tolist() == pytest.approx([0.9, 0.5, 0.1])


def test_popular_recommends_most_popular_never_itself(tmp_path):
    table = _two_cliques()
    model = model_class("popular").fit(_inputs(tmp_path, table, list(range(12))), NoParams())
    idx, _ = model.similar(np.array([11, 0]), 3)
    assert idx.tolist() == [[10, 9, 8], [11, 10, 9]]
    assert model.pair_scores(np.array([0, -1]), np.array([11, 11])).tolist() == [pytest.approx(np.log1p(11)), 0.0]


def test_item_knn_neighbours_are_co_occurring_items(tmp_path):
    table = _two_cliques()
    model = model_class("item_knn").fit(_inputs(tmp_path, table, [1] * 12), NoParams())
    idx, val = model.similar(np.array([0, 7]), 8)
    assert set(idx[0][idx[0] >= 0]) == {1, 2, 3, 4, 5} and (idx[0][5:] == -1).all()
    assert set(idx[1][idx[1] >= 0]) == {6, 8, 9, 10, 11}
    scores = model.pair_scores(np.array([0, 0, 0]), np.array([1, 7, -1]))
    assert scores[0] > 0 and scores[1] == 0 and scores[2] == 0


def test_word2vec_separates_two_cliques_and_is_deterministic(tmp_path):
    table = _two_cliques()
    walks = generate_walks_local(table, WalksConfig(walks_per_node=30, walk_length=10), seed=1)
    config = Word2VecParams(vector_size=8, epochs=10, window=3)
    inputs = _inputs(tmp_path, table, [1] * 12, walks)
    model = model_class("word2vec").fit(inputs, config)
    again = model_class("word2vec").fit(inputs, config)

    assert np.array_equal(model.left, again.left)  # one thread + seed -> identical vectors
    idx, _ = model.similar(np.arange(12), 5)
    same_clique = (idx // 6) == (np.arange(12) // 6)[:, None]
    assert same_clique.mean() > 0.9
    assert (idx != np.arange(12)[:, None]).all()


def test_word2vec_trains_fewer_epochs_when_the_corpus_exceeds_max_trained_words(tmp_path):
    params = Word2VecParams(epochs=5, max_trained_words=40_000_000)
    assert [params.epochs_for(n) for n in (1000, 8_000_000, 8_000_001, 18_000_000, 50_000_000)] == [5, 5, 4, 2, 1]
    assert params.model_copy(update={"max_trained_words": None}).epochs_for(10**9) == 5

    table = _two_cliques()
    walks = generate_walks_local(table, WalksConfig(walks_per_node=30, walk_length=10), seed=1)
    steps = 12 * 30 * 10  # every node has neighbours: no walk ends early
    inputs = _inputs(tmp_path, table, [1] * 12, walks)
    full = model_class("word2vec").fit(inputs, Word2VecParams(vector_size=8, epochs=10, window=3))
    capped = model_class("word2vec").fit(inputs, Word2VecParams(vector_size=8, epochs=10, window=3,
                                                                max_trained_words=3 * steps + 1))
    assert (full.meta["epochs_trained"], capped.meta["epochs_trained"]) == (10, 3)
    assert not np.array_equal(full.left, capped.left)


def test_word2vec_iterator_mode_trains_too(tmp_path):
    table = _two_cliques()
    walks = generate_walks_local(table, WalksConfig(walks_per_node=30, walk_length=10), seed=1)
    config = Word2VecParams(vector_size=8, epochs=10, window=3, input_mode="iterator")
    model = model_class("word2vec").fit(_inputs(tmp_path, table, [1] * 12, walks), config)
    within = model.pair_scores(np.array([0, 6]), np.array([1, 7]))
    across = model.pair_scores(np.array([0, 6]), np.array([7, 1]))
    assert within.min() > across.max()


def test_embedding_model_round_trips_without_pickle(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    model = EmbeddingModel("x", vectors, np.array([1, 1, 0, 1, 1], bool))
    model.save(tmp_path / "m")
    loaded = EmbeddingModel.load(tmp_path / "m", None)
    assert np.array_equal(loaded.left, model.left) and loaded.name == "x"
    idx, _ = loaded.similar(np.array([2, 0]), 4)
    assert (idx[0] == -1).all() and 2 not in idx[1] and 0 not in idx[1]


def test_every_registered_model_resolves_to_a_model_with_its_params_in_the_config():
    from recsys.models.base import Model

    config = TrainConfig()
    for name, spec in REGISTRY.items():
        cls = model_class(name)
        assert issubclass(cls, Model) and cls.serves and cls.fit.__func__ is not Model.fit.__func__, name
        assert isinstance(config.params_for(name), spec.params), name


def test_item_knn_similar_ranks_by_cosine_with_ties_to_the_lower_item_even_at_the_cut(tmp_path, monkeypatch):
    from recsys.models import item_knn

    rng = np.random.default_rng(4)
    n_items = 40
    src, dst = np.nonzero(rng.random((n_items, n_items)) < 0.3)
    keep = src != dst
    weights = rng.integers(1, 3, keep.sum()).astype(float)  # few distinct weights: many tied cosines
    table = TransitionTable.from_edges(np.array([f"i{n:02d}" for n in range(n_items)], dtype=object),
                                       src[keep], dst[keep], weights)
    model = model_class("item_knn").fit(_inputs(tmp_path, table, [1] * n_items), NoParams())
    nodes = np.array([3, -1, 0, 39, 3, n_items, 17])
    expected_idx = np.full((len(nodes), 6), -1)
    for row, node in enumerate(nodes):
        if 0 <= node < n_items:
            lo, hi = model.indptr[node], model.indptr[node + 1]
            best = sorted(zip(-model.cosine[lo:hi], model.indices[lo:hi]))[:6]
            expected_idx[row, :len(best)] = [item for _, item in best]
    monkeypatch.setattr(item_knn, "SIMILAR_ENTRIES", 7)  # several groups of nodes
    for n in (6, 0):
        idx, val = model.similar(nodes, n)
        np.testing.assert_array_equal(idx, expected_idx[:, :n])
        assert (val[idx < 0] == 0).all() and (np.diff(val, axis=1)[idx[:, 1:] >= 0] <= 0).all()
        np.testing.assert_array_equal(val[idx >= 0], model.pair_scores(np.repeat(nodes, n)[idx.ravel() >= 0],
                                                                       idx[idx >= 0]))
