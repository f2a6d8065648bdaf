"""Full-ranking top-K retrieval and metrics: hand-computed cases, and a naive loop-over-users twin on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsys.ranking import (
    METRICS,
    catalogue_coverage,
    csr_from_pairs,
    csr_take_rows,
    hit_matrix,
    rank_top_k,
    ranking_metrics,
    ranking_metrics_per_user,
    top_k_in_batches,
    top_k_with_fallback,
    top_k_with_fallback_in_batches,
    users_served,
)

NEG_INF = float("-inf")


def _csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """CSR from a list of rows, entries kept as given (no sorting, no de-duplication)."""
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64)
    indices = np.array([i for r in rows for i in r], dtype=np.int64)
    return indptr, indices


# ------------------------------------------------------------------------------- naive twins


def _naive_top_k(scores: np.ndarray, k: int, exclude: list[set[int]]) -> tuple[list[list[int]], list[list[float]]]:
    """Sort each row's allowed, finite-scored items by (-score, item); pad to k with (-1, -inf)."""
    items_out, values_out = [], []
    for u in range(scores.shape[0]):
        allowed = [(-float(scores[u, i]), i) for i in range(scores.shape[1])
                   if i not in exclude[u] and scores[u, i] != NEG_INF]
        best = sorted(allowed)[:k]
        items = [i for _, i in best] + [-1] * (k - len(best))
        values = [-s for s, _ in best] + [NEG_INF] * (k - len(best))
        items_out.append(items)
        values_out.append(values)
    return items_out, values_out


def _naive_metrics(top: list[list[int]], truth: list[set[int]], k: int) -> dict[str, list[float]]:
    """Per-user metrics by the textbook formulas, one user at a time; users without truth skipped."""
    out: dict[str, list[float]] = {name: [] for name in METRICS}
    for items, relevant in zip(top, truth):
        if not relevant:
            continue
        shown = items[:k]
        hit_positions = [pos for pos, item in enumerate(shown, start=1) if item != -1 and item in relevant]
        dcg = sum(1.0 / math.log2(pos + 1) for pos in hit_positions)
        idcg = sum(1.0 / math.log2(pos + 1) for pos in range(1, min(len(relevant), k) + 1))
        out["recall"].append(len(hit_positions) / len(relevant))
        out["precision"].append(len(hit_positions) / k)
        out["ndcg"].append(dcg / idcg)
        out["hit"].append(1.0 if hit_positions else 0.0)
        out["mrr"].append(1.0 / hit_positions[0] if hit_positions else 0.0)
    return out


def _random_lists(rng: np.random.Generator, n_users: int, n_items: int, width: int):
    """Top lists of distinct items with random -1 tails (some rows all -1) and truth of 0..8 items."""
    top = np.full((n_users, width), -1, dtype=np.int64)
    truth: list[set[int]] = []
    for u in range(n_users):
        length = int(rng.integers(0, width + 1))
        top[u, :length] = rng.choice(n_items, size=length, replace=False)
        n_true = int(rng.integers(0, 9))
        # draw truth partly from the list itself so that hits are common
        pool = np.r_[top[u, :length], rng.integers(0, n_items, n_true)]
        truth.append({int(i) for i in rng.choice(pool, size=min(n_true, len(pool)), replace=False)} if len(pool) else set())
    return top, truth


# --------------------------------------------------------------------------------- metrics


# 4 users, 6 items (0..5), lists of width 3; hits marked with *
#   u0: top [2, 0*, 5]   truth {0, 4}        hits [0, 1, 0]
#   u1: top [1*, 3, 4*]  truth {1, 4}        hits [1, 0, 1]
#   u2: top [-1, -1, -1] truth {3}           no prediction: a miss everywhere
#   u3: top [0, 1, 2]    truth {}            left out of the means, counted
HAND_TOP = np.array([[2, 0, 5], [1, 3, 4], [-1, -1, -1], [0, 1, 2]])
HAND_TRUTH = _csr([[0, 4], [4, 1], [3], []])
L3 = 1 / math.log2(3)  # discount of rank 2 = 0.63093
L4 = 1 / math.log2(4)  # discount of rank 3 = 0.5
# Per user (u0, u1, u2), by hand:
#   K=1  recall 0, 1/2, 0        precision 0, 1, 0        ndcg 0, 1/1, 0
#        hit 0, 1, 0             mrr 0, 1, 0
#   K=2  recall 1/2, 1/2, 0      precision 1/2, 1/2, 0
#        ndcg  u0 = L3/(1+L3) = 0.38685 ; u1 = 1/(1+L3) = 0.61315 ; 0
#        hit 1, 1, 0             mrr 1/2, 1, 0
#   K=3  recall 1/2, 1, 0        precision 1/3, 2/3, 0
#        ndcg  u0 = L3/(1+L3) = 0.38685 (IDCG still over min(2, 3) = 2 places) ; u1 = (1+L4)/(1+L3) = 0.91972 ; 0
#        hit 1, 1, 0             mrr 1/2, 1, 0
HAND_EXPECTED = {
    "recall@1": [0, 1 / 2, 0], "precision@1": [0, 1, 0], "ndcg@1": [0, 1, 0], "hit@1": [0, 1, 0], "mrr@1": [0, 1, 0],
    "recall@2": [1 / 2, 1 / 2, 0], "precision@2": [1 / 2, 1 / 2, 0],
    "ndcg@2": [L3 / (1 + L3), 1 / (1 + L3), 0], "hit@2": [1, 1, 0], "mrr@2": [1 / 2, 1, 0],
    "recall@3": [1 / 2, 1, 0], "precision@3": [1 / 3, 2 / 3, 0],
    "ndcg@3": [L3 / (1 + L3), (1 + L4) / (1 + L3), 0], "hit@3": [1, 1, 0], "mrr@3": [1 / 2, 1, 0],
}


def test_hand_computed_per_user_metrics():
    per_user = ranking_metrics_per_user(HAND_TOP, *HAND_TRUTH, ks=(1, 2, 3))
    assert set(per_user) == set(HAND_EXPECTED)
    for name, expected in HAND_EXPECTED.items():
        assert per_user[name][:3] == pytest.approx(expected), name
        assert np.isnan(per_user[name][3]), name  # u3 has no truth
    assert per_user["ndcg@2"][0] == pytest.approx(0.38685, abs=1e-5)
    assert per_user["ndcg@3"][1] == pytest.approx(0.91972, abs=1e-5)


def test_hand_computed_means_and_counts():
    means = ranking_metrics(HAND_TOP, *HAND_TRUTH, ks=(1, 2, 3))
    # means over u0, u1, u2 (u3 has no truth):
    #   K=1 recall 1/6, precision 1/3, ndcg 1/3, hit 1/3, mrr 1/3
    #   K=2 recall 1/3, precision 1/3, ndcg (L3 + 1)/(1 + L3)/3 = 1/3, hit 2/3, mrr 1/2
    #   K=3 recall 1/2, precision 1/3, ndcg (0.38685 + 0.91972)/3 = 0.43552, hit 2/3, mrr 1/2
    assert means["recall@1"] == pytest.approx(1 / 6)
    assert means["precision@1"] == pytest.approx(1 / 3)
    assert means["recall@2"] == pytest.approx(1 / 3)
    assert means["ndcg@2"] == pytest.approx(1 / 3)
    assert means["hit@2"] == pytest.approx(2 / 3)
    assert means["mrr@2"] == pytest.approx(1 / 2)
    assert means["recall@3"] == pytest.approx(1 / 2)
    assert means["precision@3"] == pytest.approx(1 / 3)
    assert means["ndcg@3"] == pytest.approx(0.43552, abs=1e-5)
    assert means["users_evaluated"] == 3
    assert means["users_without_truth"] == 1


def test_hand_computed_coverage_and_served():
    # first slot of every row: {2, 1, 0} -> 3 of 6 items; all slots: {0..5} -> 6 of 6
    assert catalogue_coverage(HAND_TOP, n_items=6, k=1) == pytest.approx(0.5)
    assert catalogue_coverage(HAND_TOP, n_items=6) == pytest.approx(1.0)
    assert catalogue_coverage(HAND_TOP, n_items=12, k=2) == pytest.approx(4 / 12)  # {2, 0} | {1, 3} | {} | {0, 1}
    assert users_served(HAND_TOP) == pytest.approx(3 / 4)  # u2 got nothing
    assert np.isnan(users_served(np.zeros((0, 3), dtype=np.int64)))


def test_recall_divides_by_all_relevant_not_by_k():
    # 5 relevant items, a perfect list of 2: LightGCN recall = 2/5 (not 2/min(5, 2) = 1); ndcg = 1
    means = ranking_metrics(np.array([[0, 1]]), *_csr([[0, 1, 2, 3, 4]]), ks=(2,))
    assert means["recall@2"] == pytest.approx(2 / 5)
    assert means["ndcg@2"] == pytest.approx(1.0)
    assert means["precision@2"] == pytest.approx(1.0)


def test_duplicate_truth_entries_count_once():
    # truth [3, 3, 5] is the set {3, 5}: one hit of two relevant items -> recall 1/2, not 1/3
    means = ranking_metrics(np.array([[3, 9]]), *_csr([[3, 3, 5]]), ks=(2,))
    assert means["recall@2"] == pytest.approx(1 / 2)
    assert means["ndcg@2"] == pytest.approx(1 / (1 + L3))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_vectorised_metrics_match_naive(seed):
    rng = np.random.default_rng(seed)
    width = int(rng.integers(5, 25))
    top, truth = _random_lists(rng, n_users=200, n_items=int(rng.integers(width, 60)), width=width)
    truth_csr = _csr([sorted(t) for t in truth])
    ks = sorted({1, 2, int(rng.integers(1, width + 1)), width})
    assert any(not t for t in truth) and np.any((top == -1).all(axis=1))  # the edge cases are present
    per_user = ranking_metrics_per_user(top, *truth_csr, ks=ks)
    means = ranking_metrics(top, *truth_csr, ks=ks)
    has_truth = np.array([bool(t) for t in truth])
    for k in ks:
        naive = _naive_metrics(top.tolist(), truth, k)
        for name in METRICS:
            key = f"{name}@{k}"
            assert per_user[key][has_truth] == pytest.approx(naive[name], abs=1e-12), key
            assert np.isnan(per_user[key][~has_truth]).all(), key
            assert means[key] == pytest.approx(np.mean(naive[name]), abs=1e-12), key
    assert means["users_evaluated"] == has_truth.sum()
    assert means["users_without_truth"] == (~has_truth).sum()


def test_no_user_with_truth_gives_nan_means():
    means = ranking_metrics(np.array([[0, 1], [2, -1]]), *_csr([[], []]), ks=(1, 2))
    assert np.isnan(means["recall@2"]) and np.isnan(means["mrr@1"])
    assert means["users_evaluated"] == 0 and means["users_without_truth"] == 2


def test_hit_matrix_ignores_padding_and_other_rows():
    # item 4 is relevant to u1 only; -1 in u0 must not match anything
    hits = hit_matrix(np.array([[4, -1], [7, 4]]), *_csr([[0], [4]]))
    assert hits.tolist() == [[False, False], [False, True]]


def test_metric_inputs_are_checked():
    truth = _csr([[0], [1]])
    with pytest.raises(ValueError, match="K must lie"):
        ranking_metrics(np.array([[0, 1], [1, 0]]), *truth, ks=(3,))  # list of 2 cannot give @3
    with pytest.raises(ValueError, match="repeats"):
        ranking_metrics(np.array([[0, 0], [1, 2]]), *truth, ks=(2,))
    with pytest.raises(ValueError, match="indptr"):
        ranking_metrics(np.array([[0, 1]]), *truth, ks=(1,))  # 1 row of lists, 2 rows of truth
    with pytest.raises(ValueError, match=">= 0"):
        ranking_metrics(np.array([[0, -2], [1, 0]]), *truth, ks=(1,))


# ------------------------------------------------------------------------------- retrieval


def test_rank_top_k_hand_case():
    inf = NEG_INF
    scores = torch.tensor([
        [0.5, 0.9, 0.9, 0.1, 0.9, 0.2],   # exclude {2}: 0.9 at items 1, 4 then 0.5 at 0 -> [1, 4, 0]
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],   # all tied, exclude {0, 3}: lowest allowed indices -> [1, 2, 4]
        [0.3, 0.8, 0.1, 0.0, inf, 0.7],   # exclude {0, 1, 2, 5}; item 4 is -inf -> [3, -1, -1]
        [0.1, 0.7, 0.7, 0.7, 0.7, 0.0],   # no exclusion, 4-way tie across the cut -> [1, 2, 3]
    ])
    before = scores.clone()
    exclude = _csr([[2], [3, 0], [0, 1, 2, 5], []])
    items, values = rank_top_k(scores, 3, *exclude)
    assert items.tolist() == [[1, 4, 0], [1, 2, 4], [3, -1, -1], [1, 2, 3]]
    assert values.numpy() == pytest.approx(np.array([[0.9, 0.9, 0.5], [1, 1, 1], [0.0, inf, inf], [0.7, 0.7, 0.7]]))
    assert torch.equal(scores, before)  # the caller's block is not modified


def test_rank_top_k_pads_when_k_exceeds_items():
    items, values = rank_top_k(torch.tensor([[0.2, 0.4]]), 4)
    assert items.tolist() == [[1, 0, -1, -1]]
    assert values[0, :2].tolist() == pytest.approx([0.4, 0.2]) and torch.isneginf(values[0, 2:]).all()
    items, values = rank_top_k(torch.tensor([[0.2, 0.4]]), 0)
    assert items.shape == (1, 0) and values.shape == (1, 0)


def test_rank_top_k_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        rank_top_k(torch.tensor([[0.1, float("nan")]]), 1)
    inf = float("inf")
    with pytest.raises(ValueError, match="NaN"):  # beside infinities, in a later row
        rank_top_k(torch.tensor([[-inf, 1.0], [inf, float("nan")]]), 1)
    assert rank_top_k(torch.tensor([[-inf, 1.0], [inf, -inf]]), 1)[0].tolist() == [[1], [0]]
    with pytest.raises(ValueError, match="excluded item ids"):
        rank_top_k(torch.tensor([[0.1, 0.2]]), 1, *_csr([[2]]))
    with pytest.raises(ValueError, match="excluded item ids"):
        rank_top_k(torch.tensor([[0.1, 0.2]]), 1, *_csr([[-1]]))  # would wrap to the last item
    with pytest.raises(ValueError, match="indptr"):
        rank_top_k(torch.tensor([[0.1, 0.2], [0.3, 0.4]]), 1, *_csr([[0]]))


def _tied_scores(rng: np.random.Generator, n_users: int, n_items: int) -> np.ndarray:
    """Scores from a few levels, so that ties (also across the top-k cut) are everywhere; some -inf."""
    scores = rng.integers(0, 4, (n_users, n_items)).astype(np.float32) / 4
    scores[rng.random((n_users, n_items)) < 0.05] = NEG_INF
    return scores


def _random_exclusion(rng: np.random.Generator, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user excluded sets of 0..n_items items (some users have almost everything excluded)."""
    rows = [sorted(rng.choice(n_items, size=int(rng.integers(0, n_items + 1)), replace=False).tolist())
            for _ in range(n_users)]
    return _csr(rows)


# (n_users, n_items, k): a short list, and a long one with many tied values inside it (torch's sort
# keeps equal values in index order there only when asked to be stable)
@pytest.mark.parametrize("seed, n_users, n_items, k", [(0, 37, 23, 8), (1, 37, 23, 8), (2, 37, 23, 30), (3, 12, 400, 200)])
def test_batched_top_k_matches_naive(seed, n_users, n_items, k):
    rng = np.random.default_rng(seed)
    scores = _tied_scores(rng, n_users, n_items)
    exclude = _random_exclusion(rng, n_users, n_items)
    exclude_sets = [set(exclude[1][exclude[0][u]:exclude[0][u + 1]].tolist()) for u in range(n_users)]
    users = rng.permutation(n_users)  # rows come back in the order asked for, not in id order
    items, values = top_k_in_batches(lambda b: torch.from_numpy(scores[b.numpy()]), users, k, *exclude, batch_size=5)
    naive_items, naive_values = _naive_top_k(scores[users], k, [exclude_sets[u] for u in users])
    assert items.dtype == np.int64 and items.shape == (n_users, k)
    assert items.tolist() == naive_items
    assert values.tolist() == naive_values
    for row, u in enumerate(users):
        assert not set(items[row].tolist()) & exclude_sets[u]  # an excluded item never appears
    assert np.any(items == -1)  # the padding case was exercised



def test_rows_with_and_without_a_tie_at_the_cut_rank_alike_in_one_block():
    """Distinct scores (topk settles the row), ties inside the top k only (a sort settles them), and ties
    across the cut (the full pass), side by side in one block, against the naive ranking."""
    rng = np.random.default_rng(5)
    scores = rng.random((30, 50)).astype(np.float32)
    scores[10:20, :12] = 2.0          # twelve equal best items: a tie inside the top 6 and across its cut
    scores[20:30, [7, 3, 40]] = 3.0   # three equal best items, well inside the top 6
    scores[25, :47] = NEG_INF         # only three rankable items: padded
    items, values = rank_top_k(torch.from_numpy(scores), 6)
    naive_items, naive_values = _naive_top_k(scores, 6, [set()] * 30)
    assert items.tolist() == naive_items and values.tolist() == naive_values
    assert items[10].tolist() == [0, 1, 2, 3, 4, 5] and items[20][:3].tolist() == [3, 7, 40]
    assert items[25][3:].tolist() == [-1, -1, -1]

def test_batch_size_does_not_change_results_and_bounds_each_call():
    rng = np.random.default_rng(7)
    n_users, n_items, k = 50, 31, 6
    scores = _tied_scores(rng, n_users, n_items)
    exclude = _random_exclusion(rng, n_users, n_items)
    users = np.r_[rng.permutation(n_users), [3, 3]]  # a repeated row id is ranked twice, identically
    results = {}
    for batch_size in (1, 7, 16, 50, 1000):
        seen: list[tuple[int, ...]] = []

        def score_fn(batch: torch.Tensor) -> torch.Tensor:
            assert batch.dtype == torch.int64 and batch.dim() == 1
            block = torch.from_numpy(scores[batch.numpy()])
            seen.append(tuple(block.shape))
            return block

        results[batch_size] = top_k_in_batches(score_fn, users, k, *exclude, batch_size=batch_size)
        assert all(rows <= batch_size and cols == n_items for rows, cols in seen), (batch_size, seen)
        assert sum(rows for rows, _ in seen) == len(users)  # every row scored exactly once
        assert len(seen) == -(-len(users) // batch_size)
    reference = results[1]
    for batch_size, (items, values) in results.items():
        assert np.array_equal(items, reference[0]), batch_size
        assert np.array_equal(values, reference[1]), batch_size
    assert np.array_equal(reference[0][-1], reference[0][-2])



def _candidates_over_a_shared_list(rng: np.random.Generator, n_users: int, n_items: int):
    """A shared base ranking (tied levels, some items left out: unrankable unless a row has them as
    candidates) and per-row candidate overrides from the same levels, so candidates tie with the list."""
    base = rng.integers(0, 4, n_items).astype(np.float32) / 4
    listed = np.flatnonzero(rng.random(n_items) < 0.9)
    fallback = listed[np.lexsort((listed, -base[listed]))]
    rows = [sorted(rng.choice(n_items, size=int(rng.integers(0, n_items // 2)), replace=False).tolist())
            for _ in range(n_users)]
    indptr, indices = _csr(rows)
    values = rng.integers(0, 5, len(indices)).astype(np.float32) / 4
    dense = np.full((n_users, n_items), NEG_INF, dtype=np.float32)
    dense[:, fallback] = base[fallback]
    dense[np.repeat(np.arange(n_users), np.diff(indptr)), indices] = values
    return (indptr, indices, values), fallback, base[fallback], dense


@pytest.mark.parametrize("seed, n_users, n_items, k", [(0, 37, 23, 8), (1, 37, 23, 30), (2, 12, 400, 50), (3, 5, 9, 0)])
def test_top_k_with_fallback_equals_the_dense_ranking(seed, n_users, n_items, k):
    rng = np.random.default_rng(seed)
    candidates, fallback_items, fallback_scores, dense = _candidates_over_a_shared_list(rng, n_users, n_items)
    exclude = _random_exclusion(rng, n_users, n_items)
    items, values = top_k_with_fallback(candidates, k, fallback_items, fallback_scores, *exclude)
    expected_items, expected_values = rank_top_k(torch.from_numpy(dense), k, *exclude)
    assert items.dtype == np.int64 and items.shape == (n_users, k) and values.dtype == np.float32
    assert items.tolist() == expected_items.tolist()
    assert values.tolist() == expected_values.tolist()
    if k:
        assert np.any(items == -1) and np.any(items >= 0)  # padding and ranked rows both exercised
    no_exclusion = top_k_with_fallback(candidates, k, fallback_items, fallback_scores)
    assert no_exclusion[0].tolist() == rank_top_k(torch.from_numpy(dense), k)[0].tolist()


def test_top_k_with_fallback_in_batches_matches_one_block_and_checks_its_input():
    rng = np.random.default_rng(11)
    (indptr, indices, values), fallback_items, fallback_scores, dense = _candidates_over_a_shared_list(rng, 40, 30)
    exclude = _random_exclusion(rng, 40, 30)
    users = np.r_[rng.permutation(40), [3]]

    def candidates(batch: np.ndarray):
        sub_indptr, positions = csr_take_rows(indptr, np.arange(len(indices)), batch)
        return sub_indptr, indices[positions], values[positions]

    for batch_size in (1, 7, 100):
        items, scores = top_k_with_fallback_in_batches(candidates, users, 6, fallback_items, fallback_scores, *exclude,
                                                       batch_size=batch_size)
        expected = top_k_in_batches(lambda b: torch.from_numpy(dense[b.numpy()]), users, 6, *exclude)
        assert items.tolist() == expected[0].tolist() and scores.tolist() == expected[1].tolist()
    empty = top_k_with_fallback_in_batches(candidates, np.zeros(0, np.int64), 6, fallback_items, fallback_scores)
    assert empty[0].shape == (0, 6)
    with pytest.raises(ValueError, match="rows of the exclude CSR"):
        top_k_with_fallback_in_batches(candidates, np.array([40]), 6, fallback_items, fallback_scores, *exclude)
    with pytest.raises(ValueError, match="fallback scores"):
        top_k_with_fallback((indptr[:2], indices[:indptr[1]], values[:indptr[1]]), 3, fallback_items, fallback_scores[:-1])
    with pytest.raises(ValueError, match="NaN"):
        top_k_with_fallback((np.array([0, 1]), np.array([1]), np.array([np.nan], np.float32)), 2, np.array([0, 2]),
                            np.array([1.0, 0.5], np.float32))

def test_top_k_without_exclusion_and_with_no_users():
    scores = np.array([[0.1, 0.3, 0.2], [0.0, 0.0, 0.5]], dtype=np.float32)
    items, values = top_k_in_batches(lambda b: torch.from_numpy(scores[b.numpy()]), np.array([1, 0]), 2)
    assert items.tolist() == [[2, 0], [1, 2]]
    assert values == pytest.approx(np.array([[0.5, 0.0], [0.3, 0.2]]))
    items, values = top_k_in_batches(lambda b: torch.from_numpy(scores[b.numpy()]), np.array([], dtype=np.int64), 2)
    assert items.shape == (0, 2) and values.shape == (0, 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_scores(dtype):
    scores = torch.tensor([[0.25, 0.75, 0.5]], dtype=dtype)
    items, values = top_k_in_batches(lambda b: scores[b], np.array([0]), 2)
    assert items.tolist() == [[1, 2]]
    assert values.dtype == (np.float64 if dtype == torch.float64 else np.float32)
    assert values.tolist() == [[0.75, 0.5]]


def test_score_fn_must_return_one_row_per_user():
    with pytest.raises(ValueError, match="for 2 rows"):
        top_k_in_batches(lambda b: torch.zeros((1, 4)), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="exclude CSR"):
        top_k_in_batches(lambda b: torch.zeros((len(b), 4)), np.array([0, 5]), 2, *_csr([[0], [1]]))


def test_retrieval_to_metrics_end_to_end():
    # 3 users, 5 items, scores u.i from tiny embeddings; training items excluded, then judged on test items
    user_emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    item_emb = torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 2.0], [1.0, 1.0]])
    # scores: u0 [3, 2, 0, 0, 1]; u1 [0, 0, 3, 2, 1]; u2 [3, 2, 3, 2, 2]
    train = csr_from_pairs(np.array([0, 1, 2]), np.array([0, 2, 4]), n_rows=3)
    test = csr_from_pairs(np.array([0, 1, 1, 2]), np.array([4, 3, 0, 1]), n_rows=3)
    items, _ = top_k_in_batches(lambda b: user_emb[b] @ item_emb.T, np.arange(3), 2, *train, batch_size=2)
    # u0 without item 0: [1 (2), 4 (1)]; u1 without 2: [3 (2), 4 (1)]; u2 without 4: [0 (3), 2 (3)] tie -> lower first
    assert items.tolist() == [[1, 4], [3, 4], [0, 2]]
    means = ranking_metrics(items, *test, ks=(1, 2))
    # hits@1: u0 no, u1 yes (3), u2 no -> hit@1 1/3; @2: u0 yes at rank 2, u1 yes, u2 no -> hit@2 2/3
    # recall@2: u0 1/1, u1 1/2 (item 0 missed), u2 0 -> 1/2; mrr@2: (1/2 + 1 + 0)/3 = 1/2
    assert means["hit@1"] == pytest.approx(1 / 3)
    assert means["hit@2"] == pytest.approx(2 / 3)
    assert means["recall@2"] == pytest.approx(1 / 2)
    assert means["mrr@2"] == pytest.approx(1 / 2)


# ------------------------------------------------------------------------------------- CSR


def test_csr_helpers():
    indptr, indices = csr_from_pairs(np.array([2, 0, 2, 2]), np.array([5, 1, 3, 5]), n_rows=4)
    assert indptr.tolist() == [0, 1, 1, 3, 3] and indices.tolist() == [1, 3, 5]  # sorted, de-duplicated
    sub_indptr, sub_indices = csr_take_rows(indptr, indices, np.array([2, 1, 0, 2]))
    assert sub_indptr.tolist() == [0, 2, 2, 3, 5] and sub_indices.tolist() == [3, 5, 1, 3, 5]
    sub_indptr, sub_indices = csr_take_rows(indptr, indices, np.array([], dtype=np.int64))
    assert sub_indptr.tolist() == [0] and len(sub_indices) == 0
    with pytest.raises(ValueError, match="n_rows"):
        csr_from_pairs(np.array([4]), np.array([0]), n_rows=4)


def test_top_k_in_batches_bounds_the_scores_of_a_block_and_ranks_the_same(monkeypatch):
    import recsys.ranking as ranking

    rng = np.random.default_rng(3)
    scores = torch.from_numpy(rng.integers(0, 5, size=(300, 40)).astype(np.float32))  # many ties
    exclude_indptr, exclude_indices = csr_from_pairs(rng.integers(0, 300, 500), rng.integers(0, 40, 500), 300)
    users = rng.permutation(300)
    reference = ranking.top_k_in_batches(lambda b: scores[b], users, 7, exclude_indptr, exclude_indices, batch_size=300)
    monkeypatch.setattr(ranking, "MAX_BLOCK_SCORES", 40 * 25)
    monkeypatch.setattr(ranking, "FIRST_BLOCK_ROWS", 10)
    blocks = []
    bounded = ranking.top_k_in_batches(lambda b: blocks.append(len(b)) or scores[b], users, 7, exclude_indptr,
                                       exclude_indices, batch_size=300)
    assert blocks == [10] + [25] * 11 + [15]  # a first block of 10 rows, then 25 x 40 items at most
    assert np.array_equal(bounded[0], reference[0]) and np.array_equal(bounded[1], reference[1])
