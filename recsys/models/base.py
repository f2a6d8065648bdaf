"""The interface every model implements, and the in-memory data training hands to it.

A model is fitted by ``fit(inputs, params)`` from ``TrainingInputs`` (arrays and Arrow tables the
train stage loaded once: the graph's transition table, item statistics, the catalogue, the walks,
validation pairs) and its own params (``recsys.models.params``); it reads no file and knows no
pipeline config. It declares which tables it can serve (``serves``):

- ``ItemModel`` (item-to-item): how related two items are (``pair_scores``, used by evaluation) and
  which items are most related to each item (``similar``, used by evaluation and publishing), in the
  catalogue's index space. An item the model knows nothing about has index -1 or no vector; it
  scores the model's fallback and has no neighbours.
- ``UserModel`` (user-to-item): scores of a batch of users over all items.
- ``SequenceModel`` (next item): scores over all items of the item that follows each position of a
  sequence; it serves the other two tables through the continuation of a sequence (see the class).

Models persist as plain arrays and JSON (never pickle).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from recsys.catalog import Catalog
from recsys.transition import TransitionTable

if TYPE_CHECKING:
    from recsys.ann import VectorSearch
    from recsys.interactions import Interactions
    from recsys.sequences import Sequences

FALLBACK_SCORE = 0.0
ITEM_TO_ITEM, USER_TO_ITEM, NEXT_ITEM = "item_to_item", "user_to_item", "next_item"


@dataclass(frozen=True)
class ValidationPairs:
    """Item pairs (catalogue indices) held out of training, labelled 1 (co-occurring) or 0: learning curves' data."""

    a: np.ndarray
    b: np.ndarray
    label: np.ndarray


@dataclass(frozen=True)
class FlatWalks:
    """Walks as one token array: walk ``w`` is ``tokens[offsets[w]:offsets[w + 1]]``."""

    tokens: np.ndarray  # int64 node indices
    offsets: np.ndarray  # int64, n_walks + 1

    @classmethod
    def from_arrow(cls, walks: pa.ChunkedArray | pa.ListArray) -> "FlatWalks":
        array = walks.combine_chunks() if isinstance(walks, pa.ChunkedArray) else walks
        offsets = array.offsets.to_numpy().astype(np.int64)
        tokens = array.values.to_numpy().astype(np.int64)[offsets[0]:offsets[-1]]
        return cls(tokens, offsets - offsets[0])

    @classmethod
    def from_lists(cls, walks: list[list[int]]) -> "FlatWalks":
        return cls.from_arrow(pa.array(walks, pa.list_(pa.int64())))

    @property
    def n_walks(self) -> int:
        return len(self.offsets) - 1

    def counts(self, n_nodes: int) -> np.ndarray:
        return np.bincount(self.tokens, minlength=n_nodes)

    def gather(self, walk_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of the given walks, concatenated, and for each token its position in ``walk_ids``."""
        starts, lengths = self.offsets[walk_ids], np.diff(self.offsets)[walk_ids]
        owner = np.repeat(np.arange(len(walk_ids)), lengths)
        first = np.r_[0, np.cumsum(lengths)[:-1]]
        positions = np.arange(lengths.sum()) - np.repeat(first, lengths) + np.repeat(starts, lengths)
        return self.tokens[positions], owner


def no_progress(done: int, total: int) -> None:
    """The default progress callback: ``done`` of ``total`` epochs finished."""


@dataclass
class TrainingInputs:
    """What the train stage loads once and hands to every model, all in memory."""

    table: TransitionTable  # the item graph: node i is catalogue item i
    catalog: Catalog  # graph nodes, then cold items with side information
    item_stats: pa.Table  # per node: events, users, purchases
    walks: pa.ListArray | None = None  # one list<int32> of node indices per walk
    validation: ValidationPairs | None = None
    seed: int = 0
    threads: int = 1
    progress: Callable[[int, int], None] = field(default=no_progress, repr=False)
    interactions: Interactions | None = None  # the user x item matrix, for user-to-item models
    user_validation: Interactions | None = None  # held out of ``interactions`` (same ids and indices): learning curves
    user_history: Interactions | None = None  # both together: what each user had in the training window
    device: str = "cpu"  # where PyTorch models train ("cpu" or "cuda"), resolved from train.device
    sequences: Sequences | None = None  # the training window's sessions in time order (catalogue indices), for sequence models

    @cached_property
    def flat_walks(self):
        """The walks as one token array and offsets (``FlatWalks``), built once for all models."""
        if self.walks is None:
            raise ValueError("this model trains on walks, but none were given")
        return FlatWalks.from_arrow(self.walks)


class Model(ABC):
    name: str
    serves: ClassVar[frozenset[str]] = frozenset()
    meta: dict[str, Any]

    @classmethod
    def fit(cls, inputs: TrainingInputs, params: Any) -> "Model":
        """Train on ``inputs`` with this model's own ``params``; every registered model implements it."""
        raise NotImplementedError(f"{cls.__name__} cannot be trained, only loaded")

    @abstractmethod
    def save(self, folder: Path) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, inputs: TrainingInputs) -> "Model": ...


class ItemModel(Model):
    serves = frozenset({ITEM_TO_ITEM})
    meta: dict[str, Any] = {}

    @abstractmethod
    def known_items(self) -> np.ndarray:
        """Catalogue indices this model can recommend for (the anchors of its published rows)."""

    @abstractmethod
    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Relatedness of node pairs ``(a[i], b[i])``; -1 marks an unseen item -> the fallback score."""

    @abstractmethod
    def similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` related nodes for each of ``nodes`` (never the node itself), best first.

        Returns ``(neighbours, scores)`` of shape ``(len(nodes), n)``; -1 pads rows with fewer.
        """

    def approximate_search(self, min_items: int, threads: int = 1) -> VectorSearch | None:
        """Let ``similar`` search approximately from now on (``recsys.ann``) when this model can and at least
        ``min_items`` > 0 items are candidates; returns the index (``VectorSearch``), or None when ``similar``
        stays exact. Only models with item vectors can (``EmbeddingModel``); the others always stay exact."""
        return None

    def exact_similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``similar`` by exhaustive search, whatever ``approximate_search`` chose: the reference of its recall."""
        return self.similar(nodes, n)


class UserModel(Model):
    """A user-to-item model, in the index spaces of the ``Interactions`` it was trained on: user ``u`` is
    ``user_ids[u]``, item ``i`` is ``item_ids[i]`` (object arrays of the lake's ids, kept with the model)."""

    serves = frozenset({USER_TO_ITEM})
    user_ids: np.ndarray
    item_ids: np.ndarray

    @abstractmethod
    def user_scores(self, users: np.ndarray) -> np.ndarray:
        """Scores of a batch of users (user indices) over all items: ``(len(users), n_items)``, one block, never all users.

        Higher is better; ``-inf`` marks an item the model must never recommend to that user."""

    def approximate_search(self, min_items: int, threads: int = 1) -> VectorSearch | None:
        """Let ``top_items`` search approximately from now on (``recsys.ann``) when this model can and at least
        ``min_items`` > 0 items are candidates; returns the index (``VectorSearch``), or None (stays exact)."""
        return None

    def top_items(self, users: np.ndarray, n: int, exclude: Interactions | None = None,
                  batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """The top-``n`` items of ``users`` (``(items, scores)``, best first, ties to the lower item index, -1
        where fewer remain), ``exclude``'s items of each user left out: the published user-to-item rows."""
        return self.exact_top_items(users, n, exclude, batch_size)

    def exact_top_items(self, users: np.ndarray, n: int, exclude: Interactions | None = None,
                        batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """``top_items`` by exhaustive, exact ranking: the reference of an approximate search's recall and what the
        evaluation ranks. By default it scores every item (``user_scores``); a model whose scores are sparse
        over one shared ranking may override it with an equal ranking that never builds the dense rows."""
        from recsys.evaluate_users import top_items

        return top_items(self, users, n, exclude, batch_size)


class SequenceModel(ItemModel, UserModel):
    """A next-item model over catalogue indices (``recsys.sequences``): given the items of a sequence so far
    (and its user, for models with user embeddings), scores over all catalogue items of the item that follows.

    A subclass implements ``position_scores`` and ``known_items`` (and ``fit``/``save``/``load``, where
    ``load`` ends with ``bind(inputs)``); this class turns them into the other two tables, so every
    sequence model serves all three the same way: item-to-item is the continuation of a one-item
    sequence (``similar``, ``pair_scores``); user-to-item is the continuation of the user's most recent
    training sequence (``user_scores``, in the index spaces of the run's user x item matrix, a user
    without a sequence scored by training popularity). ``recommend_seen`` says whether a user's
    published rows may repeat items the user already had (sessions repeat items: True by default).
    """

    serves = frozenset({NEXT_ITEM, ITEM_TO_ITEM, USER_TO_ITEM})
    n_items: int
    recommend_seen: bool = True
    block_cells: ClassVar[int] = 1 << 24  # score cells (rows x items) computed at once by the adapters

    @abstractmethod
    def position_scores(self, items: np.ndarray, offsets: np.ndarray, users: np.ndarray | None = None) -> np.ndarray:
        """For every position of every sequence ``items[offsets[s]:offsets[s + 1]]``, float32 scores over all
        ``n_items`` catalogue items of the item that follows it: shape ``(len(items), n_items)``. Row ``p``
        depends only on the sequence's items up to ``p`` (and its user). ``users``: each sequence's user id
        (object array), or None when unknown; a model without user embeddings ignores it."""

    def last_scores(self, items: np.ndarray, offsets: np.ndarray, users: np.ndarray | None = None) -> np.ndarray:
        """Scores of the item after the last one of each (non-empty) sequence: ``(n_sequences, n_items)``."""
        return self.position_scores(items, offsets, users)[offsets[1:] - 1]

    def bind(self, inputs: TrainingInputs) -> "SequenceModel":
        """Keep what serving needs from the run's inputs (the training sequences, the user x item matrix)."""
        self._inputs = inputs
        return self

    # -- item-to-item: the continuation of a one-item sequence ---------------------------------------

    def _single_item_scores(self, nodes: np.ndarray) -> np.ndarray:
        nodes = np.asarray(nodes, dtype=np.int64)
        return self.last_scores(nodes, np.arange(len(nodes) + 1, dtype=np.int64), None)

    def _rows_per_block(self) -> int:
        return max(1, self.block_cells // max(self.n_items, 1))

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        known = np.zeros(self.n_items, bool)
        known[self.known_items()] = True
        ok = known_pairs(a, b, self.n_items)
        ok[ok] = known[a[ok]] & known[b[ok]]
        out = np.full(len(a), FALLBACK_SCORE, dtype=np.float32)
        anchors, inverse = np.unique(a[ok], return_inverse=True)
        rows = self._rows_per_block()
        where = np.flatnonzero(ok)
        for first in range(0, len(anchors), rows):
            scores = self._single_item_scores(anchors[first:first + rows])
            in_block = (inverse >= first) & (inverse < first + rows)
            out[where[in_block]] = scores[inverse[in_block] - first, b[where[in_block]]]
        return out

    def similar(self, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        nodes = np.asarray(nodes, dtype=np.int64)
        neighbours, scores = np.full((len(nodes), n), -1, np.int64), np.zeros((len(nodes), n), np.float32)
        unseen = np.ones(self.n_items, bool)
        unseen[self.known_items()] = False
        ok = np.flatnonzero((nodes >= 0) & (nodes < self.n_items))
        ok = ok[~unseen[nodes[ok]]]
        rows = self._rows_per_block()
        for first in range(0, len(ok), rows):
            block = ok[first:first + rows]
            values = self._single_item_scores(nodes[block]).astype(np.float32, copy=True)
            values[:, unseen] = -np.inf
            values[np.arange(len(block)), nodes[block]] = -np.inf
            neighbours[block], scores[block] = top_n_rows(values, n)
        return neighbours, scores

    # -- user-to-item: the continuation of the user's latest sequence ---------------------------------

    @cached_property
    def _user_serving(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(latest training sequence of each user of the matrix or -1, catalogue index of each matrix item
        or -1, the training popularity of each catalogue item) from the bound inputs."""
        inputs = getattr(self, "_inputs", None)
        if inputs is None or inputs.user_history is None or inputs.sequences is None:
            raise ValueError(f"{self.name} serves users only when loaded with the run's sequences and user x item matrix")
        history, sequences = inputs.user_history, inputs.sequences
        latest = sequences.latest_per_user()
        user_sequence = np.array([latest.get(str(u), -1) for u in history.user_ids], dtype=np.int64)
        position = {str(item): i for i, item in enumerate(inputs.catalog.item_ids[:self.n_items])}
        catalogue_of = np.array([position.get(str(i), -1) for i in history.item_ids], dtype=np.int64)
        popularity = np.bincount(sequences.items, minlength=self.n_items)[:self.n_items].astype(np.float32)
        return user_sequence, catalogue_of, popularity, history.user_ids

    @property
    def user_ids(self) -> np.ndarray:
        return self._user_serving[3]

    @property
    def item_ids(self) -> np.ndarray:
        return self._inputs.user_history.item_ids

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        user_sequence, catalogue_of, popularity, user_ids = self._user_serving
        users = np.asarray(users, dtype=np.int64)
        scores = np.tile(popularity / max(float(popularity.max(initial=0.0)), 1.0) * 1e-3, (len(users), 1))
        with_sequence = np.flatnonzero(user_sequence[users] >= 0)
        if len(with_sequence):
            chosen = self._inputs.sequences.take(user_sequence[users[with_sequence]])
            scores[with_sequence] = self.last_scores(chosen.items, chosen.offsets, chosen.users)
        unseen = np.ones(self.n_items, bool)
        unseen[self.known_items()] = False
        scores[:, unseen] = -np.inf
        out = np.full((len(users), len(catalogue_of)), -np.inf, dtype=np.float32)
        mapped = catalogue_of >= 0
        out[:, mapped] = scores[:, catalogue_of[mapped]]
        return out


def known_pairs(a: np.ndarray, b: np.ndarray, n_known: int) -> np.ndarray:
    """Pairs whose two indices are both among the first ``n_known`` (the items a model knows)."""
    return (a >= 0) & (b >= 0) & (a < n_known) & (b < n_known)


def top_n_rows(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``n`` largest finite entries per row, best first, ties by index.

    ``scores`` is one dense block of rows (a chunk of items x all items), never the whole matrix.
    """
    rows, cols = scores.shape
    k = min(n, cols)
    if k == 0:
        return np.full((rows, n), -1, np.int64), np.zeros((rows, n), np.float32)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < cols else np.tile(np.arange(cols), (rows, 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx, vals = np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
    idx = np.where(np.isfinite(vals), idx, -1)
    vals = np.where(np.isfinite(vals), vals, 0.0).astype(np.float32)
    if k < n:
        idx = np.pad(idx, ((0, 0), (0, n - k)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, n - k)))
    return idx, vals


def write_meta(folder: Path, **meta) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(folder: Path) -> dict:
    return json.loads((folder / "model.json").read_text())
