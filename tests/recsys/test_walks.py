"""Walk kernel (exact expectations on tiny graphs) and the Spark walks stage (same walks as local)."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from recsys.config import WalksConfig
from recsys.transition import TransitionTable
from recsys.walk_kernel import build_alias, random_walks, walk_steps
from recsys.lake import read_walks
from recsys.walks import generate_walks, generate_walks_local


def _csr(n: int, edges: list[tuple[int, int, float]]):
    src = np.array([e[0] for e in edges]); dst = np.array([e[1] for e in edges]); w = np.array([e[2] for e in edges])
    return TransitionTable.from_edges(np.array([f"n{i}" for i in range(n)], dtype=object), src, dst, w)


def _walk(table, starts, length, seed, ids=None):
    starts = np.asarray(starts, dtype=np.int32)
    ids = np.arange(len(starts), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    nodes, offsets = random_walks(table.indptr, table.indices, table.alias_prob, table.alias_idx, starts, ids, length, seed)
    return [nodes[offsets[i]:offsets[i + 1]].tolist() for i in range(len(starts))], offsets


def test_chain_with_dead_end_stops_early():
    table = _csr(3, [(0, 1, 1.0), (1, 2, 1.0)])
    walks, offsets = _walk(table, [0, 1, 2], 5, seed=1)
    assert walks == [[0, 1, 2], [1, 2], [2]]
    assert walk_steps(offsets) == 3


def test_transition_frequencies_follow_weights():
    table = _csr(3, [(0, 1, 1.0), (0, 2, 3.0), (1, 0, 1.0), (2, 0, 1.0)])
    walks, _ = _walk(table, np.zeros(40000), 2, seed=3)
    share_of_2 = np.mean([w[1] == 2 for w in walks])
    assert abs(share_of_2 - 0.75) < 0.01


def test_alias_tables_reproduce_each_row_distribution():
    rng = np.random.default_rng(0)
    indptr = np.array([0, 1, 4, 4, 9], dtype=np.int64)
    weights = rng.random(9).astype(np.float32) + 0.01
    prob, alias = build_alias(indptr, weights)
    for row in range(4):
        lo, hi = indptr[row], indptr[row + 1]
        implied = np.zeros(hi - lo)
        for slot in range(lo, hi):
            implied[slot - lo] += prob[slot] / (hi - lo)
            implied[alias[slot] - lo] += (1 - prob[slot]) / (hi - lo)
            assert lo <= alias[slot] < hi
        if hi > lo:
            assert np.allclose(implied, weights[lo:hi] / weights[lo:hi].sum(), atol=1e-6)


def test_walks_are_seeded_per_walk_and_follow_edges():
    rng = np.random.default_rng(1)
    edges = [(int(a), int(b), float(w)) for a, b, w in zip(rng.integers(0, 50, 400), rng.integers(0, 50, 400), rng.random(400) + 0.1) if a != b]
    unique = {(a, b): w for a, b, w in edges}
    table = _csr(50, [(a, b, w) for (a, b), w in sorted(unique.items())])
    starts = np.arange(50).repeat(4)
    whole, _ = _walk(table, starts, 12, seed=9)
    parts = [w for chunk in np.array_split(np.arange(len(starts)), 3)
             for w in _walk(table, starts[chunk], 12, seed=9, ids=chunk)[0]]
    assert parts == whole  # partitioning never changes a walk
    assert _walk(table, starts, 12, seed=10)[0] != whole
    edge_set = {(a, b) for a, b, _ in edges}
    assert all((w[i], w[i + 1]) in edge_set for w in whole for i in range(len(w) - 1))


def test_empty_starts():
    table = _csr(2, [(0, 1, 1.0)])
    walks, offsets = _walk(table, [], 5, seed=1)
    assert walks == [] and offsets.tolist() == [0]


def test_spark_stage_writes_the_same_walks_as_the_local_kernel(spark, tmp_path):
    rng = np.random.default_rng(2)
    pairs = {(int(a), int(b)): float(w) for a, b, w in zip(rng.integers(0, 300, 3000), rng.integers(0, 300, 3000), rng.random(3000)) if a != b}
    table = _csr(301, [(a, b, w) for (a, b), w in sorted(pairs.items())])  # node 300 is isolated: no walks from it
    config = WalksConfig(walks_per_node=3, walk_length=15, partitions=5)

    result = generate_walks(spark, table, config, seed=11, out=tmp_path / "walks")
    written = read_walks(tmp_path / "walks")
    local = generate_walks_local(table, config, seed=11).column("walk")

    assert written.type.value_type.bit_width == 32
    assert written.to_pylist() == local.to_pylist()
    assert result.walks == 3 * 300 == len(written) and result.start_nodes == 300
    assert result.steps == int(pc.sum(pc.list_value_length(written)).as_py()) - len(written)
    other = generate_walks(spark, table, config.model_copy(update={"partitions": 2}), seed=11, out=tmp_path / "w2")
    assert read_walks(tmp_path / "w2").to_pylist() == written.to_pylist() and other.walks == result.walks
