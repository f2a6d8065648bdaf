"""The user x item implicit-feedback matrix, its normalised bipartite graph, and BPR triples.

``Interactions`` holds the matrix ``R`` (users x items) as CSR arrays: for user ``u`` the items
``indices[indptr[u]:indptr[u + 1]]``, sorted and distinct, with float32 ``weights``. Ids are mapped to
indices once on the way in (``from_pairs``) and kept beside the arrays for the way out.

``normalized_adjacency`` is the graph LightGCN and NGCF propagate over: the bipartite adjacency
``A = [[0, R], [R^T, 0]]`` of the ``n_users + n_items`` nodes (users first), normalised symmetrically,
``D^-1/2 A D^-1/2`` with ``D`` the weighted degrees; a node of degree 0 keeps an empty row.

``bpr_triples`` draws the (user, positive item, negative item) triples of BPR (Rendle et al. 2009,
"BPR: Bayesian Personalized Ranking from Implicit Feedback"): negatives uniform over the items the
user has no interaction with. Everything here is O(nnz) memory: no dense users x items or
nodes x nodes matrix is ever built.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from functools import cached_property

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

log = logging.getLogger(__name__)


def _as_ids(ids, n: int) -> np.ndarray:
    if ids is None:
        return np.arange(n).astype(str).astype(object)
    out = np.asarray(ids, dtype=object)
    if out.shape != (n,):
        raise ValueError(f"expected {n} ids, got shape {out.shape}")
    return out


@dataclass(frozen=True)
class FilterCounts:
    """What ``Interactions.filter`` dropped, and how many passes it took to reach a fixed point."""

    users: int
    items: int
    interactions: int
    rounds: int


@dataclass(frozen=True, eq=False)
class Interactions:
    """A users x items implicit-feedback matrix in CSR form (see the module docstring)."""

    indptr: np.ndarray  # int64 (n_users + 1,)
    indices: np.ndarray  # int64 (nnz,), strictly increasing within each user's row
    weights: np.ndarray  # float32 (nnz,)
    user_ids: np.ndarray  # object (n_users,)
    item_ids: np.ndarray  # object (n_items,)

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise dtypes once, here
        set_(self, "indptr", np.ascontiguousarray(self.indptr, dtype=np.int64))
        set_(self, "indices", np.ascontiguousarray(self.indices, dtype=np.int64))
        set_(self, "weights", np.ascontiguousarray(self.weights, dtype=np.float32))
        set_(self, "user_ids", np.asarray(self.user_ids, dtype=object))
        set_(self, "item_ids", np.asarray(self.item_ids, dtype=object))
        if len(self.indptr) != len(self.user_ids) + 1 or self.indptr[0] != 0 or self.indptr[-1] != len(self.indices):
            raise ValueError("indptr must have n_users + 1 entries, from 0 to nnz")
        if len(self.weights) != len(self.indices):
            raise ValueError("weights and indices differ in length")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(self.item_ids)):
            raise ValueError("item index out of range")

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_indices(cls, users: np.ndarray, items: np.ndarray, weights: np.ndarray | None = None, *,
                     n_users: int | None = None, n_items: int | None = None, user_ids=None, item_ids=None,
                     binary: bool = False) -> "Interactions":
        """From parallel arrays of user index, item index and weight (1.0 each when ``None``).

        Duplicate pairs are summed, or count 1.0 once when ``binary``. ``n_users``/``n_items`` default
        to one past the largest index (or the number of ids given)."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        if users.shape != items.shape:
            raise ValueError("users and items differ in length")
        if (users < 0).any() or (items < 0).any():
            raise ValueError("negative user or item index")
        n_users = n_users if n_users is not None else len(user_ids) if user_ids is not None else int(users.max(initial=-1)) + 1
        n_items = n_items if n_items is not None else len(item_ids) if item_ids is not None else int(items.max(initial=-1)) + 1
        if (users >= n_users).any() or (items >= n_items).any():
            raise ValueError("user or item index out of range")
        w = np.ones(len(users)) if weights is None or binary else np.asarray(weights, dtype=np.float64)
        keys, inverse = np.unique(users * n_items + items, return_inverse=True)  # sorted by user, then item
        summed = np.ones(len(keys)) if binary else np.bincount(inverse.ravel(), weights=w, minlength=len(keys))
        rows = keys // n_items
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
        return cls(indptr, keys % n_items, summed, _as_ids(user_ids, n_users), _as_ids(item_ids, n_items))

    @classmethod
    def from_pairs(cls, user_ids, item_ids, weights=None, binary: bool = True) -> "Interactions":
        """From one (user id, item id) pair per event. Users and items are indexed in sorted id
        order; duplicates are summed (their weights, or 1.0 per event), or 1.0 per distinct pair
        when ``binary`` (the default: the implicit-feedback matrix of LightGCN and BPR)."""
        users, user_index = np.unique(np.asarray(user_ids, dtype=object).astype(str), return_inverse=True)
        items, item_index = np.unique(np.asarray(item_ids, dtype=object).astype(str), return_inverse=True)
        return cls.from_indices(user_index.ravel(), item_index.ravel(), weights, user_ids=users.astype(object),
                                item_ids=items.astype(object), binary=binary)

    def __repr__(self) -> str:
        return f"Interactions(n_users={self.n_users}, n_items={self.n_items}, nnz={self.nnz})"

    # -- shape and lookups ----------------------------------------------------------------------

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def items_of(self, user: int) -> np.ndarray:
        """The (sorted) item indices of one user."""
        return self.indices[self.indptr[user]:self.indptr[user + 1]]

    def weights_of(self, user: int) -> np.ndarray:
        return self.weights[self.indptr[user]:self.indptr[user + 1]]

    @cached_property
    def rows(self) -> np.ndarray:
        """The user of each stored interaction (the COO row array), int64 (nnz,)."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.indptr))

    def user_degrees(self) -> np.ndarray:
        """Distinct items per user."""
        return np.diff(self.indptr)

    def item_degrees(self) -> np.ndarray:
        """Distinct users per item."""
        return np.bincount(self.indices, minlength=self.n_items)

    @cached_property
    def _keys(self) -> np.ndarray:
        # user * n_items + item: sorted, since rows are in user order and sorted within
        return self.rows * self.n_items + self.indices

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each ``(users[k], items[k])`` is a stored interaction: one binary search each."""
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        at = np.searchsorted(self._keys, keys)
        return self._keys[np.minimum(at, max(self.nnz - 1, 0))] == keys if self.nnz else np.zeros(len(keys), bool)

    @cached_property
    def _gap_keys(self) -> np.ndarray:
        # user * (n_items + 1) + (p_j - j): p_j - j items below the j-th positive p_j are not positives
        local = np.arange(self.nnz, dtype=np.int64) - self.indptr[self.rows]
        return self.rows * (self.n_items + 1) + self.indices - local

    def draw_non_positive(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item per user drawn exactly uniformly among the items that user has NOT interacted
        with, vectorised: the ``r``-th non-positive item is ``r + #{j : p_j - j <= r}`` over the user's
        sorted positives ``p_j``, and keying every entry by ``user * (n_items + 1) + p_j - j`` makes
        that count one ``searchsorted`` for all users at once. Each user needs a non-positive item."""
        users = np.asarray(users, dtype=np.int64)
        free = self.n_items - self.user_degrees()[users]
        if (free <= 0).any():
            raise ValueError("a user who has every item has no negative")
        r = np.minimum((rng.random(len(users)) * free).astype(np.int64), free - 1)
        below = np.searchsorted(self._gap_keys, users * (self.n_items + 1) + r, side="right") - self.indptr[users]
        return r + below

    # -- filtering ------------------------------------------------------------------------------

    def filter(self, min_user_events: int = 1, min_item_events: int = 1) -> tuple["Interactions", FilterCounts]:
        """Keep users with at least ``min_user_events`` distinct items and items with at least
        ``min_item_events`` distinct users, repeating until both hold (dropping an item can take a
        user below its minimum: the k-core). Returns the new matrix, re-indexed with the kept ids in
        their old order, and the counts of dropped users, items and interactions."""
        kept, counts, _ = self.filter_with_mask(min_user_events, min_item_events)
        return kept, counts

    def filter_with_mask(self, min_user_events: int = 1, min_item_events: int = 1) -> tuple["Interactions", FilterCounts, np.ndarray]:
        """``filter``, plus which stored interactions were kept (a mask over ``indices``, whose order the
        kept matrix preserves)."""
        keep = np.ones(self.nnz, dtype=bool)
        rounds = 0
        while True:
            rounds += 1
            user_ok = np.bincount(self.rows[keep], minlength=self.n_users) >= min_user_events
            item_ok = np.bincount(self.indices[keep], minlength=self.n_items) >= min_item_events
            still = keep & user_ok[self.rows] & item_ok[self.indices]
            if still.sum() == keep.sum():
                break
            keep = still
        new_user = np.cumsum(user_ok) - 1
        new_item = np.cumsum(item_ok) - 1
        kept = Interactions.from_indices(new_user[self.rows[keep]], new_item[self.indices[keep]], self.weights[keep],
                                         user_ids=self.user_ids[user_ok], item_ids=self.item_ids[item_ok])
        counts = FilterCounts(int((~user_ok).sum()), int((~item_ok).sum()), int(self.nnz - keep.sum()), rounds)
        log.info("filtered interactions: dropped %d users, %d items, %d interactions in %d rounds",
                 counts.users, counts.items, counts.interactions, counts.rounds)
        return kept, counts, keep


# -- on disk, beside the item graph -------------------------------------------------------------

USER_ITEMS_FILE = "user_items.npz"  # CSR arrays: indptr, indices, events, weight, last_seen
USER_IDS_FILE, ITEM_IDS_FILE = "user_ids.parquet", "user_item_ids.parquet"


@dataclass(frozen=True)
class UserItems:
    """The stored user x item matrix: ``matrix`` weighted as asked, and per stored interaction the
    unix second of its last event (``last_seen``, parallel to ``matrix.indices``)."""

    matrix: Interactions
    last_seen: np.ndarray


def save_user_items(pairs: pa.Table, folder: Path) -> Interactions:
    """Store ``pairs`` (user_id, item_id, events, weight, last_seen; sorted by user then item, as
    ``recsys.graph.user_items`` gives them) as CSR arrays and id lists in ``folder``."""
    user_ids = pc.unique(pairs.column("user_id")).sort() if pairs.num_rows else pa.array([], pa.string())
    item_ids = pc.unique(pairs.column("item_id")).sort() if pairs.num_rows else pa.array([], pa.string())
    users = pc.index_in(pairs.column("user_id"), value_set=user_ids).to_numpy().astype(np.int64)
    items = pc.index_in(pairs.column("item_id"), value_set=item_ids).to_numpy().astype(np.int64)
    order = np.lexsort((items, users))  # the Spark sort is by id string, which is this order; make sure
    indptr = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=len(user_ids)), out=indptr[1:])
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / USER_ITEMS_FILE, indptr=indptr, indices=items[order],
             events=pairs.column("events").to_numpy().astype(np.int64)[order],
             weight=pairs.column("weight").to_numpy().astype(np.float64)[order],
             last_seen=pairs.column("last_seen").to_numpy().astype(np.int64)[order])
    pq.write_table(pa.table({"user_id": user_ids}), folder / USER_IDS_FILE)
    pq.write_table(pa.table({"item_id": item_ids}), folder / ITEM_IDS_FILE)
    matrix = Interactions(indptr, items[order], np.ones(len(items)), np.asarray(user_ids.to_pylist(), dtype=object),
                          np.asarray(item_ids.to_pylist(), dtype=object))
    log.info("user x item matrix: %d users, %d items, %d interactions -> %s", matrix.n_users, matrix.n_items,
             matrix.nnz, folder / USER_ITEMS_FILE)
    return matrix


def has_user_items(folder: Path) -> bool:
    return (Path(folder) / USER_ITEMS_FILE).exists()


def load_user_items(folder: Path, weighting: str = "binary", min_user_events: int = 1,
                    min_item_events: int = 1) -> tuple[UserItems, FilterCounts]:
    """The stored matrix, weighted ``binary`` (1 per pair) or by ``event_weights`` (the summed event
    weights), after the k-core filter of ``min_user_events`` / ``min_item_events``."""
    stored = Path(folder) / USER_ITEMS_FILE
    with np.load(stored, allow_pickle=False) as arrays:
        indptr, indices, last_seen = arrays["indptr"], arrays["indices"], arrays["last_seen"]
        weights = np.ones(len(indices)) if weighting == "binary" else arrays["weight"]
    user_ids = np.asarray(pq.read_table(Path(folder) / USER_IDS_FILE).column("user_id").to_pylist(), dtype=object)
    item_ids = np.asarray(pq.read_table(Path(folder) / ITEM_IDS_FILE).column("item_id").to_pylist(), dtype=object)
    full = Interactions(indptr, indices, weights, user_ids, item_ids)
    kept, counts, mask = full.filter_with_mask(min_user_events, min_item_events)
    return UserItems(kept, last_seen[mask]), counts


# -- the normalised bipartite graph -------------------------------------------------------------

def normalized_adjacency(interactions: Interactions) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of ``A = [[0, R], [R^T, 0]]`` as a float32 sparse CSR tensor of size
    ``(n_users + n_items)`` squared, users first; ``D`` holds the weighted degrees (with binary
    interactions, the paper's ``1 / sqrt(|N_u| |N_i|)``). Built from the CSR arrays: the user rows
    are ``R``'s rows shifted by ``n_users`` columns, the item rows are ``R^T`` (a stable sort of the
    entries by item). The result is symmetric."""
    R, n_users = interactions, interactions.n_users
    w = R.weights.astype(np.float64)
    user_deg = np.bincount(R.rows, weights=w, minlength=n_users)
    item_deg = np.bincount(R.indices, weights=w, minlength=R.n_items)
    with np.errstate(divide="ignore"):
        user_scale = np.where(user_deg > 0, 1.0 / np.sqrt(user_deg), 0.0)
        item_scale = np.where(item_deg > 0, 1.0 / np.sqrt(item_deg), 0.0)
    values = w * user_scale[R.rows] * item_scale[R.indices]  # (nnz,)
    by_item = np.argsort(R.indices, kind="stable")  # R^T in CSR order: items, then users ascending
    item_counts = np.bincount(R.indices, minlength=R.n_items)
    crow = np.concatenate([R.indptr, R.nnz + np.cumsum(item_counts)])
    col = np.concatenate([n_users + R.indices, R.rows[by_item]])
    val = np.concatenate([values, values[by_item]]).astype(np.float32)
    size = n_users + R.n_items
    with warnings.catch_warnings():  # torch flags sparse CSR as beta on first use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(col), torch.from_numpy(val),
                                       size=(size, size), check_invariants=True)


# -- BPR triples --------------------------------------------------------------------------------

def sample_negatives(interactions: Interactions, users: np.ndarray, rng: np.random.Generator, rounds: int = 2) -> np.ndarray:
    """One item per user, uniform over the items that user has not interacted with.

    Draws uniformly over all items and redraws those that hit a positive (vectorised rejection,
    ``rounds`` times); whatever is still a positive after that (users with most items) is drawn
    exactly from the user's complement. Either way each negative is uniform over the non-positives.
    Every user asked must have at least one non-positive item."""
    users = np.asarray(users, dtype=np.int64)
    if (interactions.user_degrees()[users] >= interactions.n_items).any():
        raise ValueError("a user who has every item has no negative")
    negatives = rng.integers(0, interactions.n_items, size=len(users))
    bad = np.flatnonzero(interactions.contains(users, negatives))
    for _ in range(rounds):
        if not len(bad):
            break
        negatives[bad] = rng.integers(0, interactions.n_items, size=len(bad))
        bad = bad[interactions.contains(users[bad], negatives[bad])]
    if len(bad):
        negatives[bad] = interactions.draw_non_positive(users[bad], rng)
    return negatives


def bpr_triples(interactions: Interactions, rng: np.random.Generator, n: int | None = None,
                rounds: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, positives, negatives) int64 arrays of BPR training triples.

    ``n=None`` is one epoch: every stored interaction once, in a random order, each with one
    negative. Otherwise ``n`` interactions drawn uniformly with replacement. Interactions of users
    who have every item are left out (they have no negative)."""
    R = interactions
    eligible = R.user_degrees()[R.rows] < R.n_items
    entries = np.flatnonzero(eligible)
    if len(entries) < R.nnz:
        log.warning("%d interactions of users who have every item have no negative; left out", R.nnz - len(entries))
    if not len(entries):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    picked = rng.permutation(entries) if n is None else entries[rng.integers(0, len(entries), size=n)]
    users, positives = R.rows[picked], R.indices[picked]
    return users, positives, sample_negatives(R, users, rng, rounds)
