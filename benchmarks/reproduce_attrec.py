"""AttRec, GRU4Rec, item-kNN and popularity on MovieLens 100K, leave-last-out, with AttRec's own metrics.

The protocol of AttRec (Zhang et al. 2018, "Next Item Recommendation with Self-Attention",
https://arxiv.org/abs/1808.06414) and its authors' code (``cheungdaven/DeepRec``: the ML-100K split of
``data/ml100k/temp`` holds out exactly one rating per user, the latest; ``utils/evaluation/SeqRecMetrics.py``):

- every rating is an interaction (implicit feedback, the rating value ignored);
- per user, the ratings in time order (ties in time kept in the file's order: ML-100K rates many movies
  in the same second, so which of them is "last" is the file's choice); the last one is the test target,
  the rest, in order, the user's training sequence;
- each user's target is ranked among all items; by default the user's training items are excluded from
  the ranking (``--keep-seen`` keeps them), as the authors' evaluation ranks only the items the user did
  not have (ML-100K has no repeated rating, so a target is never among them); ties go to the lower item
  index, as everywhere in the ranking code;
- HR@50: the share of users whose target is in the top 50; MRR: the mean of 1/rank over the full
  ranking (not truncated, as the authors' code computes it); HR@10 and MRR@50 alongside.

Models (all from this package; none reads the test targets):

- ``attrec``: ``AttRecModel`` on the training sequences (one per user), scored from the last ``L`` items
  of the user's training sequence and the user's embedding (``last_scores``);
- ``gru4rec``: ``GRU4RecModel`` with each user's whole training sequence as one session, scored from it;
- ``item_knn``: ``ItemKNNModel``'s user-to-item side (RecBole's ItemKNN, cosine, 100 neighbours) on the
  binary user x item matrix of the training ratings;
- ``popular``: ``PopularModel``'s user-to-item side (distinct users per item).

``recsys/next_item.py`` scores every position of test sessions without users; this protocol is one
prediction per user with the user known, so the ranking is done here.

    python benchmarks/reproduce_attrec.py --threads 1 --epochs 30 --gru-epochs 5

That command (seed 0, 2 shared CPU cores, about 5 minutes) gave HR@50 / MRR: attrec 0.5175 / 0.1105,
gru4rec 0.4486 / 0.0838, item_knn 0.3372 / 0.0624, popular 0.1983 / 0.0416. The authors report
HR@50 0.5313, MRR 0.0911 for their code on their split (best epoch chosen on the test targets).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.catalog import Catalog  # noqa: E402
from recsys.interactions import Interactions  # noqa: E402
from recsys.models.attrec import AttRecModel  # noqa: E402
from recsys.models.base import TrainingInputs  # noqa: E402
from recsys.models.item_knn import ItemKNNModel  # noqa: E402
from recsys.models.params import AttRecParams  # noqa: E402
from recsys.models.popular import PopularModel  # noqa: E402
from recsys.sequences import Sequences  # noqa: E402

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
MODELS = ("attrec", "gru4rec", "item_knn", "popular")
USERS_PER_BLOCK = 256
# The authors' answer in cheungdaven/DeepRec issue #8 (2019-05-15), their code on their ML-100K split, best
# epoch (chosen on the test targets): HR@50 0.5313, MRR 0.0911. The paper's own table was not retrievable here.
AUTHORS_CODE = (0.5313, 0.0911)


# -- the split --------------------------------------------------------------------------------------------------

def read_ratings(folder: Path) -> dict[str, np.ndarray]:
    """``ml-100k.inter`` (RecBole's atomic file, tab-separated, one header line) or the original ``u.data``."""
    inter, data = folder / "ml-100k.inter", folder / "u.data"
    path = inter if inter.is_file() else data
    if not path.is_file():
        raise SystemExit(f"{folder}: neither ml-100k.inter nor u.data")
    table = np.loadtxt(path, delimiter="\t", skiprows=1 if path == inter else 0, dtype=np.float64, ndmin=2)
    return {"user": table[:, 0].astype(np.int64), "item": table[:, 1].astype(np.int64), "time": table[:, 3].astype(np.int64),
            "path": path}


def leave_last_out(ratings: dict[str, np.ndarray]) -> dict:
    """Per user in time order (file order on ties): the last rating is the test, the rest the training sequence."""
    item_ids, items = np.unique(ratings["item"], return_inverse=True)
    user_ids, users = np.unique(ratings["user"], return_inverse=True)
    order = np.lexsort((np.arange(len(users)), ratings["time"], users))  # stable: file order breaks ties
    users, items, times = users[order], items[order], ratings["time"][order]
    last = np.r_[users[1:] != users[:-1], True]
    counts = np.bincount(users, minlength=len(user_ids))
    if (counts < 2).any():
        raise SystemExit(f"{int((counts < 2).sum())} users have fewer than two ratings: nothing to train on")
    train_users, train_items = users[~last], items[~last]
    offsets = np.r_[0, np.cumsum(counts - 1)].astype(np.int64)
    first_time = times[np.r_[True, users[1:] != users[:-1]]]
    sequences = Sequences(train_items.astype(np.int64), offsets, user_ids.astype(str).astype(object), first_time)
    seen = np.bincount(train_items, minlength=len(item_ids)) > 0
    return {"sequences": sequences, "test_items": items[last], "train_users": train_users, "train_items": train_items,
            "n_users": len(user_ids), "n_items": len(item_ids), "item_ids": item_ids, "ratings": len(users),
            "cold_targets": int((~seen[items[last]]).sum())}


def training_inputs(split: dict, seed: int, threads: int) -> TrainingInputs:
    n = split["n_items"]
    ids = split["item_ids"].astype(str).astype(object)
    catalog = Catalog(ids, n, np.full(n, None, object), np.full(n, None, object), np.full(n, np.nan))
    interactions = Interactions.from_indices(split["train_users"], split["train_items"], n_users=split["n_users"],
                                             n_items=n, binary=True)
    return TrainingInputs(None, catalog, None, seed=seed, threads=threads, interactions=interactions,
                          sequences=split["sequences"])


# -- scoring and metrics ------------------------------------------------------------------------------------------

def target_ranks(score_block, split: dict, keep_seen: bool) -> np.ndarray:
    """1-based rank of each user's target among all items (ties to the lower index), training items excluded
    unless ``keep_seen``; ``score_block(users)`` gives ``(len(users), n_items)`` scores, higher = better."""
    sequences, targets = split["sequences"], split["test_items"]
    ranks = np.zeros(split["n_users"], np.int64)
    for first in range(0, split["n_users"], USERS_PER_BLOCK):
        users = np.arange(first, min(first + USERS_PER_BLOCK, split["n_users"]))
        scores = np.asarray(score_block(users), dtype=np.float64)
        if not keep_seen:
            rows = np.repeat(np.arange(len(users)), sequences.lengths[users])
            seen = sequences.take(users).items
            not_target = seen != targets[users][rows]
            scores[rows[not_target], seen[not_target]] = -np.inf
        target = scores[np.arange(len(users)), targets[users]][:, None]
        below = np.arange(scores.shape[1])[None, :] < targets[users][:, None]
        ranks[users] = (scores > target).sum(1) + ((scores == target) & below).sum(1) + 1
    return ranks


def metrics(ranks: np.ndarray) -> dict[str, float]:
    return {"hr@10": float(np.mean(ranks <= 10)), "hr@50": float(np.mean(ranks <= 50)),
            "mrr": float(np.mean(1.0 / ranks)), "mrr@50": float(np.mean(np.where(ranks <= 50, 1.0 / ranks, 0.0)))}


# -- the models ------------------------------------------------------------------------------------------------------

def sequence_scorer(model, split: dict):
    sequences = split["sequences"]

    def block(users: np.ndarray) -> np.ndarray:
        chosen = sequences.take(users)
        return model.last_scores(chosen.items, chosen.offsets, chosen.users)
    return block


def run_model(name: str, split: dict, args) -> dict:
    inputs = training_inputs(split, args.seed, args.threads)
    started = time.perf_counter()
    epochs, curve, params = 0, [], {}
    if name == "attrec":
        settings = AttRecParams(L=args.L, T=args.T, omega=args.omega, dim=args.dim, margin=args.margin,
                                negatives=args.negatives, lr=args.lr, l2=args.l2, batch_size=args.batch_size,
                                epochs=args.epochs)
        model = AttRecModel.fit(inputs, settings)
        scorer, epochs, curve, params = sequence_scorer(model, split), settings.epochs, model.meta["curve"], settings.model_dump()
    elif name == "gru4rec":
        from recsys.models.gru4rec import GRU4RecModel
        from recsys.models.params import GRU4RecParams
        settings = GRU4RecParams(n_epochs=args.gru_epochs)
        model = GRU4RecModel.fit(inputs, settings)
        scorer, epochs, curve, params = sequence_scorer(model, split), settings.n_epochs, model.meta.get("curve", []), settings.model_dump()
    elif name == "item_knn":
        model = ItemKNNModel(None, inputs.interactions)
        scorer = model.user_scores
    else:
        R = inputs.interactions
        model = PopularModel(None, R.item_degrees(), R.user_ids, R.item_ids)
        scorer = model.user_scores
    trained = time.perf_counter() - started
    ranks = target_ranks(scorer, split, args.keep_seen)
    return {"model": name, "epochs": epochs, "train_seconds": round(trained, 1),
            "score_seconds": round(time.perf_counter() - started - trained, 1), "curve": curve, "params": params,
            **metrics(ranks)}


# -- the report --------------------------------------------------------------------------------------------------------

def print_table(split: dict, args, rows: list[dict]) -> None:
    sequences = split["sequences"]
    print(f"\nMovieLens 100K ({split['path']}): {split['ratings']:,} ratings, {split['n_users']:,} users, "
          f"{split['n_items']:,} items; leave-last-out by time (file order on ties): {len(sequences.items):,} training "
          f"ratings, {split['n_users']:,} test targets ({split['cold_targets']} of items never rated in training)")
    print(f"seed {args.seed}, threads {args.threads}; each target ranked among all {split['n_items']:,} items, "
          f"{'training items kept' if args.keep_seen else 'the user training items excluded'}; MRR over the full ranking")
    print()
    head = f"{'model':10s} {'epochs':>6s} {'HR@10':>7s} {'HR@50':>7s} {'MRR':>7s} {'MRR@50':>7s} {'train s':>8s} {'score s':>8s}"
    print(head)
    print("-" * len(head))
    for row in rows:
        print(f"{row['model']:10s} {row['epochs']:6d} {row['hr@10']:7.4f} {row['hr@50']:7.4f} {row['mrr']:7.4f} "
              f"{row['mrr@50']:7.4f} {row['train_seconds']:8.1f} {row['score_seconds']:8.1f}")
    hr, mrr = AUTHORS_CODE
    print(f"\nREFERENCE ONLY, not ours -- AttRec authors' code on their ML-100K leave-last-out split, best epoch "
          f"chosen on the test (DeepRec issue #8): HR@50 {hr:.4f}, MRR {mrr:.4f}")
    for row in rows:
        if row["curve"]:
            print(f"\n{row['model']} loss per epoch: " + ", ".join(f"{c['loss']:.4f}" for c in row["curve"]))


def parse_args(argv) -> argparse.Namespace:
    defaults = AttRecParams()
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--data", default=str(DATASETS / "ml-100k"), help="folder with ml-100k.inter (or u.data)")
    cli.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    cli.add_argument("--epochs", type=int, default=30, help="attrec epochs")
    cli.add_argument("--gru-epochs", type=int, default=10, help="gru4rec epochs")
    cli.add_argument("--L", type=int, default=defaults.L)
    cli.add_argument("--T", type=int, default=defaults.T)
    cli.add_argument("--omega", type=float, default=defaults.omega)
    cli.add_argument("--dim", type=int, default=defaults.dim)
    cli.add_argument("--margin", type=float, default=defaults.margin)
    cli.add_argument("--negatives", type=int, default=defaults.negatives)
    cli.add_argument("--lr", type=float, default=defaults.lr)
    cli.add_argument("--l2", type=float, default=defaults.l2)
    cli.add_argument("--batch-size", type=int, default=defaults.batch_size)
    cli.add_argument("--keep-seen", action="store_true", help="rank the user's training items too")
    cli.add_argument("--seed", type=int, default=0)
    cli.add_argument("--threads", type=int, default=1)
    return cli.parse_args(argv)


def main(argv=None) -> dict:
    """Run the benchmark; returns ``{"seed", "split", "models": {name: row}}``."""
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    ratings = read_ratings(Path(args.data))
    split = {**leave_last_out(ratings), "path": ratings["path"]}
    rows = []
    for name in args.models:
        print(f"training {name} ...", flush=True)
        rows.append(run_model(name, split, args))
    print_table(split, args, rows)
    return {"seed": args.seed, "split": "leave-last-out", "models": {row["model"]: row for row in rows}}


if __name__ == "__main__":
    main(sys.argv[1:])
