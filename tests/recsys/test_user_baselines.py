"""The baselines' user-to-item side (recsys/models/popular.py, recsys/models/item_knn.py): popularity
over the interactions, and RecBole-style item-kNN against a dense brute force on tiny matrices."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recsys.catalog import build_catalog
from recsys.evaluate_users import top_items as dense_top_items
from recsys.interactions import Interactions
from recsys.models import REGISTRY, model_class
from recsys.models.base import ITEM_TO_ITEM, USER_TO_ITEM, TrainingInputs
from recsys.models.item_knn import ItemKNNModel, binary_matrix, column_blocks, top_k_cosine
from recsys.models.params import NoParams
from recsys.transition import TransitionTable

BOTH = frozenset({ITEM_TO_ITEM, USER_TO_ITEM})


def _random(n_users: int, n_items: int, nnz: int, seed: int) -> Interactions:
    """Weighted (1..3) interactions; the last item has no user, so a column of zeros is exercised."""
    rng = np.random.default_rng(seed)
    return Interactions.from_indices(rng.integers(0, n_users, nnz), rng.integers(0, n_items - 1, nnz),
                                     rng.integers(1, 4, nnz).astype(float), n_users=n_users, n_items=n_items,
                                     user_ids=[f"u{n}" for n in range(n_users)], item_ids=[f"i{n}" for n in range(n_items)])


def _chain(n: int = 5) -> TransitionTable:
    """Items 0..n-1, each linked both ways to the next."""
    src, dst = np.r_[np.arange(n - 1), np.arange(1, n)], np.r_[np.arange(1, n), np.arange(n - 1)]
    return TransitionTable.from_edges(np.array([f"g{i}" for i in range(n)], dtype=object), src, dst, np.ones(len(src)))


def _inputs(interactions: Interactions | None, table: TransitionTable | None = None) -> TrainingInputs:
    stats = None if table is None else pa.table({"item_id": table.item_ids.tolist(), "events": list(range(table.n_nodes))})
    catalog = None if table is None else build_catalog(table, None)
    return TrainingInputs(table, catalog, stats, seed=3, threads=1, interactions=interactions)


def _dense(R: Interactions) -> np.ndarray:
    dense = np.zeros((R.n_users, R.n_items))
    dense[R.rows, R.indices] = 1.0
    return dense


def _brute_force_similarity(binary: np.ndarray, k: int) -> np.ndarray:
    """Dense S: column i holds cos(i, j) at row j for i's k most similar j != i (ties to the lower j)."""
    norms = np.sqrt(binary.sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.nan_to_num(binary.T @ binary / np.outer(norms, norms))
    np.fill_diagonal(cosine, 0.0)
    S = np.zeros_like(cosine)
    for i in range(cosine.shape[1]):
        ranked = sorted((j for j in range(cosine.shape[0]) if cosine[j, i] > 0), key=lambda j: (-cosine[j, i], j))
        S[ranked[:k], i] = cosine[ranked[:k], i]
    return S


# -- popular --------------------------------------------------------------------------------------

def test_popular_scores_every_user_by_item_degree_and_serves_what_its_inputs_allow():
    R = _random(n_users=12, n_items=9, nnz=40, seed=0)
    model = model_class("popular").fit(_inputs(R, _chain()), NoParams())
    assert model.serves == BOTH == REGISTRY["popular"].tables
    scores = model.user_scores(np.array([3, 0, 3]))
    assert scores.shape == (3, R.n_items)
    np.testing.assert_array_equal(scores, np.tile(R.item_degrees(), (3, 1)))
    assert scores[0, -1] == 0 and len(set(R.item_degrees())) > 2  # the unused item scores 0; the ranking is not flat
    assert model.user_ids.tolist() == R.user_ids.tolist() and model.item_ids.tolist() == R.item_ids.tolist()
    assert model.similar(np.array([0]), 2)[0].tolist() == [[4, 3]]  # the item side is unchanged

    assert model_class("popular").fit(_inputs(None, _chain()), NoParams()).serves == {ITEM_TO_ITEM}
    user_only = model_class("popular").fit(_inputs(R), NoParams())
    assert user_only.serves == {USER_TO_ITEM}
    np.testing.assert_array_equal(user_only.user_scores(np.array([1])), scores[:1])
    with pytest.raises(ValueError, match="only user_to_item"):
        user_only.similar(np.array([0]), 2)


def test_popular_save_load_gives_identical_scores(tmp_path):
    R = _random(n_users=12, n_items=9, nnz=40, seed=1)
    for name, inputs in (("both", _inputs(R, _chain())), ("users", _inputs(R)), ("items", _inputs(None, _chain()))):
        model = model_class("popular").fit(inputs, NoParams())
        model.save(tmp_path / name)
        loaded = model_class("popular").load(tmp_path / name, inputs)
        assert loaded.serves == model.serves
        if USER_TO_ITEM in model.serves:
            np.testing.assert_array_equal(loaded.user_scores(np.arange(R.n_users)), model.user_scores(np.arange(R.n_users)))
            assert loaded.user_ids.tolist() == R.user_ids.tolist() and loaded.item_ids.tolist() == R.item_ids.tolist()
        if ITEM_TO_ITEM in model.serves:
            nodes = np.arange(5)
            np.testing.assert_array_equal(loaded.similar(nodes, 3)[0], model.similar(nodes, 3)[0])


# -- item_knn ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 100])
def test_item_knn_similarity_matches_a_dense_brute_force_with_top_k_truncation(k):
    R = _random(n_users=30, n_items=14, nnz=90, seed=2)
    binary = binary_matrix(R)
    expected = _brute_force_similarity(_dense(R), k)
    S = top_k_cosine(binary, k)
    np.testing.assert_allclose(S.toarray(), expected, rtol=1e-6, atol=0)
    assert (S.diagonal() == 0).all() and (np.diff(S.tocsc().indptr) <= k).all()
    if k < R.n_items - 1:
        assert (np.count_nonzero(_brute_force_similarity(_dense(R), 100), axis=0) > k).any()  # truncation bites
    # many small column blocks give the very same matrix
    blocks = column_blocks(binary, budget=20)
    assert len(blocks) > 3 and blocks[0][0] == 0 and blocks[-1][1] == R.n_items
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    np.testing.assert_array_equal(top_k_cosine(binary, k, budget=20).toarray(), S.toarray())


def test_item_knn_user_scores_sum_the_similarities_of_the_history():
    R = _random(n_users=25, n_items=12, nnz=70, seed=3)
    model = ItemKNNModel(None, R, k=2)
    assert model.serves == {USER_TO_ITEM}
    users = np.array([4, 0, 17, 4])
    scores = model.user_scores(users)
    assert scores.shape == (4, R.n_items) and scores.dtype == np.float32
    expected = _dense(R)[users] @ _brute_force_similarity(_dense(R), 2)  # binary history: the weights do not count
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert (scores > 0).any() and (scores == 0).any()
    with pytest.raises(ValueError, match="without the inputs of item_to_item"):
        model.similar(np.array([0]), 2)


def test_item_knn_serves_what_its_inputs_allow_and_keeps_the_item_side():
    R = _random(n_users=20, n_items=10, nnz=50, seed=4)
    both = model_class("item_knn").fit(_inputs(R, _chain()), NoParams())
    items_only = model_class("item_knn").fit(_inputs(None, _chain()), NoParams())
    assert both.serves == BOTH == REGISTRY["item_knn"].tables and items_only.serves == {ITEM_TO_ITEM}
    nodes = np.arange(5)
    np.testing.assert_array_equal(both.similar(nodes, 3)[0], items_only.similar(nodes, 3)[0])
    assert both.user_scores(np.array([0])).shape == (1, R.n_items)
    assert model_class("item_knn").fit(_inputs(R), NoParams()).meta["k"] == 100
    with pytest.raises(ValueError, match="needs the item graph, the interactions"):
        model_class("item_knn").fit(_inputs(None), NoParams())


def test_item_knn_save_load_gives_identical_scores(tmp_path):
    R = _random(n_users=20, n_items=10, nnz=50, seed=5)
    for name, inputs in (("both", _inputs(R, _chain())), ("users", _inputs(R)), ("items", _inputs(None, _chain()))):
        model = model_class("item_knn").fit(inputs, NoParams())
        model.save(tmp_path / name)
        assert not any(p.suffix == ".pkl" for p in (tmp_path / name).iterdir())
        loaded = model_class("item_knn").load(tmp_path / name, inputs)
        assert loaded.serves == model.serves
        if USER_TO_ITEM in model.serves:
            users = np.arange(R.n_users)
            np.testing.assert_array_equal(loaded.user_scores(users), model.user_scores(users))
            assert loaded.user_ids.tolist() == R.user_ids.tolist() and loaded.item_ids.tolist() == R.item_ids.tolist()
        if ITEM_TO_ITEM in model.serves:
            nodes = np.arange(5)
            np.testing.assert_array_equal(loaded.similar(nodes, 3)[0], model.similar(nodes, 3)[0])
            np.testing.assert_array_equal(loaded.pair_scores(nodes, nodes[::-1]), model.pair_scores(nodes, nodes[::-1]))
    without_graph = model_class("item_knn").load(tmp_path / "both", _inputs(R))  # only the stored user side comes back
    assert without_graph.serves == {USER_TO_ITEM}
    np.testing.assert_array_equal(without_graph.user_scores(np.arange(R.n_users)), model_class("item_knn").fit(
        _inputs(R), NoParams()).user_scores(np.arange(R.n_users)))


# -- top items: sparse ranking against the dense reference --------------------------------------------

@pytest.mark.parametrize("name, n", [("popular", 4), ("popular", 40), ("item_knn", 3), ("item_knn", 40)])
def test_top_items_without_a_dense_row_equal_the_dense_ranking(name, n):
    """``exact_top_items`` ranks from each user's own entries and one shared list; the reference scores
    every item (``user_scores``) and ranks the dense rows. Same items, order, scores and padding."""
    R = _random(n_users=60, n_items=30, nnz=300, seed=6)
    model = model_class(name).fit(_inputs(R), NoParams())
    users = np.r_[np.arange(R.n_users)[::-1], [5]]
    for exclude in (None, R):
        items, scores = model.exact_top_items(users, n, exclude, batch_size=16)
        expected_items, expected_scores = dense_top_items(model, users, n, exclude)
        np.testing.assert_array_equal(items, expected_items)
        np.testing.assert_array_equal(scores, expected_scores)
    assert (items == -1).any() == (n > R.n_items - np.diff(R.indptr).max())  # n beyond what is left: padded
