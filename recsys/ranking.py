"""Full-ranking top-K retrieval and top-K metrics, for user-to-item and next-item evaluation.

Protocol (DESIGN.md, "Evaluation protocol"; the evaluation of He et al. 2020, "LightGCN: Simplifying
and Powering Graph Convolution Network for Recommendation", SIGIR, https://arxiv.org/abs/2002.02126):
every query row (a user, or a session prefix) is scored against **all** items, no sampled negatives;
the items the row must not get back (its training items) are set to ``-inf`` before ``torch.topk``.
Scores are computed one block of rows at a time, so memory is O(batch_size x n_items), never
O(n_users x n_items). Scores that are sparse over one shared ranking (item-kNN's
neighbours, popularity) are ranked by ``top_k_with_fallback`` instead: the same result, no dense block.

Retrieval is deterministic: of equal scores the lower item index ranks first, also at the cut-off
(``torch.topk`` alone does not promise which of several tied items it returns). A row with fewer than
k rankable items (finite scores) is padded with item ``-1`` and score ``-inf``; ``-1`` is "no
prediction" everywhere in this module.

Metrics, for a row ``u`` with relevant set ``R_u`` (its ground truth, a set: duplicates count once),
top list ``i_1 .. i_K`` and hit indicator ``h_j = [i_j in R_u]``:

- ``recall@K    = sum_j h_j / |R_u|``   -- the LightGCN (and RecBole) definition, **not**
  ``/ min(|R_u|, K)``; so a row with more than K relevant items cannot reach 1;
- ``precision@K = sum_j h_j / K``       -- padded (-1) slots count as misses, the denominator stays K;
- ``ndcg@K      = DCG / IDCG`` with binary gains, ``DCG = sum_j h_j / log2(j + 1)`` and the ideal
  ``IDCG = sum_{j <= min(|R_u|, K)} 1 / log2(j + 1)`` (Järvelin & Kekäläinen 2002, "Cumulated
  gain-based evaluation of IR techniques", ACM TOIS 20(4); the binary form used by LightGCN);
- ``hit@K       = 1 if any h_j else 0`` (HitRate@K);
- ``mrr@K       = 1 / min{j : h_j}``, 0 when no hit in the top K (reciprocal rank of the first hit).

Rows with an empty ``R_u`` are left out of the means and counted (``users_without_truth``); rows with
no prediction at all (a row of -1) stay in and score 0 on everything. Every metric for every K comes
from one top-max(K) list. Coverage: distinct recommended items over the catalogue size, and the share
of rows that got at least one item.

CSR arrays throughout: ``indptr`` (n_rows + 1,) and ``indices`` (nnz,), both int64, row ``r`` holding
``indices[indptr[r]:indptr[r + 1]]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

METRICS = ("recall", "precision", "ndcg", "hit", "mrr")
MAX_BLOCK_SCORES = 1 << 26  # dense scores ranked at once by top_k_in_batches: 256 MiB of float32
FIRST_BLOCK_ROWS = 64

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # (B,) int64 row ids -> (B, n_items) scores


# ---------------------------------------------------------------------------------------------- CSR


def csr_from_pairs(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of (row, col) pairs: each row's columns sorted and de-duplicated."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols differ in length: {rows.shape} vs {cols.shape}")
    if len(rows) and (rows.min() < 0 or rows.max() >= n_rows or cols.min() < 0):
        raise ValueError("row ids must lie in [0, n_rows) and column ids be >= 0")
    pairs = np.unique(np.stack([rows, cols], axis=1), axis=0)  # sorted by row, then col
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs[:, 0], minlength=n_rows), out=indptr[1:])
    return indptr, np.ascontiguousarray(pairs[:, 1])


def csr_take_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sub-CSR made of ``rows`` (in that order, repeats allowed), without a Python loop."""
    sub_indptr, offsets = csr_row_offsets(indptr, rows)
    return sub_indptr, np.asarray(indices, dtype=np.int64)[offsets]


def csr_row_offsets(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indptr of the sub-CSR made of ``rows``, the offset in the full CSR's entry arrays of each of its
    entries): index ``indices``, or any array aligned with it, by the offsets."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, lengths = indptr[rows], indptr[rows + 1] - indptr[rows]
    sub_indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=sub_indptr[1:])
    # position k of the output belongs to output row r(k) and reads entry starts[r] + k - sub_indptr[r]
    return sub_indptr, np.arange(sub_indptr[-1], dtype=np.int64) - np.repeat(sub_indptr[:-1] - starts, lengths)


def _check_csr(indptr: np.ndarray, indices: np.ndarray, n_rows: int, name: str) -> None:
    if len(indptr) != n_rows + 1:
        raise ValueError(f"{name}: indptr has {len(indptr)} entries, expected n_rows + 1 = {n_rows + 1}")
    if indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}: indptr must start at 0, never decrease and end at len(indices)")


# ---------------------------------------------------------------------------------------- retrieval


@torch.no_grad()
def rank_top_k(scores: torch.Tensor, k: int, exclude_indptr: np.ndarray | None = None,
               exclude_indices: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k items of each row of one score block, best first, ties to the lower item index.

    ``scores`` (B, n_items) is not modified. ``exclude_*`` is a block-local CSR (B rows) of items to
    rank at ``-inf``. Returns ``(items, values)``, both (B, k) on ``scores.device``: int64 item
    indices and their scores; slots without a finite-scored item hold ``-1`` and ``-inf``.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be 2-D (rows, items), got shape {tuple(scores.shape)}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not scores.is_floating_point():
        scores = scores.float()
    if scores.numel() and torch.isnan(scores.max()):  # max propagates NaN: one pass, no (B, n_items) mask
        raise ValueError("scores contain NaN; a model that scores NaN cannot be ranked")
    n_rows, n_items = scores.shape
    if (exclude_indptr is None) != (exclude_indices is None):
        raise ValueError("give both exclude_indptr and exclude_indices, or neither")
    if exclude_indptr is not None:
        exclude_indptr = np.asarray(exclude_indptr, dtype=np.int64)
        exclude_indices = np.asarray(exclude_indices, dtype=np.int64)
        _check_csr(exclude_indptr, exclude_indices, n_rows, "exclude")
        if len(exclude_indices) and (exclude_indices.min() < 0 or exclude_indices.max() >= n_items):
            raise ValueError(f"excluded item ids must lie in [0, {n_items})")
        rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(exclude_indptr))
        scores = scores.clone()  # (B, n_items): the caller's block stays intact
        scores[torch.from_numpy(rows).to(scores.device), torch.from_numpy(exclude_indices).to(scores.device)] = float("-inf")

    kk = min(k, n_items)
    if kk == 0:
        items = torch.zeros((n_rows, 0), dtype=torch.int64, device=scores.device)
        values = scores.new_zeros((n_rows, 0))
    else:
        items, values = _top_k_ties_to_lower_index(scores, kk)
        items = torch.where(torch.isneginf(values), torch.full_like(items, -1), items)
    if kk < k:
        items = torch.cat([items, items.new_full((n_rows, k - kk), -1)], dim=1)
        values = torch.cat([values, values.new_full((n_rows, k - kk), float("-inf"))], dim=1)
    return items, values


def _top_k_ties_to_lower_index(scores: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``kk`` (1 <= kk <= n_items) best items of each row, best first, ties to the lower item index.

    ``torch.topk`` alone settles a row whose kk-th best value is strictly above its next one (one ``topk``
    of kk + 1, then a sort); only rows with a tie across the cut take the full pass over their scores."""
    n_items = scores.shape[1]
    top = torch.topk(scores, min(kk + 1, n_items), dim=1)
    items, values = top.indices[:, :kk], top.values[:, :kk]
    by_index, where = torch.sort(items, dim=1)
    values, order = torch.sort(torch.gather(values, 1, where), dim=1, descending=True, stable=True)
    items = torch.gather(by_index, 1, order)
    if kk < n_items:
        cut_tied = (top.values[:, kk - 1] == top.values[:, kk]).nonzero()[:, 0]
        if len(cut_tied):
            items[cut_tied], values[cut_tied] = _top_k_with_tied_cut(scores[cut_tied], kk)
    return items, values


def _top_k_with_tied_cut(scores: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``_top_k_ties_to_lower_index`` for rows whose cut falls inside a run of equal values."""
    n_rows = scores.shape[0]
    # The k-th best value is unique even when the items holding it are not: keep every item above
    # it and, of the items equal to it, the lowest-indexed ones until each row has exactly kk.
    threshold = torch.topk(scores, kk, dim=1).values[:, -1:]                # (B, 1)
    above = scores > threshold                                               # (B, n_items)
    tied = scores == threshold                                               # (B, n_items)
    room = kk - above.sum(dim=1, keepdim=True)                               # (B, 1), >= 1
    keep = above | (tied & (torch.cumsum(tied, dim=1, dtype=torch.int32) <= room))
    items = keep.nonzero()[:, 1].view(n_rows, kk)                           # ascending item index
    # a stable sort keeps equal scores in ascending item order, so ties go to the lower index
    values, order = torch.sort(torch.gather(scores, 1, items), dim=1, descending=True, stable=True)
    return torch.gather(items, 1, order), values


def _checked_batch_rows(users: np.ndarray, batch_size: int, exclude_indptr: np.ndarray | None,
                        exclude_indices: np.ndarray | None) -> np.ndarray:
    """``users`` as int64, after checking the arguments that every batched ranking takes."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if (exclude_indptr is None) != (exclude_indices is None):
        raise ValueError("give both exclude_indptr and exclude_indices, or neither")
    users = np.asarray(users, dtype=np.int64)
    if exclude_indptr is not None and len(users) and (users.min() < 0 or users.max() >= len(exclude_indptr) - 1):
        raise ValueError(f"user ids must lie in [0, {len(exclude_indptr) - 1}), the rows of the exclude CSR")
    return users


def top_k_in_batches(score_fn: ScoreFn, users: np.ndarray, k: int, exclude_indptr: np.ndarray | None = None,
                     exclude_indices: np.ndarray | None = None, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items for every row id in ``users``, scoring at most ``batch_size`` rows per call, and no
    more than ``MAX_BLOCK_SCORES`` scores (after a first block of ``FIRST_BLOCK_ROWS`` rows gives the
    number of items): at 180,000 items a block of 1,024 rows and its ranking held 1.2 GiB at once.

    ``score_fn`` gets a CPU int64 tensor of row ids (B,) and returns their scores (B, n_items) on any
    device. ``exclude_*`` is a CSR indexed by row id (not by position in ``users``). Returns numpy
    ``(items, values)``, both (len(users), k), rows in the order of ``users``; see ``rank_top_k``.
    """
    users = _checked_batch_rows(users, batch_size, exclude_indptr, exclude_indices)
    started = time.perf_counter()
    item_blocks, value_blocks, n_items = [], [], None
    lo, rows = 0, min(batch_size, FIRST_BLOCK_ROWS)  # the first block tells the catalogue's size
    while lo < len(users):
        batch = users[lo:lo + rows]
        lo += len(batch)
        with torch.no_grad():
            scores = score_fn(torch.from_numpy(batch))                          # (B, n_items)
        if scores.dim() != 2 or scores.shape[0] != len(batch):
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)} for {len(batch)} rows")
        if n_items is None:
            n_items = scores.shape[1]
            rows = max(1, min(batch_size, MAX_BLOCK_SCORES // max(n_items, 1)))
        elif scores.shape[1] != n_items:
            raise ValueError(f"score_fn returned {scores.shape[1]} items, earlier blocks had {n_items}")
        local = (None, None) if exclude_indptr is None else csr_take_rows(exclude_indptr, exclude_indices, batch)
        items, values = rank_top_k(scores, k, *local)
        if values.dtype in (torch.float16, torch.bfloat16):
            values = values.float()  # numpy has no bfloat16
        item_blocks.append(items.cpu().numpy())
        value_blocks.append(values.cpu().numpy())
    if not item_blocks:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    logger.info("ranked %d rows over %d items (k=%d, %d rows per block) in %.2fs",
                len(users), n_items, k, rows, time.perf_counter() - started)
    return np.concatenate(item_blocks), np.concatenate(value_blocks)


def top_k_with_fallback(candidates: tuple[np.ndarray, np.ndarray, np.ndarray], k: int, fallback_items: np.ndarray,
                        fallback_scores: np.ndarray, exclude_indptr: np.ndarray | None = None,
                        exclude_indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``rank_top_k`` of a block whose scores are mostly one shared ranking, without a dense row.

    Row ``r`` scores item ``i`` at its candidate score where ``candidates`` (a B-row CSR ``(indptr, indices,
    scores)``, at most one entry per row and item) has the entry, else at the item's base score ``fallback_scores[j]`` where ``fallback_items[j]
    == i``. ``fallback_items`` lists every rankable item once, best base score first, ties by ascending item
    index; an item it leaves out is rankable only as a candidate. ``exclude_*`` is a block-local CSR of items
    ranked at ``-inf``. The result equals ``rank_top_k`` on the dense rows (same items, order and padding),
    in O(candidates + excluded + B x k): a row's top k come from its own entries and the head of the shared
    list, which it reads no further than k plus its own candidates and exclusions.
    """
    indptr, indices, scores = (np.asarray(a) for a in candidates)
    n_rows = len(indptr) - 1
    fallback_items = np.asarray(fallback_items, dtype=np.int64)
    fallback_scores = np.asarray(fallback_scores, dtype=np.float32)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if len(fallback_items) != len(fallback_scores):
        raise ValueError(f"{len(fallback_items)} fallback items but {len(fallback_scores)} fallback scores")
    _check_csr(indptr, indices, n_rows, "candidates")
    if np.isnan(scores).any() or np.isnan(fallback_scores).any():
        raise ValueError("scores contain NaN; a model that scores NaN cannot be ranked")
    if exclude_indptr is None:
        exclude_indptr, exclude_indices = np.zeros(n_rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _check_csr(exclude_indptr, exclude_indices, n_rows, "exclude")
    span = int(max(indices.max(initial=-1), np.max(exclude_indices, initial=-1), fallback_items.max(initial=-1))) + 1
    # each row reads the shared list up to k plus everything its own entries can remove from it
    reach = np.minimum(k + np.diff(indptr) + np.diff(exclude_indptr), len(fallback_items))
    reach_indptr = np.concatenate([[0], np.cumsum(reach)])
    position = np.arange(reach_indptr[-1], dtype=np.int64) - np.repeat(reach_indptr[:-1], reach)
    keys, tags, values = _tagged_entries(n_rows, span, (exclude_indptr, exclude_indices, None),
                                         (indptr, indices, np.asarray(scores, dtype=np.float32)),
                                         (reach_indptr, fallback_items[position], fallback_scores[position]))
    rankable = _rankable(keys, tags)
    keys, values = keys[rankable], values[rankable]
    out_items = np.full((n_rows, k), -1, dtype=np.int64)
    out_scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    fill_top_k(*best_first_per_row(keys // span, keys % span, values, k), out_items, out_scores)
    out_items[np.isneginf(out_scores)] = -1
    return out_items, out_scores


EXCLUDED, CANDIDATE, SHARED = 0, 1, 2  # where an entry of top_k_with_fallback comes from, in precedence order


def _tagged_entries(n_rows: int, span: int, *sources: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (row, item) entries of the CSR ``sources`` (excluded, candidates, shared; in that order) as
    ``row * span + item`` keys, each with its source's tag and its float32 score (-inf where none)."""
    keys, tags, values = [], [], []
    for tag, (row_indptr, items, scores) in enumerate(sources):
        rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(row_indptr))
        keys.append(rows * span + np.asarray(items, dtype=np.int64))
        tags.append(np.full(len(rows), tag, dtype=np.int64))
        values.append(np.full(len(rows), -np.inf, np.float32) if scores is None else scores)
    return np.concatenate(keys), np.concatenate(tags), np.concatenate(values)


def _rankable(keys: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """Which entries are ranked: a candidate unless excluded, a shared entry unless excluded or a candidate.

    One sort of ``key * 3 + tag`` puts each (row, item)'s entries together, the one that decides first."""
    order = np.argsort(keys * 3 + tags)
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    first_of_group = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = np.zeros(len(keys), dtype=bool)
    keep[order] = (tags[order] != EXCLUDED) & (first_of_group == np.arange(len(order)))
    return keep


def best_first_per_row(rows: np.ndarray, items: np.ndarray, values: np.ndarray,
                        k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries sorted by row, then score descending, then item, of which only those that can make
    a row's top k: its k best values and every entry tied with its k-th. A plain sort on (row, score)
    finds each row's k-th value; only the few entries at or above it are sorted with their items."""
    values = values + np.float32(0.0)  # -0.0 becomes 0.0: equal scores, equal bits
    bits = values.view(np.uint32).astype(np.int64)
    ascending = np.where(bits >= 1 << 31, (1 << 32) - 1 - bits, bits + (1 << 31))  # order-preserving
    order = np.argsort((rows << 32) | ((1 << 32) - 1 - ascending))
    sorted_rows = rows[order]
    per_row = np.bincount(rows)
    row_end = np.cumsum(per_row)[sorted_rows]
    row_start = row_end - per_row[sorted_rows]
    kth = values[order][np.minimum(row_start + max(k, 1), row_end) - 1]
    near = order[values[order] >= kth] if k else order[:0]
    near = near[np.lexsort((items[near], -values[near], rows[near]))]
    return rows[near], items[near], values[near]


def fill_top_k(rows: np.ndarray, items: np.ndarray, values: np.ndarray, out_items: np.ndarray,
               out_values: np.ndarray) -> None:
    """Write ``best_first_per_row``'s entries into the (rows, k) ``out_*`` blocks: each row's first k."""
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    top = rank < out_items.shape[1]
    out_items[rows[top], rank[top]] = items[top]
    out_values[rows[top], rank[top]] = values[top]


CandidateFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]  # (B,) row ids -> B-row CSR


def top_k_with_fallback_in_batches(candidate_fn: CandidateFn, users: np.ndarray, k: int, fallback_items: np.ndarray,
                                   fallback_scores: np.ndarray, exclude_indptr: np.ndarray | None = None,
                                   exclude_indices: np.ndarray | None = None,
                                   batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """``top_k_in_batches`` for scores given as candidates over a shared ranking (``top_k_with_fallback``):
    ``candidate_fn`` gets a batch of row ids and returns their candidate CSR ``(indptr, indices, scores)``."""
    users = _checked_batch_rows(users, batch_size, exclude_indptr, exclude_indices)
    started = time.perf_counter()
    item_blocks, value_blocks = [np.zeros((0, k), dtype=np.int64)], [np.zeros((0, k), dtype=np.float32)]
    for lo in range(0, len(users), batch_size):
        batch = users[lo:lo + batch_size]
        local = (None, None) if exclude_indptr is None else csr_take_rows(exclude_indptr, exclude_indices, batch)
        items, values = top_k_with_fallback(candidate_fn(batch), k, fallback_items, fallback_scores, *local)
        item_blocks.append(items)
        value_blocks.append(values)
    logger.info("ranked %d rows from candidates and a shared list of %d items (k=%d) in %.2fs",
                len(users), len(fallback_items), k, time.perf_counter() - started)
    return np.concatenate(item_blocks), np.concatenate(value_blocks)


# ------------------------------------------------------------------------------------------ metrics


def hit_matrix(top_items: np.ndarray, truth_indptr: np.ndarray, truth_indices: np.ndarray) -> np.ndarray:
    """(n_rows, K) bool: whether ``top_items[u, j]`` is one of row u's relevant items (-1 never is)."""
    top_items = np.asarray(top_items, dtype=np.int64)
    n_rows, width = top_items.shape
    truth_indptr = np.asarray(truth_indptr, dtype=np.int64)
    truth_indices = np.asarray(truth_indices, dtype=np.int64)
    _check_csr(truth_indptr, truth_indices, n_rows, "truth")
    if np.any(top_items < -1) or (len(truth_indices) and truth_indices.min() < 0):
        raise ValueError("item ids must be >= 0 (-1 marks an empty slot in top_items only)")
    valid = top_items >= 0
    if width > 1:  # a duplicate item would be counted as two hits
        ordered = np.sort(top_items, axis=1)
        if np.any((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)):
            raise ValueError("top_items repeats an item within a row")
    # membership of (row, item) pairs through one int64 key per pair: row * span + item
    span = int(max(top_items.max(initial=-1), truth_indices.max(initial=-1))) + 1
    truth_rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(truth_indptr))
    truth_keys = truth_rows * span + truth_indices
    top_keys = np.arange(n_rows, dtype=np.int64)[:, None] * span + top_items
    return np.isin(top_keys, truth_keys) & valid


def ranking_metrics_per_user(top_items: np.ndarray, truth_indptr: np.ndarray, truth_indices: np.ndarray,
                             ks: Sequence[int] = (10, 20, 50)) -> dict[str, np.ndarray]:
    """``{"recall@K": (n_rows,) float64, ...}`` for every metric and K; NaN for rows without truth."""
    ks = sorted({int(k) for k in ks})
    top_items = np.asarray(top_items, dtype=np.int64)
    if top_items.ndim != 2:
        raise ValueError(f"top_items must be 2-D (rows, K), got shape {top_items.shape}")
    if not ks or ks[0] < 1 or ks[-1] > top_items.shape[1]:
        raise ValueError(f"every K must lie in [1, {top_items.shape[1]}] (the width of top_items), got {ks}")
    hits = hit_matrix(top_items, truth_indptr, truth_indices)                    # (n, K_max) bool
    n_rows = len(hits)
    # distinct relevant items per row: a duplicated truth entry must not inflate |R_u|
    truth_rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(truth_indptr))
    n_relevant = np.zeros(n_rows, dtype=np.int64)
    if len(truth_rows):
        uniq = np.unique(np.stack([truth_rows, np.asarray(truth_indices, dtype=np.int64)], axis=1), axis=0)
        n_relevant = np.bincount(uniq[:, 0], minlength=n_rows)
    has_truth = n_relevant > 0

    discount = 1.0 / np.log2(np.arange(2, ks[-1] + 2))                           # (K_max,) 1/log2(rank+1)
    ideal = np.r_[0.0, np.cumsum(discount)]                                      # ideal[m] = IDCG of m hits
    cum_hits = np.cumsum(hits, axis=1)                                           # (n, K_max)
    cum_dcg = np.cumsum(hits * discount, axis=1)                                 # (n, K_max)
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), ks[-1])          # (n,) 0-based, K_max if none

    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in ks:
            n_hits = cum_hits[:, k - 1].astype(np.float64)
            per_metric = {
                "recall": n_hits / n_relevant,
                "precision": n_hits / k,
                "ndcg": cum_dcg[:, k - 1] / ideal[np.minimum(n_relevant, k)],
                "hit": (n_hits > 0).astype(np.float64),
                "mrr": np.where(first_hit < k, 1.0 / (first_hit + 1), 0.0),
            }
            for name in METRICS:
                out[f"{name}@{k}"] = np.where(has_truth, per_metric[name], np.nan)
    return out


def ranking_metrics(top_items: np.ndarray, truth_indptr: np.ndarray, truth_indices: np.ndarray,
                    ks: Sequence[int] = (10, 20, 50)) -> dict[str, float]:
    """Means over rows with truth of recall, precision, ndcg, hit, mrr @ every K, plus the row counts.

    Keys ``"recall@20"`` etc. (NaN when no row has truth), ``"users_evaluated"`` (rows with at least one
    relevant item) and ``"users_without_truth"`` (rows left out of the means).
    """
    per_user = ranking_metrics_per_user(top_items, truth_indptr, truth_indices, ks)
    has_truth = np.diff(truth_indptr) > 0
    n_eval = int(has_truth.sum())
    out: dict[str, float] = {
        name: float(values[has_truth].mean()) if n_eval else float("nan") for name, values in per_user.items()
    }
    out["users_evaluated"] = n_eval
    out["users_without_truth"] = int(len(has_truth) - n_eval)
    return out


def catalogue_coverage(top_items: np.ndarray, n_items: int, k: int | None = None) -> float:
    """Distinct items recommended in the first ``k`` slots (all when None) of any row, over ``n_items``."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    shown = np.asarray(top_items)[:, :k]
    return float(len(np.unique(shown[shown >= 0])) / n_items)


def users_served(top_items: np.ndarray) -> float:
    """Share of rows with at least one prediction (an item id >= 0); NaN for no rows."""
    top_items = np.asarray(top_items)
    if len(top_items) == 0:
        return float("nan")
    return float((top_items >= 0).any(axis=1).mean())
