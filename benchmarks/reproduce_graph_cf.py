"""MF-BPR, LightGCN and NGCF on a fixed public split, with the pipeline's own models and ranking metrics.

Trains ``mf_bpr`` (``MFBPRModel``), ``lightgcn`` (``LightGCNModel``) and ``ngcf`` (``NGCFModel``) on the
training file of a published split and evaluates them on its test file with the LightGCN protocol:
every user with test items is ranked against all items, its training items excluded
(``top_k_in_batches``), and Recall@20 and NDCG@20 are averaged over those users (``ranking_metrics``).
Two layouts are read, detected from the files in the folder:

- LightGCN's (Gowalla): ``train.txt`` and ``test.txt``, one line per user, ``user item item ...``;
- the LastFM files of the LightGCN PyTorch code: ``data1.txt`` (train) and ``test1.txt`` (test),
  tab-separated ``user  artist  count`` pairs. The count is ignored (the matrix is binary). Those
  files number users and artists from 1 (the code subtracts 1 on reading), so when no id 0 occurs
  the ids are shifted down by one, and the script says so.

All models share ``--dim``, ``--lr``, ``--l2``, ``--batch-size`` and ``--layers`` (the LightGCN paper's
settings by default, so the comparison is like for like; ``NGCFParams``' own defaults are the NGCF
code's lr 1e-4, l2 1e-5, batch 1024); NGCF adds ``--message-dropout`` and ``--node-dropout``.

Users and items keep the files' ids as indices. Test pairs whose item never occurs in training are
counted and dropped (no model can score them from training data); users with test items but none in
training are counted and kept (they are ranked as the official code ranks them).

With ``--eval-every E`` the models are also evaluated every E epochs. ``fit`` offers no hook for that
(its ``progress`` callback gets only epoch counts), so that path calls ``train_bpr`` itself with the
same arguments ``fit`` passes, wrapping the propagation in a module that keeps the current ego
embeddings, so they can be scored after each epoch (a module, so that NGCF's weights still train and
its dropout is off for scoring); the final model is built with the model class's ``from_training``, as ``fit`` does, and
scoring uses no random numbers, so the final figures are the same as without ``--eval-every``.

``--max-batches-per-epoch`` and ``--max-propagated-per-epoch`` train with the pipeline's caps on the
steps per epoch (``LightGCNParams``: 256 and 64,000,000 by default there) instead of the papers' schedule.

    python benchmarks/reproduce_graph_cf.py --dataset lastfm --epochs 5
    python benchmarks/reproduce_graph_cf.py --dataset gowalla --epochs 1 --assert-lightgcn-beats-mf
    python benchmarks/reproduce_graph_cf.py --dataset gowalla --models lightgcn --epochs 8 \
        --max-batches-per-epoch 256 --max-propagated-per-epoch 64000000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.interactions import Interactions, normalized_adjacency  # noqa: E402
from recsys.models.base import TrainingInputs  # noqa: E402
from recsys.models.lightgcn import LightGCNModel, propagate  # noqa: E402
from recsys.models.mf_bpr import MFBPRModel, train_bpr  # noqa: E402
from recsys.models.negative_sampling import torch_threads  # noqa: E402
from recsys.models.ngcf import NGCFModel, ngcf_propagation  # noqa: E402
from recsys.models.params import LightGCNParams, MFBPRParams, NGCFParams  # noqa: E402
from recsys.ranking import csr_from_pairs, csr_take_rows, ranking_metrics, top_k_in_batches  # noqa: E402

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
K = 20
MODELS = ("mf_bpr", "lightgcn", "ngcf")
CLASSES = {"mf_bpr": MFBPRModel, "lightgcn": LightGCNModel, "ngcf": NGCFModel}

# He et al. 2020 (LightGCN, SIGIR), Table 3 / 4, Gowalla, 1000 epochs on GPU: (Recall@20, NDCG@20).
PAPER_GOWALLA = {"MF-BPR": (0.1291, 0.1109), "NGCF": (0.1570, 0.1327), "LightGCN": (0.1830, 0.1554)}
# The official LightGCN PyTorch code's log on Gowalla after epoch 5, seed 2020: (Recall@20, NDCG@20).
OFFICIAL_GOWALLA_EPOCH5 = (0.1071, 0.0894)

LAYOUTS = {
    "lightgcn": ("train.txt", "test.txt"),   # one line per user: user item item ...
    "lastfm": ("data1.txt", "test1.txt"),    # tab-separated pairs: user item count
}


# -- reading the split ---------------------------------------------------------------------------

def resolve_folder(dataset: str) -> Path:
    """A name under ../shared/datasets, or any folder."""
    named = DATASETS / dataset
    if named.is_dir():
        return named
    folder = Path(dataset)
    if folder.is_dir():
        return folder
    raise SystemExit(f"dataset {dataset!r}: neither a folder under {DATASETS} nor an existing folder")


def detect_layout(folder: Path) -> str:
    for layout, files in LAYOUTS.items():
        if all((folder / name).is_file() for name in files):
            return layout
    expected = " or ".join(" + ".join(files) for files in LAYOUTS.values())
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    shown = ", ".join(present[:10]) + (f", ... ({len(present)} entries)" if len(present) > 10 else "")
    raise SystemExit(f"{folder}: no known split layout; expected {expected} (found: {shown or 'nothing'})")


def read_user_lines(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """LightGCN's layout: ``user item item ...`` per line -> parallel (users, items) int64 arrays."""
    users, items = [], []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) < 2:  # a user with no item (or a blank line)
            continue
        row = np.asarray(fields, dtype=np.int64)
        users.append(np.full(len(row) - 1, row[0], dtype=np.int64))
        items.append(row[1:])
    if not users:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(users), np.concatenate(items)


def read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """LastFM layout: ``user  item  count`` per line; the count (sometimes like ``3.2466e+05``) is ignored."""
    table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    ids = table[:, :2]
    if (ids != np.round(ids)).any():
        raise SystemExit(f"{path}: user and item ids must be integers")
    ids = ids.astype(np.int64)
    return ids[:, 0], ids[:, 1]


def load_split(folder: Path) -> dict:
    """Train ``Interactions`` (binary) and the test truth CSR in the same index space, with counts."""
    layout = detect_layout(folder)
    train_file, test_file = LAYOUTS[layout]
    reader = read_user_lines if layout == "lightgcn" else read_pairs
    train_u, train_i = reader(folder / train_file)
    test_u, test_i = reader(folder / test_file)
    notes = []
    if not len(train_u):
        raise SystemExit(f"{folder / train_file}: no training interaction")
    if min(train_u.min(), train_i.min(), test_u.min(initial=1), test_i.min(initial=1)) < 0:
        raise SystemExit(f"{folder}: negative ids")
    if layout == "lastfm" and min(train_u.min(), train_i.min(), test_u.min(initial=1), test_i.min(initial=1)) >= 1:
        train_u, train_i, test_u, test_i = train_u - 1, train_i - 1, test_u - 1, test_i - 1
        notes.append("ids are 1-based in the files (no id 0): shifted down by one, as the LightGCN code does")
    n_users = int(max(train_u.max(), test_u.max(initial=-1))) + 1
    n_items = int(train_i.max()) + 1
    train = Interactions.from_indices(train_u, train_i, n_users=n_users, n_items=n_items, binary=True)
    duplicates = len(train_u) - train.nnz

    seen_items = train.item_degrees() > 0
    known = (test_i < n_items) & seen_items[np.minimum(test_i, n_items - 1)]
    unseen_pairs, unseen_items = int((~known).sum()), len(np.unique(test_i[~known]))
    test_u, test_i = test_u[known], test_i[known]
    overlap = int(train.contains(test_u, test_i).sum()) if len(test_u) else 0
    truth_indptr, truth_indices = csr_from_pairs(test_u, test_i, n_users)
    test_users = np.flatnonzero(np.diff(truth_indptr) > 0)
    cold_users = int((train.user_degrees()[test_users] == 0).sum())
    if unseen_pairs:
        notes.append(f"dropped {unseen_pairs} test interactions of {unseen_items} items never seen in training")
    if duplicates:
        notes.append(f"{duplicates} duplicate training pairs counted once")
    if overlap:
        notes.append(f"{overlap} test pairs are also training pairs (excluded from ranking, so never hit)")
    if cold_users:
        notes.append(f"{cold_users} test users have no training interaction (kept, ranked from their initial embedding)")
    return {"folder": folder, "layout": layout, "files": (train_file, test_file), "train": train,
            "truth": (truth_indptr, truth_indices), "test_users": test_users,
            "test_interactions": int(len(truth_indices)), "notes": notes}


# -- training and evaluation ---------------------------------------------------------------------

def evaluate(user_vectors: np.ndarray, item_vectors: np.ndarray, split: dict, threads: int) -> dict[str, float]:
    """Recall@K and NDCG@K over all items, training items excluded, for every user with test items."""
    train, users = split["train"], split["test_users"]
    items_t = torch.from_numpy(np.ascontiguousarray(item_vectors, dtype=np.float32))
    users_t = torch.from_numpy(np.ascontiguousarray(user_vectors, dtype=np.float32))
    with torch_threads(threads):
        top, _ = top_k_in_batches(lambda batch: users_t[batch] @ items_t.T, users, K,
                                  train.indptr, train.indices, batch_size=2048)
    truth = csr_take_rows(*split["truth"], users)
    metrics = ranking_metrics(top, *truth, ks=(K,))
    return {"recall": metrics[f"recall@{K}"], "ndcg": metrics[f"ndcg@{K}"], "users": metrics["users_evaluated"]}


def model_params(name: str, args) -> MFBPRParams:
    """The params of model ``name`` from the command line (NGCF's dropouts default to ``NGCFParams``' own)."""
    # by default the papers' schedule: batch_size triples per step on any dataset
    common = dict(dim=args.dim, lr=args.lr, l2=args.l2, batch_size=args.batch_size, epochs=args.epochs,
                  max_batches_per_epoch=args.max_batches_per_epoch)
    if name == "lightgcn":
        return LightGCNParams(layers=args.layers, max_propagated_per_epoch=args.max_propagated_per_epoch, **common)
    if name == "ngcf":
        defaults = NGCFParams.model_fields
        return NGCFParams(layers=args.layers, **common,
                          message_dropout=getattr(args, "message_dropout", defaults["message_dropout"].default),
                          node_dropout=getattr(args, "node_dropout", defaults["node_dropout"].default))
    return MFBPRParams(**common)


class _Tracked(torch.nn.Module):
    """A propagation (None: the identity) that keeps a handle on the ego embeddings it was last given; a
    module propagation is a submodule, so ``train_bpr`` trains its weights and switches its mode."""

    def __init__(self, forward):
        super().__init__()
        self.inner = forward
        self.ego = None

    def forward(self, ego: torch.Tensor) -> torch.Tensor:
        self.ego = ego
        return self.inner(ego) if self.inner is not None else ego

    def current(self) -> torch.Tensor:
        """The final embeddings of the current ego embeddings, in eval mode (no dropout), without gradients."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            out = self(self.ego).detach()  # the identity (MF) hands back the ego tensor itself
        self.train(was_training)
        return out


def train_model(name: str, split: dict, args) -> dict:
    train = split["train"]
    params = model_params(name, args)
    cls = CLASSES[name]
    inputs = TrainingInputs(None, None, None, seed=args.seed, threads=args.threads, interactions=train)
    checkpoints = []
    started = time.perf_counter()
    if not args.eval_every:
        model = cls.fit(inputs, params)
    else:
        # fit has no per-epoch hook: the same train_bpr call as fit's, with the propagation wrapped to
        # keep a handle on the ego embeddings, which are scored (without gradients) every E epochs.
        if name == "lightgcn":
            adjacency = normalized_adjacency(train)

            def forward(ego):
                return propagate(adjacency, ego, params.layers)
        elif name == "ngcf":
            forward = ngcf_propagation(train, params, args.seed)
        else:
            forward = None
        tracked = _Tracked(forward)

        def progress(done: int, total: int) -> None:
            if done % args.eval_every and done != total:
                return
            final = tracked.current().numpy()
            result = evaluate(final[:train.n_users], final[train.n_users:], split, args.threads)
            checkpoints.append({"epoch": done, "recall": result["recall"], "ndcg": result["ndcg"]})
            print(f"  {name} epoch {done:4d}: Recall@{K} {result['recall']:.4f}  NDCG@{K} {result['ndcg']:.4f}", flush=True)

        with torch_threads(args.threads):
            ego, final, curve = train_bpr(train, params, args.seed, tracked, progress)
        model = cls.from_training(train, final, params, inputs, curve)
    seconds = time.perf_counter() - started
    curve = model.meta["curve"]
    result = evaluate(model.users, model.items, split, args.threads)
    return {"model": name, "recall": result["recall"], "ndcg": result["ndcg"], "users_evaluated": result["users"],
            "epochs": len(curve), "seconds_per_epoch": float(np.mean([c["seconds"] for c in curve])),
            "train_seconds": seconds, "curve": curve, "checkpoints": checkpoints, "params": params.model_dump()}


# -- the report ----------------------------------------------------------------------------------

def print_table(split: dict, args, rows: list[dict]) -> None:
    train = split["train"]
    folder = split["folder"]
    print(f"\ndataset {folder.name} ({folder}), split files {split['files'][0]} / {split['files'][1]} "
          f"({split['layout']} layout); {train.n_users:,} users, {train.n_items:,} items, {train.nnz:,} train / "
          f"{split['test_interactions']:,} test interactions, {len(split['test_users']):,} test users")
    for note in split["notes"]:
        print(f"  note: {note}")
    print(f"seed {args.seed}, threads {args.threads}, dim {args.dim}, layers {args.layers}, lr {args.lr}, "
          f"l2 {args.l2}, batch {args.batch_size}; full ranking over all items, training items excluded")
    for row in rows:
        first = row["curve"][0]
        print(f"{row['model']}: {first['batch_size']} triples per step, lr {first['lr']:.6g} (max_batches_per_epoch "
              f"{row['params']['max_batches_per_epoch']}, max_propagated_per_epoch {row['params'].get('max_propagated_per_epoch')})")
    for row in rows:
        if row["model"] == "ngcf":
            ngcf = row["params"]
            print(f"ngcf: message dropout {ngcf['message_dropout']}, node dropout {ngcf['node_dropout']}; final "
                  f"embeddings {ngcf['dim'] * (ngcf['layers'] + 1)} wide (layers 0..{ngcf['layers']} concatenated)")
    print()
    head = f"{'':8s}{'dataset':10s} {'split':22s} {'seed':>5s} {'epochs':>6s} {'Recall@20':>10s} {'NDCG@20':>9s} {'s/epoch':>8s}"
    print(head)
    print("-" * len(head))
    split_name = "/".join(split["files"])
    for row in rows:
        print(f"{'ours':8s}{folder.name:10s} {split_name:22s} {args.seed:5d} {row['epochs']:6d} "
              f"{row['recall']:10.4f} {row['ndcg']:9.4f} {row['seconds_per_epoch']:8.2f}   {row['model']}")
    print("\nREFERENCE ONLY, not ours -- the LightGCN paper (He et al. 2020), Gowalla, 1000 epochs on GPU:")
    for model, (recall, ndcg) in PAPER_GOWALLA.items():
        print(f"{'paper':8s}{'gowalla':10s} {'train.txt/test.txt':22s} {'':5s} {1000:6d} {recall:10.4f} {ndcg:9.4f} {'':8s}   {model}")
    recall, ndcg = OFFICIAL_GOWALLA_EPOCH5
    print(f"{'code':8s}{'gowalla':10s} {'train.txt/test.txt':22s} {2020:5d} {5:6d} {recall:10.4f} {ndcg:9.4f} "
          f"{'':8s}   LightGCN (official PyTorch code's log after epoch 5)")
    for row in rows:
        losses = ", ".join(f"{c['loss']:.4f}" for c in row["curve"])
        print(f"\n{row['model']} loss per epoch: {losses}")


def parse_args(argv) -> argparse.Namespace:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--dataset", required=True, help=f"a folder name under {DATASETS}, or any folder")
    cli.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    cli.add_argument("--epochs", type=int, default=5)
    cli.add_argument("--dim", type=int, default=64)
    cli.add_argument("--layers", type=int, default=3)
    cli.add_argument("--lr", type=float, default=0.001)
    cli.add_argument("--l2", type=float, default=1e-4)
    cli.add_argument("--batch-size", type=int, default=2048)
    cli.add_argument("--seed", type=int, default=2020)
    cli.add_argument("--threads", type=int, default=1)
    cli.add_argument("--message-dropout", type=float, default=NGCFParams.model_fields["message_dropout"].default,
                     help="ngcf: dropout on each layer's output while training")
    cli.add_argument("--node-dropout", type=float, default=NGCFParams.model_fields["node_dropout"].default,
                     help="ngcf: share of the normalised adjacency's entries dropped per batch while training")
    cli.add_argument("--eval-every", type=int, default=0, help="also evaluate every E epochs (0: only at the end)")
    cli.add_argument("--max-batches-per-epoch", type=int, default=None,
                     help="the pipeline's cap on Adam steps per epoch (default: none, the papers' schedule)")
    cli.add_argument("--max-propagated-per-epoch", type=int, default=None,
                     help="lightgcn: the pipeline's cap on triples x steps per epoch (its default: 64000000; here none)")
    cli.add_argument("--assert-lightgcn-beats-mf", action="store_true",
                     help="exit non-zero unless LightGCN's NDCG@20 is above MF-BPR's")
    args = cli.parse_args(argv)
    if args.eval_every < 0 or args.epochs < 1:
        cli.error("--epochs must be >= 1 and --eval-every >= 0")
    if args.assert_lightgcn_beats_mf and not {"mf_bpr", "lightgcn"} <= set(args.models):
        cli.error("--assert-lightgcn-beats-mf needs both mf_bpr and lightgcn")
    return args


def main(argv=None) -> dict:
    """Run the benchmark; returns ``{"dataset", "split", "seed", "epochs", "models": {name: row}}``."""
    args = parse_args(argv)
    folder = resolve_folder(args.dataset)
    split = load_split(folder)
    rows = []
    for name in args.models:
        print(f"training {name}: {args.epochs} epochs ...", flush=True)
        rows.append(train_model(name, split, args))
    print_table(split, args, rows)
    results = {"dataset": folder.name, "folder": str(folder), "split": list(split["files"]), "seed": args.seed,
               "epochs": args.epochs, "notes": split["notes"], "models": {row["model"]: row for row in rows}}
    if args.assert_lightgcn_beats_mf:
        mf, gcn = results["models"]["mf_bpr"], results["models"]["lightgcn"]
        if not gcn["ndcg"] > mf["ndcg"]:
            raise SystemExit(f"LightGCN's NDCG@{K} {gcn['ndcg']:.4f} is not above MF-BPR's {mf['ndcg']:.4f}")
        print(f"\nLightGCN's NDCG@{K} {gcn['ndcg']:.4f} > MF-BPR's {mf['ndcg']:.4f}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
