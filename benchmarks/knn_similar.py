"""item_knn's item-to-item neighbours: one sort for many anchors against the old loop, one anchor at a time.

Loads a run's item graph (``runs/<run>/graph/transition.npz``, e.g. from ``benchmarks/scale.py``), builds
the item side of ``ItemKNNModel`` and ranks every known item's top ``--n`` neighbours in the publish
stage's blocks of anchors, twice in one process: ``similar`` as it is (``recsys.ranking.best_first_per_row``
over a group of anchors' CSR entries) and the loop it replaced (``top_n_rows`` on each anchor's row,
kept here as the peer). Prints both times, their ratio, and whether the two agree (they may differ only
where neighbours tie at the cut: the loop's ``argpartition`` picks among them arbitrarily).

    python benchmarks/knn_similar.py /tmp/recsys-scale/scale-10M-*/lake/runs/*/graph
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.models.base import top_n_rows  # noqa: E402
from recsys.models.item_knn import ItemKNNModel  # noqa: E402
from recsys.publish import BLOCK_CELLS  # noqa: E402
from recsys.transition import TransitionTable  # noqa: E402


def loop_similar(model: ItemKNNModel, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The replaced implementation: one ``top_n_rows`` call per anchor."""
    out_idx = np.full((len(nodes), n), -1, dtype=np.int64)
    out_val = np.zeros((len(nodes), n), dtype=np.float32)
    for row, node in enumerate(nodes):
        lo, hi = model.indptr[node], model.indptr[node + 1]
        if hi > lo:
            idx, val = top_n_rows(model.cosine[None, lo:hi], n)
            found = idx[0] >= 0
            out_idx[row, found[:n]] = model.indices[lo:hi][idx[0][found]]
            out_val[row, found[:n]] = val[0][found]
    return out_idx, out_val


def timed(similar, anchors: np.ndarray, n: int) -> tuple[float, np.ndarray]:
    block = max(1, BLOCK_CELLS // n)
    started = time.perf_counter()
    parts = [similar(anchors[lo:lo + block], n)[0] for lo in range(0, len(anchors), block)]
    return time.perf_counter() - started, np.concatenate(parts)


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("graph", type=Path, help="a run's graph folder (holding transition.npz)")
    cli.add_argument("--n", type=int, default=20, help="neighbours per item (the publish stage's top_n)")
    args = cli.parse_args(argv)
    table = TransitionTable.load(args.graph)
    model = ItemKNNModel(table)
    anchors = model.known_items()
    print(f"graph: {table.n_nodes:,} items, {len(table.indices):,} edges; {len(anchors):,} anchors, n = {args.n}")
    new_seconds, new = timed(model.similar, anchors, args.n)
    old_seconds, old = timed(lambda nodes, n: loop_similar(model, nodes, n), anchors, args.n)
    rows_differ = int((new != old).any(axis=1).sum())
    print(f"  similar (one sort per group of anchors): {new_seconds:.2f} s")
    print(f"  loop over anchors (top_n_rows per row):  {old_seconds:.2f} s  -> {old_seconds / new_seconds:.1f}x")
    print(f"  anchors whose lists differ: {rows_differ:,} (ties at the cut)")


if __name__ == "__main__":
    main()
