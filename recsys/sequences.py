"""Item sequences in time order: the sessions of a window as offsets + values, what sequence models read.

The graph stage builds them on Spark (``recsys.graph.session_sequences``) from the training window and
stores them beside the graph (``save_sequences``); the evaluate stage builds the test days' ones the
same way. Items are catalogue indices (``recsys.catalog``), so every model, sequence or item-to-item,
answers in one index space. Sequence ``s`` is ``items[offsets[s]:offsets[s + 1]]``, its user
``users[s]`` and the unix time of its first event ``starts[s]``; sequences are ordered by
``(starts, user, first item)``, the order GRU4Rec's session-parallel mini-batches take them in
(Hidasi et al. 2016, "Session-based Recommendations with Recurrent Neural Networks", section 3.1.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SEQUENCES_FILE = "sequences.parquet"


@dataclass(frozen=True)
class Sequences:
    items: np.ndarray  # int64 catalogue indices
    offsets: np.ndarray  # int64, n_sequences + 1, offsets[0] == 0
    users: np.ndarray  # object array: the user id of each sequence
    starts: np.ndarray  # int64 unix seconds of each sequence's first event

    def __post_init__(self) -> None:
        if len(self.offsets) != len(self.users) + 1 or len(self.starts) != len(self.users):
            raise ValueError(f"{len(self.offsets)} offsets for {len(self.users)} users and {len(self.starts)} starts")
        if len(self.offsets) and (self.offsets[0] != 0 or self.offsets[-1] != len(self.items)):
            raise ValueError("offsets must run from 0 to len(items)")

    @classmethod
    def from_lists(cls, sequences: list[list[int]], users: list | None = None, starts: list[int] | None = None) -> "Sequences":
        """Hand-made sequences (tests, benchmarks): users default to ``"u<s>"``, starts to ``s``."""
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if sequences else np.zeros(0, np.int64)
        users = np.array([f"u{s}" for s in range(len(sequences))] if users is None else list(users), dtype=object)
        starts = np.arange(len(sequences), dtype=np.int64) if starts is None else np.asarray(starts, dtype=np.int64)
        return cls(items, np.r_[0, np.cumsum(lengths)].astype(np.int64), users, starts)

    @classmethod
    def empty(cls) -> "Sequences":
        return cls(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, object), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, s: int) -> np.ndarray:
        return self.items[self.offsets[s]:self.offsets[s + 1]]

    def take(self, which: np.ndarray) -> "Sequences":
        """The sequences ``which`` (indices or a boolean mask), in that order."""
        which = np.flatnonzero(which) if np.asarray(which).dtype == bool else np.asarray(which, dtype=np.int64)
        lengths = self.lengths[which]
        starts_at = self.offsets[which]
        positions = np.arange(lengths.sum()) - np.repeat(np.r_[0, np.cumsum(lengths)[:-1]], lengths) \
            + np.repeat(starts_at, lengths)
        return Sequences(self.items[positions.astype(np.int64)], np.r_[0, np.cumsum(lengths)].astype(np.int64),
                         self.users[which], self.starts[which])

    def keep_items(self, known: np.ndarray, min_length: int = 1) -> "Sequences":
        """Drop the items where ``known[item]`` is False (the standard protocol drops test items unseen in
        training), then the sequences left shorter than ``min_length``."""
        keep = known[self.items]
        owner = np.repeat(np.arange(len(self)), self.lengths)
        lengths = np.bincount(owner[keep], minlength=len(self)).astype(np.int64)
        kept = Sequences(self.items[keep], np.r_[0, np.cumsum(lengths)].astype(np.int64), self.users, self.starts)
        return kept.take(lengths >= min_length) if min_length > 0 else kept

    def by_user(self) -> "Sequences":
        """One sequence per user: the user's sequences concatenated in time order (ordered by first start)."""
        if not len(self):
            return self
        order = np.lexsort((np.arange(len(self)), self.starts, self.users.astype(str)))
        ordered = self.take(order)
        users = ordered.users.astype(str)
        first = np.r_[True, users[1:] != users[:-1]]
        group_starts = np.flatnonzero(first)
        merged = Sequences(ordered.items, np.r_[ordered.offsets[group_starts], ordered.offsets[-1]].astype(np.int64),
                           ordered.users[group_starts], ordered.starts[group_starts])
        return merged.take(np.lexsort((merged.users.astype(str), merged.starts)))

    def latest_per_user(self) -> dict[str, int]:
        """The index of each user's most recent sequence (latest start; the later one on a tie)."""
        latest: dict[str, int] = {}
        for s in np.lexsort((np.arange(len(self)), self.starts)):
            latest[str(self.users[s])] = int(s)
        return latest

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (prefix end, target) of next-item prediction: for each position after the first of a
        sequence, the index into ``items`` of the last prefix item and of the item to predict."""
        first = np.zeros(len(self.items), bool)
        first[self.offsets[:-1][self.lengths > 0]] = True
        targets = np.flatnonzero(~first)
        return targets - 1, targets

    def to_arrow(self) -> pa.Table:
        items = pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)), pa.array(self.items, pa.int64()))
        return pa.table({"user_id": pa.array(self.users.astype(str), pa.string()),
                         "start": pa.array(self.starts, pa.int64()), "items": items})

    @classmethod
    def from_arrow(cls, table: pa.Table) -> "Sequences":
        lists = table.column("items").combine_chunks()
        offsets = lists.offsets.to_numpy().astype(np.int64)
        items = lists.values.to_numpy(zero_copy_only=False).astype(np.int64)[offsets[0]:offsets[-1]]
        return cls(items, offsets - offsets[0], np.asarray(table.column("user_id").to_pylist(), dtype=object),
                   table.column("start").to_numpy().astype(np.int64))


def sequences_from_events(events: pa.Table, item_index: pa.Array, collapse_repeats: bool, max_length: int | None = None,
                          min_length: int = 1) -> Sequences:
    """Sequences from event rows ``(session_id, user_id, item_id, t)`` already sorted by session then time
    (``t``: unix seconds). Items are mapped to their index in ``item_index`` (the catalogue's ids); an item
    not there is dropped. With ``collapse_repeats`` an item repeated right after itself counts once.
    Sessions longer than ``max_length`` events (bots, as the graph's ``max_session_length``) are left out."""
    if not events.num_rows:
        return Sequences.empty()
    session = events.column("session_id").combine_chunks()
    new_session = np.r_[True, pc.not_equal(session[1:], session[:-1]).to_numpy(zero_copy_only=False)] \
        if events.num_rows > 1 else np.array([True])
    owner = np.cumsum(new_session) - 1
    n_sessions = int(owner[-1]) + 1
    raw_lengths = np.bincount(owner, minlength=n_sessions)
    index = pc.index_in(events.column("item_id"), value_set=item_index)  # null where the item is unknown
    keep = index.is_valid().to_numpy(zero_copy_only=False)
    items = index.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    if max_length is not None:
        keep &= raw_lengths[owner] <= max_length
    if collapse_repeats:  # judged on the items kept, so A, unknown, A becomes A
        kept = np.flatnonzero(keep)
        repeat = (items[kept][1:] == items[kept][:-1]) & (owner[kept][1:] == owner[kept][:-1])
        keep[kept[1:][repeat]] = False
    lengths = np.bincount(owner[keep], minlength=n_sessions).astype(np.int64)
    starts_of = np.flatnonzero(new_session)
    t = events.column("t").to_numpy().astype(np.int64)
    users = np.asarray(events.column("user_id").take(pa.array(starts_of)).to_pylist(), dtype=object)
    result = Sequences(items[keep], np.r_[0, np.cumsum(lengths)].astype(np.int64), users, t[starts_of])
    result = result.take(lengths >= max(min_length, 1))
    order = np.lexsort((result.items[result.offsets[:-1]] if len(result) else np.zeros(0, np.int64),
                        result.users.astype(str), result.starts))
    return result.take(order)


def holdout_sessions(sequences: Sequences, known: np.ndarray, max_sessions: int, seed: int) -> Sequences:
    """The standard protocol's test sessions: items with ``known[item]`` False dropped, then sessions
    shorter than 2; at most ``max_sessions`` of them (a seeded sample, kept in time order)."""
    kept = sequences.keep_items(known, min_length=2)
    if len(kept) > max_sessions:
        chosen = np.sort(np.random.default_rng(seed).choice(len(kept), max_sessions, replace=False))
        kept = kept.take(chosen)
    return kept


def save_sequences(sequences: Sequences, folder: Path) -> Path:
    path = Path(folder) / SEQUENCES_FILE
    pq.write_table(sequences.to_arrow(), path)
    return path


def has_sequences(folder: Path) -> bool:
    return (Path(folder) / SEQUENCES_FILE).exists()


def load_sequences(folder: Path) -> Sequences:
    return Sequences.from_arrow(pq.read_table(Path(folder) / SEQUENCES_FILE))
