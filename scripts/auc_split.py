"""Split a run's overall AUC-ROC into its parts: seen pairs against seen pairs, and seen pairs against
pairs the model scores with its fallback (cold or unknown items). Used in docs/models.md to show why
an id-only model's overall AUC can move while its ranking of the pairs it knows does not.

    python scripts/auc_split.py <lake>/runs/<run_id> mf_pairs mf_walks
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.holdout import load_holdout  # noqa: E402
from recsys.metrics import auc_roc  # noqa: E402
from recsys.models import model_class  # noqa: E402
from recsys.train import load_training_inputs  # noqa: E402


def cross_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(tie) over all pairs of the two arrays (they are small: a holdout split)."""
    return float(((positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])).mean())


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("run", type=Path, help="a run folder: <lake>/runs/<run_id>")
    cli.add_argument("models", nargs="+")
    args = cli.parse_args()
    holdout = load_holdout(args.run / "holdout")
    a, b = holdout.column("a").to_numpy(), holdout.column("b").to_numpy()
    label = holdout.column("label").to_numpy().astype(bool)
    seen = holdout.column("split").to_numpy(zero_copy_only=False) == "seen"
    inputs = load_training_inputs(args.run / "graph")
    for name in args.models:
        model = model_class(name).load(args.run / "models" / name, inputs)
        scores = model.pair_scores(a, b)
        pos_seen, neg_seen, pos_rest, neg_rest = (scores[label & seen], scores[~label & seen],
                                                  scores[label & ~seen], scores[~label & ~seen])
        cross_pairs = len(pos_seen) * len(neg_rest) + len(pos_rest) * len(neg_seen)
        cross = (cross_auc(pos_seen, neg_rest) * len(pos_seen) * len(neg_rest)
                 + cross_auc(pos_rest, neg_seen) * len(pos_rest) * len(neg_seen)) / max(cross_pairs, 1)
        fallback = getattr(model, "fallback", 0.0)
        print(f"{name}: all {auc_roc(scores[label], scores[~label]):.4f}, seen vs seen {auc_roc(pos_seen, neg_seen):.4f}, "
              f"seen vs the rest {cross:.4f}; fallback {fallback:.3f}; seen positives above it "
              f"{(pos_seen > fallback).mean():.3f}, seen non-pairs above it {(neg_seen > fallback).mean():.3f}")


if __name__ == "__main__":
    main()
