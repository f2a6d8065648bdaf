"""Approximate top-N (``recsys.ann``) against the exact top-N on small clustered catalogues: recall, the
anchor and seen items left out, determinism, the ``publish.ann_min_items`` switch, and the recall figure
reaching the publish result and the report."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recsys.ann import VectorSearch, euclidean_items, euclidean_queries, recall_at_n
from recsys.catalog import Catalog
from recsys.config import PublishConfig
from recsys.interactions import Interactions
from recsys.models.embedding import EmbeddingModel
from recsys.models.mf_bpr import FactorModel
from recsys.publish import PublishResult, item_to_item_table, searched_item_to_item_table, \
    searched_user_to_item_table, user_to_item_table
from recsys.report import search_text
from tasks.stages import publication_text

N = 20


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Vectors around ``clusters`` random centres (trained item embeddings are grouped like this)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


def catalog_of(n: int) -> Catalog:
    none = np.full(n, None, dtype=object)
    return Catalog(np.array([f"i{i:05d}" for i in range(n)], dtype=object), n, none, none, np.full(n, np.nan))


def cosine_model(n: int = 3000, seed: int = 1, **kwargs) -> EmbeddingModel:
    return EmbeddingModel("word2vec", clustered(n, 16, 60, seed), np.ones(n, bool), **kwargs)


def dot_model(n: int = 3000, seed: int = 2) -> EmbeddingModel:
    """An ``mf_*``-like model: distinct left and right vectors (with a bias column), scored by their dot product."""
    left, right = clustered(n, 16, 60, seed), clustered(n, 16, 60, seed + 1)
    bias = np.random.default_rng(seed).normal(0, 0.3, (n, 1)).astype(np.float32)
    return EmbeddingModel("mf_walks", np.hstack([left, np.ones((n, 1), np.float32)]), np.ones(n, bool),
                          right=np.hstack([right, bias]))


def test_approximate_top_n_reaches_the_exact_top_n_and_never_names_the_anchor():
    model = cosine_model()
    nodes = np.arange(3000)
    exact, exact_scores = model.exact_similar(nodes, N)
    assert model.approximate_search(min_items=1) is not None
    found, scores = model.similar(nodes, N)
    assert recall_at_n(found, exact) >= 0.95
    assert not (found == nodes[:, None]).any()
    assert (found >= 0).all() and (np.diff(scores, axis=1) <= 0).all()  # full rows, best first
    same = found == exact  # where both name the same item at a rank, they give it the same score
    np.testing.assert_allclose(scores[same], exact_scores[same], rtol=1e-5, atol=1e-6)


def test_dot_scoring_models_search_the_inner_product():
    model = dot_model()
    nodes = np.arange(0, 3000, 3)
    exact, _ = model.exact_similar(nodes, N)
    model.approximate_search(min_items=1)
    found, scores = model.similar(nodes, N)
    assert recall_at_n(found, exact) >= 0.95
    expected = np.einsum("ij,ikj->ik", model.left[nodes], model.right[found])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_only_recommendable_items_are_found_and_a_cold_anchor_gets_a_full_row():
    recommendable = np.arange(3000) % 4 != 0  # every fourth item is "cold": it has a vector but is never recommended
    model = cosine_model(recommendable=recommendable)
    nodes = np.arange(0, 3000, 7)
    exact, _ = model.exact_similar(nodes, N)
    model.approximate_search(min_items=1)
    found, _ = model.similar(nodes, N)
    assert recall_at_n(found, exact) >= 0.95
    assert recommendable[found].all() and (found >= 0).all() and not (found == nodes[:, None]).any()


def test_ties_go_to_the_lower_index_like_the_exact_path():
    vectors = np.repeat(np.eye(4, dtype=np.float32), 10, axis=0)  # 4 groups of 10 identical vectors
    model = EmbeddingModel("word2vec", vectors, np.ones(40, bool), normalized=True)
    model.approximate_search(min_items=1)
    found, scores = model.similar(np.array([0, 15]), 12)
    assert found[0].tolist()[:9] == list(range(1, 10)) and found[1].tolist()[:9] == [10, 11, 12, 13, 14, 16, 17, 18, 19]
    assert (scores[:, :9] == 1.0).all()
    np.testing.assert_array_equal(found[:, :9], model.exact_similar(np.array([0, 15]), 12)[0][:, :9])


def test_two_builds_give_identical_tables_whatever_the_search_threads():
    first, second = cosine_model(), cosine_model()
    first.approximate_search(min_items=1, threads=1)
    second.approximate_search(min_items=1, threads=2)
    a, b = item_to_item_table(first, catalog_of(3000), N, "r1"), item_to_item_table(second, catalog_of(3000), N, "r1")
    assert a.equals(b)


def test_the_threshold_switches_between_exact_and_approximate_search():
    model = cosine_model(n=500)
    nodes = np.arange(500)
    exact = model.exact_similar(nodes, N)
    for off in (0, 501):  # 0: always exact; above the catalogue: exact
        assert model.approximate_search(min_items=off) is None
        np.testing.assert_array_equal(model.similar(nodes, N)[0], exact[0])
    assert model.approximate_search(min_items=500) is not None  # at the threshold: approximate
    assert PublishConfig().ann_min_items == 50_000 and PublishConfig(ann_min_items=0).ann_min_items == 0
    table, summary = searched_item_to_item_table(cosine_model(n=500), catalog_of(500), N, "r1", ann_min_items=0)
    assert summary is None and table.equals(item_to_item_table(cosine_model(n=500), catalog_of(500), N, "r1"))


def test_the_euclidean_transform_keeps_the_inner_product_and_puts_items_on_one_sphere():
    rng = np.random.default_rng(3)
    right, left = rng.normal(size=(50, 5)).astype(np.float32), rng.normal(size=(7, 5)).astype(np.float32)
    items, queries = euclidean_items(right), euclidean_queries(left)
    np.testing.assert_allclose(queries @ items.T, left @ right.T, rtol=1e-5, atol=1e-5)
    norms = np.linalg.norm(items, axis=1)
    np.testing.assert_allclose(norms, norms.max(), rtol=1e-5)


def test_a_search_asked_for_more_than_it_holds_pads_with_minus_one():
    search = VectorSearch(np.eye(3, dtype=np.float32))
    rows, scores = search.top_n(np.eye(3, dtype=np.float32)[:1], 5)
    assert rows.tolist() == [[0, 1, 2, -1, -1]] and scores[0, 3:].tolist() == [0.0, 0.0]


def test_publishing_records_the_recall_and_the_report_shows_it():
    table, summary = searched_item_to_item_table(cosine_model(), catalog_of(3000), N, "r1", ann_min_items=1000, seed=4)
    assert summary is not None and summary.recall >= 0.95 and summary.sample == 1000 and summary.candidates == 3000
    assert summary.exact_seconds > 0 and summary.table == "item_to_item"
    assert table.num_rows == 3000 * N
    result = PublishResult("item_to_item", "/lake/recommendations/item_to_item", table.num_rows, 3000, "word2vec",
                           "/lake/LATEST.json", version=0, search=summary.as_dict())
    text = publication_text(result, "2026-11-28")
    assert f"recall@{N} {summary.recall:.3f}" in text and "sampled items" in text and search_text(None) == ""
    refused = dataclasses.replace(result, published=False, reason="worse", version=None)
    assert "recall@20" in publication_text(refused, "2026-11-28")


def _factor_model(n_users: int, n_items: int, seed: int) -> tuple[FactorModel, Interactions]:
    rng = np.random.default_rng(seed)
    users, items = clustered(n_users, 16, 40, seed), clustered(n_items, 16, 40, seed + 1)
    pairs_u = np.repeat(np.arange(n_users), 30)
    pairs_i = rng.integers(0, n_items, len(pairs_u))
    history = Interactions.from_indices(pairs_u, pairs_i, n_users=n_users, n_items=n_items, binary=True,
                                        user_ids=[f"u{u:05d}" for u in range(n_users)],
                                        item_ids=[f"i{i:05d}" for i in range(n_items)])
    model = FactorModel(users, items, history.user_ids, history.item_ids, {})
    return model, history


def test_user_to_item_by_approximate_search_leaves_seen_items_out():
    model, history = _factor_model(800, 3000, 5)
    users = np.arange(800)
    exact, _ = model.exact_top_items(users, N, history)
    model.approximate_search(min_items=1)
    found, scores = model.top_items(users, N, history)
    assert recall_at_n(found, exact) >= 0.95
    assert not history.contains(np.repeat(users, N), found.ravel()).any()
    assert (found >= 0).all() and (np.diff(scores, axis=1) <= 0).all()


def test_user_to_item_publishing_records_the_recall():
    model, history = _factor_model(600, 3000, 6)
    table, summary = searched_user_to_item_table(model, history, N, "r1", ann_min_items=1000, seed=2)
    assert summary is not None and summary.table == "user_to_item" and summary.recall >= 0.95 and summary.sample == 600
    exact_model, _ = _factor_model(600, 3000, 6)
    exact = user_to_item_table(exact_model, history, N, "r1")
    assert table.num_rows == exact.num_rows == 600 * N
    assert "sampled users" in search_text(summary.as_dict())


@pytest.mark.parametrize("threads", [1, 2])
def test_search_results_do_not_depend_on_the_search_threads(threads):
    vectors = clustered(2000, 8, 30, 9)
    reference = VectorSearch(vectors, threads=1).top_n(vectors[:300], 10)
    rows, scores = VectorSearch(vectors, threads=threads).top_n(vectors[:300], 10)
    np.testing.assert_array_equal(rows, reference[0])
    np.testing.assert_array_equal(scores, reference[1])


@pytest.mark.slow
def test_a_run_with_ann_min_items_1_publishes_both_tables_by_approximate_search_and_reports_the_recall(tmp_path):
    """The README's command on the embedded sample with every catalogue above the threshold: word2vec (the
    only item-to-item model listed) and mf_bpr publish by HNSW, and the report and the summary say how well."""
    import json
    import os
    import subprocess
    import sys

    from recsys.publish import read_latest
    from tests.conftest import PROJECT_ROOT

    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "COLUMNS": "200"}
    command = [sys.executable, "-m", "flows.cli", "run", "--lake", str(tmp_path / "lake"), "--set", "publish.ann_min_items=1",
               "--set", "train.models=[word2vec,popular,mf_bpr]"]
    cli = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    assert cli.stdout.count("by approximate search: recall@20") == 2
    report = next((tmp_path / "lake" / "runs").glob("*/report.md")).read_text()
    assert "sampled items" in report and "sampled users" in report and "recall@20" in report
    items = read_latest(tmp_path / "lake")
    assert set(items.column("model").to_pylist()) == {"word2vec"}
    assert not [1 for a, b in zip(items.column("item_id").to_pylist(), items.column("rec_item_id").to_pylist()) if a == b]
    assert read_latest(tmp_path / "lake", "user_to_item").num_rows > 0
    pointer = json.loads((tmp_path / "lake" / "recommendations" / "LATEST.json").read_text())
    assert pointer["tables"]["user_to_item"]["model"] == "mf_bpr"


def test_measure_recall_raises_ef_search_until_the_sample_reaches_the_recall_asked_for():
    from recsys.ann import HNSWParams, measure_recall

    items = clustered(4000, 16, 40, seed=5)
    queries = clustered(600, 16, 40, seed=6) * 3.0  # user-like: off the items' sphere

    def exact(rows):
        return np.argsort(-(queries[rows] @ items.T), axis=1, kind="stable")[:, :N]

    def measured(min_recall):
        search = VectorSearch(items, HNSWParams(M=8, ef_construction=32, ef_search=128))
        recall, sample, _ = measure_recall(lambda rows: search.top_n(queries[rows], N)[0], exact, np.arange(600),
                                           size=300, seed=1, search=search, min_recall=min_recall)
        return recall, search.params.ef_search, sample

    low, ef_low, sample = measured(0.0)
    assert ef_low == 128 and low < 0.95 and sample == 300  # measured: 0.88 at 128
    high, ef_high, _ = measured(0.95)
    assert high >= 0.95 and ef_high in (256, 512, 1024, 2048)  # doubled from 128 until reached (measured: 0.996 at 512)
    assert measured(0.95) == (high, ef_high, 300)  # deterministic
