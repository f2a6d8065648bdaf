"""Item sequences (recsys/sequences.py), the next-item protocol and metrics (recsys/next_item.py) and what
every sequence model gets from ``SequenceModel``: hand-made cases with hand-computed answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recsys.interactions import Interactions
from recsys.models.base import ItemModel, SequenceModel, TrainingInputs, top_n_rows
from recsys.next_item import bootstrap_intervals, headline_columns, next_item_metrics, next_item_top_k, target_ranks
from recsys.sequences import Sequences, holdout_sessions, load_sequences, save_sequences, sequences_from_events


def _events(rows):
    session, user, item, t = zip(*rows)
    return pa.table({"session_id": list(session), "user_id": list(user), "item_id": list(item), "t": list(t)})


CATALOGUE = pa.array(["a", "b", "c", "d"])


def test_sessions_become_index_sequences_in_time_order():
    events = _events([("s1", "u1", "b", 10), ("s1", "u1", "b", 11), ("s1", "u1", "zz", 12), ("s1", "u1", "c", 13),
                      ("s2", "u2", "a", 5), ("s2", "u2", "d", 6), ("s3", "u1", "d", 20)])
    collapsed = sequences_from_events(events, CATALOGUE, collapse_repeats=True)
    assert [collapsed.sequence(s).tolist() for s in range(len(collapsed))] == [[0, 3], [1, 2], [3]]  # s2 starts first
    assert collapsed.users.tolist() == ["u2", "u1", "u1"] and collapsed.starts.tolist() == [5, 10, 20]
    kept = sequences_from_events(events, CATALOGUE, collapse_repeats=False, min_length=2)
    assert [kept.sequence(s).tolist() for s in range(len(kept))] == [[0, 3], [1, 1, 2]]


def test_a_repeat_around_an_unknown_item_collapses_and_bots_are_left_out():
    events = _events([("s1", "u1", "a", 1), ("s1", "u1", "zz", 2), ("s1", "u1", "a", 3), ("s1", "u1", "b", 4),
                      ("s2", "u2", "a", 1), ("s2", "u2", "b", 2), ("s2", "u2", "c", 3), ("s2", "u2", "d", 4),
                      ("s2", "u2", "a", 5)])
    sequences = sequences_from_events(events, CATALOGUE, collapse_repeats=True, max_length=4)
    assert len(sequences) == 1 and sequences.sequence(0).tolist() == [0, 1]  # s2 has 5 events > 4


def test_take_keep_items_by_user_and_latest():
    sequences = Sequences.from_lists([[0, 1], [2], [1, 3, 0]], users=["x", "y", "x"], starts=[1, 2, 3])
    assert sequences.take(np.array([2, 0])).items.tolist() == [1, 3, 0, 0, 1]
    assert sequences.take(np.array([False, True, True])).offsets.tolist() == [0, 1, 4]
    known = np.array([True, True, False, False])
    kept = sequences.keep_items(known, min_length=2)
    assert [kept.sequence(s).tolist() for s in range(len(kept))] == [[0, 1], [1, 0]]
    by_user = sequences.by_user()
    assert by_user.users.tolist() == ["x", "y"] and by_user.sequence(0).tolist() == [0, 1, 1, 3, 0]
    assert sequences.latest_per_user() == {"x": 2, "y": 1}
    prefix_end, target = sequences.positions()
    assert prefix_end.tolist() == [0, 3, 4] and target.tolist() == [1, 4, 5]


def test_sequences_round_trip_through_parquet(tmp_path: Path):
    sequences = Sequences.from_lists([[3, 1], [2, 2, 0]], users=["p", "q"], starts=[7, 9])
    save_sequences(sequences, tmp_path)
    back = load_sequences(tmp_path)
    assert back.items.tolist() == sequences.items.tolist() and back.offsets.tolist() == sequences.offsets.tolist()
    assert back.users.tolist() == ["p", "q"] and back.starts.tolist() == [7, 9]


def test_holdout_sessions_drop_unknown_items_then_short_sessions_and_cap_with_the_seed():
    sequences = Sequences.from_lists([[0, 9], [1, 2, 9], [3], [4, 5], [6, 7]])
    known = np.arange(10) < 9
    kept = holdout_sessions(sequences, known, max_sessions=10, seed=0)
    assert [kept.sequence(s).tolist() for s in range(len(kept))] == [[1, 2], [4, 5], [6, 7]]
    capped = holdout_sessions(sequences, known, max_sessions=2, seed=1)
    assert len(capped) == 2 and capped.starts.tolist() == sorted(capped.starts.tolist())
    assert capped.items.tolist() == holdout_sessions(sequences, known, max_sessions=2, seed=1).items.tolist()


def test_next_item_metrics_by_hand():
    top = np.array([[3, 1, 2], [0, 1, 2], [5, 6, 7], [2, -1, -1]])
    targets = np.array([1, 0, 4, 2])
    assert target_ranks(top, targets).tolist() == [2, 1, 0, 1]
    metrics = next_item_metrics(top, targets, (1, 3))
    assert metrics["predictions"] == 4
    assert metrics["next_recall@1"] == pytest.approx(2 / 4) and metrics["next_mrr@1"] == pytest.approx(2 / 4)
    assert metrics["next_recall@3"] == pytest.approx(3 / 4)
    assert metrics["next_mrr@3"] == pytest.approx((1 / 2 + 1 + 0 + 1) / 4)


def test_bootstrap_intervals_resample_whole_sessions():
    ranks = np.array([1, 0, 2, 0, 1, 1])
    session = np.array([0, 0, 1, 1, 2, 2])
    intervals = bootstrap_intervals(ranks, session, 3, (1, 2), resamples=500, seed=3)
    estimate = (ranks == 1).mean()
    assert intervals["next_recall@1_lo"] <= estimate <= intervals["next_recall@1_hi"]
    assert intervals["next_recall@1_se"] > 0
    assert intervals == bootstrap_intervals(ranks, session, 3, (1, 2), resamples=500, seed=3)
    same = bootstrap_intervals(np.array([1, 0, 1, 0]), np.array([0, 0, 1, 1]), 2, (1,), resamples=200, seed=0)
    assert same["next_recall@1_lo"] == same["next_recall@1_hi"] == 0.5  # identical sessions: no spread
    row = headline_columns({"predictions": 6, "next_recall@2": 0.5, **intervals}, 2)
    assert row["next_recall"] == 0.5 and row["next_recall_lo"] == intervals["next_recall@2_lo"]
    assert np.isnan(headline_columns({}, 20)["next_mrr"])


class Bigram(SequenceModel):
    """Scores the item after the prefix's last item by how often it followed it in training."""

    name = "bigram"

    def __init__(self, counts: np.ndarray):
        self.counts, self.n_items, self.meta = counts.astype(np.float32), len(counts), {}

    @classmethod
    def fit(cls, inputs: TrainingInputs, params=None) -> "Bigram":
        seqs, n = inputs.sequences, inputs.catalog.n_items
        counts = np.zeros((n, n))
        for s in range(len(seqs)):
            items = seqs.sequence(s)
            np.add.at(counts, (items[:-1], items[1:]), 1)
        return cls(counts)

    def known_items(self) -> np.ndarray:
        return np.flatnonzero(self.counts.sum(0) + self.counts.sum(1) > 0)

    def position_scores(self, items, offsets, users=None):
        return self.counts[items]

    def save(self, folder):  # pragma: no cover - not persisted in these tests
        raise NotImplementedError

    @classmethod
    def load(cls, folder, inputs):  # pragma: no cover
        raise NotImplementedError


class Neighbours(ItemModel):
    name = "neighbours"

    def __init__(self, lists: np.ndarray):
        self.lists = lists

    def known_items(self):
        return np.arange(len(self.lists))

    def pair_scores(self, a, b):
        return np.zeros(len(a), np.float32)

    def similar(self, nodes, n):
        return self.lists[nodes][:, :n], np.ones((len(nodes), n), np.float32)

    def save(self, folder):  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def load(cls, folder, inputs):  # pragma: no cover
        raise NotImplementedError


def test_sequence_models_answer_from_the_prefix_item_models_from_the_last_item():
    counts = np.zeros((4, 4))
    counts[0, 1], counts[1, 2], counts[2, 3], counts[1, 3] = 3, 2, 1, 1
    tests = Sequences.from_lists([[0, 1, 3], [2, 3]])
    top, targets, session = next_item_top_k(Bigram(counts), tests, 2)
    assert targets.tolist() == [1, 3, 3] and session.tolist() == [0, 0, 1]
    assert top.tolist() == [[1, 0], [2, 3], [3, 0]]  # ties by index
    lists = np.array([[1, 2], [3, 0], [0, 1], [2, 1]])
    top, _, _ = next_item_top_k(Neighbours(lists), tests, 2)
    assert top.tolist() == [[1, 2], [3, 0], [0, 1]]
    assert next_item_metrics(top, targets, (1,))["next_recall@1"] == pytest.approx(2 / 3)


def test_a_sequence_model_serves_items_and_users_through_its_continuations(tiny_inputs):
    model = Bigram.fit(tiny_inputs).bind(tiny_inputs)
    neighbours, scores = model.similar(np.array([0, 1, 3]), 2)
    assert neighbours.tolist() == [[1, 2], [0, 2], [-1, -1]]  # never itself, never an item it never saw (d)
    assert scores[0].tolist() == [2.0, 0.0]
    assert model.pair_scores(np.array([0, 1, -1]), np.array([1, 2, 1])).tolist() == [2.0, 0.0, 0.0]
    history = tiny_inputs.user_history
    scores = model.user_scores(np.arange(len(history.user_ids)))
    # user "v"'s latest sequence is [2, 1]: its continuation is the bigram row of b; the matrix lists items c, b, a
    v = list(history.user_ids).index("v")
    assert {item: scores[v, j] for j, item in enumerate(history.item_ids)} == {"c": 0.0, "b": 0.0, "a": 2.0}  # b -> a twice
    w = list(history.user_ids).index("w")  # no sequence: popularity, scaled small
    assert np.argmax(scores[w]) == list(history.item_ids).index("b")


@pytest.fixture
def tiny_inputs() -> TrainingInputs:
    from recsys.catalog import build_catalog
    from recsys.transition import TransitionTable

    ids = np.array(["a", "b", "c", "d"], dtype=object)
    table = TransitionTable.from_edges(ids, np.array([0, 1]), np.array([1, 0]), np.array([1.0, 1.0]))
    inputs = TrainingInputs(table=table, catalog=build_catalog(table, None),
                            item_stats=pa.table({"item_id": list(ids), "events": [1] * 4}))
    inputs.sequences = Sequences.from_lists([[1, 0], [0, 1, 0, 1], [2, 1]], users=["v", "u", "v"], starts=[0, 1, 2])
    inputs.user_history = Interactions(np.array([0, 1, 2, 2]), np.array([2, 1]), np.ones(2, np.float32),
                                       np.array(["v", "w", "u"], dtype=object), np.array(["c", "b", "a"], dtype=object))
    return inputs


def test_top_n_rows_is_what_the_adapters_rank_with():
    idx, _ = top_n_rows(np.array([[0.1, 0.3, -np.inf, 0.3]]), 3)
    assert idx.tolist() == [[1, 3, 0]]


def test_sequence_models_are_scored_in_blocks_of_whole_sequences_with_the_same_answer(monkeypatch):
    import recsys.next_item as next_item

    counts = np.arange(16, dtype=float).reshape(4, 4) % 5
    tests = Sequences.from_lists([[0, 1, 3], [2, 3], [1], [3, 0, 2, 1], [2, 0]])
    whole = next_item_top_k(Bigram(counts), tests, 3)
    monkeypatch.setattr(next_item, "SCORE_CELLS", 8)  # 2 positions per block: every sequence alone, or more
    blocked = next_item_top_k(Bigram(counts), tests, 3)
    assert all(np.array_equal(a, b) for a, b in zip(whole, blocked))
