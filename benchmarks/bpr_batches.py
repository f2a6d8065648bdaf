"""LightGCN with its steps per epoch capped (``max_batches_per_epoch``) next to the paper's schedule
(a batch of 2048 triples whatever the log's size), side by side in one run.

LightGCN propagates the whole graph at every Adam step (``recsys.models.lightgcn``, as the official code
does), so one step costs about as much as the interactions, and an epoch of the paper's schedule takes
interactions / 2048 steps: its cost grows with the square of the log. With the cap an epoch takes at most
``--cap`` steps, each batch holding ceil(triples / cap) triples and the learning rate multiplied by the same
factor (linear scaling), so an epoch costs O(interactions).

Data: the scale benchmark's synthetic logs (``benchmarks/scale.py`` ``scaled_log``: the embedded sample's
generator scaled up, seed 7), read with pyarrow into the binary user x item matrix. Each user's item of
their latest event is held out as the nightly's learning curves hold it out (``hold_out_latest``: ties on
the same second to the higher item index; only users who keep another item) and scored after every epoch
as the nightly's early stopping does (``RankingCurve``: validation NDCG@20 and Recall@20, 5,000 seeded users,
training items excluded). Both schedules train ``--epochs`` epochs with the same params (the defaults,
``patience`` 0), seed and one torch thread. The table gives steps and batch per epoch, the median epoch
seconds, the seconds per million triples, and the validation NDCG@20 after each epoch; then the ratio of
the capped schedule's epoch time to the paper's at each size, and each schedule's growth from the
smallest size to the largest against the growth of the interactions.

    python benchmarks/bpr_batches.py --sizes 300k 1M --cap 64 --epochs 5 --data /tmp/recsys-scale

``--cap 64`` makes the cap bite at these sizes (the default, 256, bites above about 525,000 interactions,
about 1.2M events), to measure at small sizes what the default does at 3M and 10M events.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recsys.interactions import Interactions  # noqa: E402
from recsys.models.base import TrainingInputs  # noqa: E402
from recsys.models.lightgcn import LightGCNModel  # noqa: E402
from recsys.models.negative_sampling import torch_threads  # noqa: E402
from recsys.models.params import LightGCNParams  # noqa: E402
from recsys.models.user_curves import hold_out_latest  # noqa: E402
from scale import parse_size, scaled_log  # noqa: E402


def train_and_latest(events_csv: Path) -> tuple[Interactions, Interactions]:
    """The binary user x item matrix of the log split as the nightly's learning curves split it
    (``hold_out_latest``): each user's item of their latest event (ties: the higher item index) held
    out when the user keeps another item."""
    events = pacsv.read_csv(events_csv, convert_options=pacsv.ConvertOptions(
        include_columns=["timestamp", "user_id", "item_id"])).to_pandas()
    users, items = pd.Categorical(events["user_id"]), pd.Categorical(events["item_id"])
    n_users, n_items = len(users.categories), len(items.categories)
    matrix = Interactions.from_indices(users.codes, items.codes, n_users=n_users, n_items=n_items, binary=True)
    seconds = (pd.to_datetime(events["timestamp"], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    pair = users.codes.astype("int64") * n_items + items.codes  # the matrix's entries in order: by user, then item
    last_seen = seconds.groupby(pair).max().to_numpy()
    return hold_out_latest(matrix, last_seen, min_items=2)


def fit(train: Interactions, validation: Interactions, epochs: int, cap: int | None, seed: int) -> list[dict]:
    params = LightGCNParams(epochs=epochs, patience=0, max_batches_per_epoch=cap)
    inputs = TrainingInputs(None, None, None, seed=seed, threads=1, interactions=train, user_validation=validation)
    with torch_threads(1):
        return LightGCNModel.fit(inputs, params).meta["curve"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["300k", "1M"], help="log sizes in events (300k, 1M, 3M)")
    parser.add_argument("--cap", type=int, default=64, help="max_batches_per_epoch of the capped schedule")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "recsys-scale",
                        help="where the scale benchmark's logs are written once and reused")
    args = parser.parse_args()

    schedules = {"paper (batch 2048)": None, f"capped ({args.cap} steps)": args.cap}
    rows, medians = [], {}
    for size in args.sizes:
        log = scaled_log(parse_size(size), args.data)
        train, validation = train_and_latest(log.events)
        for name, cap in schedules.items():
            curve = fit(train, validation, args.epochs, cap, args.seed)
            seconds = statistics.median(c["seconds"] for c in curve)
            medians[size, name] = (train.nnz, seconds)
            steps = -(-curve[0]["triples"] // curve[0]["batch_size"])
            rows.append((size, log.rows, train.nnz, name, steps, curve[0]["batch_size"], seconds,
                         seconds / curve[0]["triples"] * 1e6,
                         ", ".join(f"{c['validation_ndcg@20']:.4f}" for c in curve)))
            print(f"... {size} {name}: {seconds:.1f} s per epoch", file=sys.stderr, flush=True)

    print(f"LightGCN (dim 64, 3 layers, lr 0.001, l2 1e-4), {args.epochs} epochs, seed {args.seed}, 1 torch thread")
    print(f"{'size':>5} {'events':>10} {'interactions':>12}  {'schedule':<20} {'steps':>5} {'batch':>6} "
          f"{'epoch s':>8} {'s/M triples':>11}  validation ndcg@20 after each epoch")
    for size, events, nnz, name, steps, batch, seconds, per_million, ndcg in rows:
        print(f"{size:>5} {events:>10,} {nnz:>12,}  {name:<20} {steps:>5} {batch:>6} {seconds:>8.1f} {per_million:>11.1f}  {ndcg}")
    print()
    paper, capped = schedules
    for size in args.sizes:
        print(f"{size}: capped / paper epoch seconds {medians[size, capped][1] / medians[size, paper][1]:.2f}x")
    if len(args.sizes) > 1:
        first, last = args.sizes[0], args.sizes[-1]
        growth = medians[last, paper][0] / medians[first, paper][0]
        for name in schedules:
            print(f"{name}: epoch seconds x{medians[last, name][1] / medians[first, name][1]:.1f} "
                  f"from {first} to {last}, for x{growth:.1f} the interactions")


if __name__ == "__main__":
    main()
