"""gensim word2vec vs the PyTorch skip-gram on the same walks, side by side: training pairs per second.

Both train skip-gram with negative sampling with the same dimension, window, negatives, subsampling
threshold, epochs and threads on the same walks (the embedded sample's by default, or a run's with
``--walks``). Both use word2vec's subsampling and dynamic window, so an epoch yields the same expected
number of (centre, context) pairs; the PyTorch trainer counts its own, and gensim's rate is taken over
that same count, so the ratio of rates is the ratio of training times. The PyTorch model runs once per
``--groups`` value (how many pairs share one draw of negatives; 1 = word2vec's own draw per pair).

    python benchmarks/embeddings.py --threads 1
    python benchmarks/embeddings.py --threads 1 --walks data/lake/diginetica/runs/<run_id>/walks
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recsys.models.params import SkipGramParams, Word2VecParams  # noqa: E402
from recsys.lake import read_walks  # noqa: E402
from recsys.models.negative_sampling import FlatWalks  # noqa: E402
from recsys.models.skipgram import train_skipgram  # noqa: E402
from recsys.models.word2vec import corpus_words, train_word2vec  # noqa: E402
from word2vec_input import sample_walks  # noqa: E402


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--walks", type=Path, help="a run's walks folder (default: walks over the embedded sample)")
    cli.add_argument("--walks-per-node", type=int, default=10)
    cli.add_argument("--length", type=int, default=20)
    cli.add_argument("--threads", type=int, default=1)
    cli.add_argument("--epochs", type=int, default=3)
    cli.add_argument("--dim", type=int, default=64)
    cli.add_argument("--groups", type=int, nargs="+", default=[8, 1])
    cli.add_argument("--seed", type=int, default=1)
    args = cli.parse_args()

    walks = read_walks(args.walks) if args.walks else sample_walks(args.walks_per_node, args.length, args.seed)
    flat = FlatWalks.from_arrow(walks)
    n_nodes = int(flat.tokens.max()) + 1
    tokens = corpus_words(walks)
    print(f"walks: {len(walks):,} walks, {tokens:,} tokens, {n_nodes:,} nodes; dim {args.dim}, window 5, negative 5, "
          f"sample 1e-3, epochs {args.epochs}, threads {args.threads}")

    started = time.perf_counter()
    train_word2vec(walks, Word2VecParams(vector_size=args.dim, epochs=args.epochs), args.threads, args.seed)
    gensim_seconds = time.perf_counter() - started

    results = {}
    for group in args.groups:
        params = SkipGramParams(vector_size=args.dim, epochs=args.epochs, negatives_shared_by=group,
                                batch_size=2048 - 2048 % group)
        started = time.perf_counter()
        _, _, records = train_skipgram(flat, n_nodes, params, args.threads, args.seed)
        results[group] = (time.perf_counter() - started, sum(r.pairs for r in records))

    pairs = np.mean([p for _, p in results.values()])
    gensim_rate = pairs / gensim_seconds
    print(f"{'gensim word2vec':28s}: {gensim_seconds:7.1f} s = {gensim_rate:12,.0f} pairs/s (corpus writing included)")
    for group, (seconds, count) in results.items():
        rate = count / seconds
        print(f"{'PyTorch skip-gram, group ' + str(group):28s}: {seconds:7.1f} s = {rate:12,.0f} pairs/s "
              f"= {rate / gensim_rate:.2f}x gensim ({count:,} pairs)")


if __name__ == "__main__":
    main()
