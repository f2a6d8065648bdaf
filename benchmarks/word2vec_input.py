"""gensim word2vec fed from a corpus file vs from a Python iterator, on the same walks, side by side.

Generates walks over the embedded sample's graph (or a run's walks with ``--walks``), then trains the
project's word2vec both ways with the same parameters and threads, and reports words per second
and the ratio. The pipeline keeps the faster input mode as its default (``train.word2vec.input_mode``).

    python benchmarks/word2vec_input.py --threads 1
    python benchmarks/word2vec_input.py --threads 2
    python benchmarks/word2vec_input.py --walks data/lake/runs/<run_id>/walks
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.config import WalksConfig  # noqa: E402
from recsys.models.params import Word2VecParams  # noqa: E402
from recsys.models.word2vec import corpus_words, train_word2vec  # noqa: E402
from recsys.sample import generate_sample  # noqa: E402
from recsys.transition import TransitionTable  # noqa: E402
from recsys.lake import read_walks  # noqa: E402
from recsys.walks import generate_walks_local  # noqa: E402


def sample_walks(walks_per_node: int, length: int, seed: int) -> pa.ChunkedArray:
    """Walks over a co-occurrence graph of the sample's sessions (consecutive views, same user, < 30 min)."""
    events, _ = generate_sample()
    users = np.array(events.column("user_id").to_pylist())
    items = np.array([int(i[1:]) - 1 for i in events.column("item_id").to_pylist()])
    seconds = events.column("timestamp").cast(pa.int64()).to_numpy() // 1_000_000
    order = np.lexsort((seconds, users))
    users, items, seconds = users[order], items[order], seconds[order]
    linked = (users[1:] == users[:-1]) & (seconds[1:] - seconds[:-1] < 1800) & (items[1:] != items[:-1])
    src, dst = np.r_[items[:-1][linked], items[1:][linked]], np.r_[items[1:][linked], items[:-1][linked]]
    pairs, counts = np.unique(np.c_[src, dst], axis=0, return_counts=True)
    ids = np.array([f"i{i + 1:04d}" for i in range(items.max() + 1)], dtype=object)
    table = TransitionTable.from_edges(ids, pairs[:, 0], pairs[:, 1], counts.astype(float))
    return generate_walks_local(table, WalksConfig(walks_per_node=walks_per_node, walk_length=length), seed).column("walk")


def timed(walks: pa.ChunkedArray, params: Word2VecParams, threads: int, seed: int) -> tuple[float, int]:
    started = time.perf_counter()
    model = train_word2vec(walks, params, threads, seed)
    return time.perf_counter() - started, model.corpus_total_words * params.epochs


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--walks", type=Path, help="a run's walks folder (default: walks over the embedded sample)")
    cli.add_argument("--walks-per-node", type=int, default=20)
    cli.add_argument("--length", type=int, default=20)
    cli.add_argument("--threads", type=int, default=1)
    cli.add_argument("--epochs", type=int, default=3)
    cli.add_argument("--seed", type=int, default=1)
    args = cli.parse_args()

    walks = read_walks(args.walks) if args.walks else sample_walks(args.walks_per_node, args.length, args.seed)
    tokens = corpus_words(walks)
    print(f"walks: {len(walks):,} walks, {tokens:,} tokens; threads {args.threads}, epochs {args.epochs}")
    rates = {}
    for mode in ("corpus_file", "iterator"):
        params = Word2VecParams(epochs=args.epochs, input_mode=mode)
        seconds, words = timed(walks, params, args.threads, args.seed)
        rates[mode] = words / seconds
        print(f"{mode:12s}: {seconds:6.1f} s (corpus writing included) = {rates[mode]:,.0f} words/s")
    print(f"corpus_file / iterator = {rates['corpus_file'] / rates['iterator']:.2f}x")


if __name__ == "__main__":
    main()
