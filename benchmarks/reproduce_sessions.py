"""Session-based next-item models on the YooChoose 100k-click sample, side by side with the official GRU4Rec.

The standard protocol (Hidasi et al. 2016, "Session-based Recommendations with Recurrent Neural
Networks", section 4; Ludewig & Jannach 2018, "Evaluation of session-based recommendation
algorithms"): train on ``train_full``; in ``test`` drop the clicks on items unseen in training, then the
sessions left shorter than 2; for every position after the first, rank all items given the session so
far and look the next item up in the top 20: Recall@20 and MRR@20. The scoring is the pipeline's
(``Sequences.keep_items``, then ``recsys.next_item``'s ``next_item_top_k`` and ``next_item_metrics``), the same for every model.

Models (``--models``):

- ``gru4rec_xe`` / ``gru4rec_bprmax``: ``recsys.models.gru4rec`` with cross-entropy and BPR-max. Cross-entropy
  uses the official repository's ``paramfiles/rsc15_xe_shared_100_best.py`` (RSC15 is YooChoose: 100
  units, batch 32); the repository has no BPR-max file for YooChoose/RSC15, so BPR-max uses the README's
  example BPR-max settings (RetailRocket's best) with the layer and batch size set to 100 and 32.
- ``vsknn`` / ``sknn``: ``recsys.models.sknn`` (k 100, sample 500: session-rec's defaults).
- ``item_knn``, ``popular``: the pipeline's item-to-item baselines, answering from the prefix's last item
  with their neighbour lists. They read an item graph, built here as the graph stage builds it
  (``recsys.graph``: clicks of one session at distance ``d <= 3`` form an edge weighted ``0.7**(d-1)``,
  both ways, summed over sessions, self-pairs dropped; every click is a view of weight 1, and no
  session is long enough for ``max_session_length``), and the item statistics (clicks per item).
- ``word2vec``: the pipeline's gensim skip-gram on random walks over that graph (``recsys.walks``, its
  default 5 walks of 20 nodes per item), item-to-item cosine from the last item.

Items are catalogue indices in the sorted order of their ids (as the graph's nodes); sessions are ordered
by their first click (then id), the order the official code trains them in. Every click is kept
(repeated items included), as the official code does.

With ``--official PATH`` (a checkout of https://github.com/hidasib/GRU4Rec_PyTorch_Official) each GRU4Rec
setting is also trained and evaluated by the official code, in a subprocess on the CPU with one torch
thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``) that imports its ``gru4rec_pytorch`` and
``evaluation`` modules (``run.py`` imports joblib, which this project does not install; the driver makes
the same calls as ``run.py``: ``set_params``, ``fit``, ``evaluation.batch_eval`` with its default
'standard' tie mode). The table prints both side by side, with the differences and the epoch-time ratio;
the target is Recall@20 and MRR@20 within 0.01 of the official figures and epochs no slower. Epoch times are
given as wall-clock seconds and as CPU seconds per epoch, the latter less sensitive to other processes
on a shared machine: for the official code the CPU time from its negative-sample store being built to
its last epoch line (the epochs, without reading the data and building the store), for ours the CPU
time of the whole ``fit`` (setup included: it counts against us). The official code seeds its weights (numpy seed 42) but not its
negative-sample cache, so its figures move by about 0.001 from run to run; ours are the same for a seed.

    python benchmarks/reproduce_sessions.py
    python benchmarks/reproduce_sessions.py --official /tmp/gru4rec_official --epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.catalog import build_catalog  # noqa: E402
from recsys.config import WalksConfig  # noqa: E402
from recsys.models.base import TrainingInputs  # noqa: E402
from recsys.models.params import GRU4RecParams, NoParams, SKNNParams, Word2VecParams  # noqa: E402
from recsys.next_item import next_item_metrics, next_item_top_k  # noqa: E402
from recsys.sequences import Sequences  # noqa: E402
from recsys.transition import TransitionTable  # noqa: E402

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
PREFIX = "yoochoose-clicks-100k_"
K = 20
GRAPH_WINDOW, GRAPH_DECAY = 3, 0.7  # recsys.config.GraphConfig's defaults

# the official repository's paramfiles/rsc15_xe_shared_100_best.py
XE = dict(loss="cross-entropy", constrained_embedding=True, embedding=0, elu_param=0.0, layers=[100], n_epochs=10,
          batch_size=32, dropout_p_embed=0.0, dropout_p_hidden=0.4, learning_rate=0.2, momentum=0.2, n_sample=2048,
          sample_alpha=0.5, bpreg=0.0, logq=1.0)
# the official README's BPR-max example (RetailRocket's best), with 100 units and batch 32
BPRMAX = dict(loss="bpr-max", constrained_embedding=True, embedding=0, elu_param=0.5, layers=[100], n_epochs=10,
              batch_size=32, dropout_p_embed=0.5, dropout_p_hidden=0.05, learning_rate=0.05, momentum=0.4, n_sample=2048,
              sample_alpha=0.4, bpreg=1.95, logq=0.0)
GRU_SETTINGS = {"gru4rec_xe": XE, "gru4rec_bprmax": BPRMAX}
MODELS = ("gru4rec_xe", "gru4rec_bprmax", "vsknn", "sknn", "item_knn", "popular", "word2vec")

# run in a subprocess with the official checkout first on sys.path: argv = path, train, test, settings (JSON), threads
OFFICIAL_DRIVER = r"""
import json, sys, time
path, train_path, test_path, settings, threads = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5])
sys.path.insert(0, path)
import torch
torch.set_num_threads(threads)
import pandas as pd
import gru4rec_pytorch
from gru4rec_pytorch import GRU4Rec
import evaluation
# numpy 2 (NEP 50) keeps the float64 of sigma in `float32 array * sigma`, which torch 2's Tensor.set_ then
# refuses; the official code was written for numpy 1, where the weights stayed float32: cast them back
_init = gru4rec_pytorch.GRU4RecModel._init_numpy_weights
gru4rec_pytorch.GRU4RecModel._init_numpy_weights = lambda self, shape: _init(self, shape).astype('float32')
read = lambda p: pd.read_csv(p, sep='\t', usecols=['SessionId', 'ItemId', 'Time'], dtype={'SessionId': 'int32', 'ItemId': 'str'})
train, test = read(train_path), read(test_path)
gru = GRU4Rec(device='cpu')
gru.set_params(**settings)
import builtins
marks, _print = [], builtins.print  # the CPU clock at each line fit prints: the epochs' CPU time without the setup
def timed_print(*args, **kwargs):
    marks.append((str(args[0]) if args else '', time.process_time()))
    _print(*args, **kwargs)
builtins.print = timed_print
started, cpu = time.time(), time.process_time()
gru.fit(train)
fit_seconds = time.time() - started
builtins.print = _print
first = next((t for line, t in marks if line.startswith('Created sample store')), cpu)
last = [t for line, t in marks if line.startswith('Epoch')][-1]
recall, mrr = evaluation.batch_eval(gru, test, batch_size=512, cutoff=[20], mode='standard')
known = test[test.ItemId.isin(gru.data_iterator.itemidmap.index)]
predictions = int((known.groupby('SessionId').size() - 1).clip(lower=0).sum())
print('RESULT ' + json.dumps({'recall': float(recall[20]), 'mrr': float(mrr[20]), 'fit_seconds': fit_seconds,
                              'cpu_per_epoch': (last - first) / settings['n_epochs'],
                              'predictions': predictions, 'threads': torch.get_num_threads()}))
"""
EPOCH_LINE = re.compile(r"Epoch(\d+) --> loss: ([0-9.eE+-]+)\s+\(([0-9.]+)s\)")


# -- data ---------------------------------------------------------------------------------------------

def read_clicks(path: Path) -> dict[str, np.ndarray]:
    """``session`` (int64), ``item`` (str ids), ``time`` (float64 unix seconds), in file order."""
    options = pacsv.ConvertOptions(column_types={"SessionId": pa.int64(), "ItemId": pa.string(), "Time": pa.float64()})
    table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\t"), convert_options=options)
    return {"session": table.column("SessionId").to_numpy(), "item": np.asarray(table.column("ItemId").to_pylist(), dtype=object),
            "time": table.column("Time").to_numpy()}


def to_sequences(clicks: dict[str, np.ndarray], index: dict[str, int], unknown: int) -> Sequences:
    """One sequence per session, clicks in time order; sessions by first click, then id. Items not in
    ``index`` get the index ``unknown``."""
    order = np.lexsort((clicks["time"], clicks["session"]))
    session, t = clicks["session"][order], clicks["time"][order]
    items = np.array([index.get(i, unknown) for i in clicks["item"][order]], dtype=np.int64)
    new = np.r_[True, session[1:] != session[:-1]]
    firsts = np.flatnonzero(new)
    offsets = np.r_[firsts, len(session)].astype(np.int64)
    grouped = Sequences(items, offsets, session[firsts].astype(str).astype(object), np.floor(t[firsts]).astype(np.int64))
    return grouped.take(np.lexsort((session[firsts], t[firsts])))


def session_graph(sequences: Sequences, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``(src, dst, weight)`` summed over sessions: clicks at distance ``d <= GRAPH_WINDOW`` weigh
    ``GRAPH_DECAY**(d-1)``, both ways; pairs of an item with itself are dropped."""
    owner = np.repeat(np.arange(len(sequences)), sequences.lengths)
    src, dst, weight = [], [], []
    for d in range(1, GRAPH_WINDOW + 1):
        same = owner[d:] == owner[:-d] if len(owner) > d else np.zeros(0, bool)
        a, b = sequences.items[:-d][same], sequences.items[d:][same]
        keep = a != b
        src += [a[keep], b[keep]]
        dst += [b[keep], a[keep]]
        weight += [np.full(2 * keep.sum(), GRAPH_DECAY ** (d - 1))]
    src, dst, weight = np.concatenate(src), np.concatenate(dst), np.concatenate(weight)
    key = src * n_items + dst
    unique, inverse = np.unique(key, return_inverse=True)
    return unique // n_items, unique % n_items, np.bincount(inverse, weights=weight)


def build_inputs(train: Sequences, item_ids: np.ndarray, seed: int, threads: int) -> TrainingInputs:
    n_items = len(item_ids)
    table = TransitionTable.from_edges(item_ids, *session_graph(train, n_items))
    events = np.bincount(train.items, minlength=n_items).astype(np.int64)
    owner = np.repeat(np.arange(len(train)), train.lengths)
    sessions = np.bincount(np.unique(owner * n_items + train.items) % n_items, minlength=n_items).astype(np.int64)
    stats = pa.table({"item_id": item_ids.tolist(), "events": events, "users": sessions,
                      "purchases": np.zeros(n_items, np.int64)})
    return TrainingInputs(table=table, catalog=build_catalog(table, None), item_stats=stats, seed=seed, threads=threads,
                          sequences=train)


def load_split(folder: Path) -> dict:
    train_path, test_path = folder / f"{PREFIX}train_full.txt", folder / f"{PREFIX}test.txt"
    train_clicks, test_clicks = read_clicks(train_path), read_clicks(test_path)
    item_ids = np.asarray(sorted(set(train_clicks["item"].tolist())), dtype=object)
    index = {item: i for i, item in enumerate(item_ids.tolist())}
    train = to_sequences(train_clicks, index, len(item_ids))
    raw_test = to_sequences(test_clicks, index, len(item_ids))
    known = np.r_[np.ones(len(item_ids), bool), False]  # the last index stands for every unseen item
    test = raw_test.keep_items(known, min_length=2)
    return {"train_path": train_path, "test_path": test_path, "item_ids": item_ids, "train": train, "test": test,
            "train_clicks": len(train.items), "test_clicks": len(raw_test.items),
            "unseen_test_clicks": int((raw_test.items == len(item_ids)).sum()), "test_sessions_raw": len(raw_test)}


# -- models -------------------------------------------------------------------------------------------

def fit_ours(name: str, inputs: TrainingInputs, args) -> tuple[object, dict]:
    """The fitted model and what its training cost: ``fit_seconds``; for GRU4Rec ``seconds_per_epoch`` (wall
    clock) and ``cpu_per_epoch`` (this process's CPU seconds of the whole fit / epochs)."""
    started, cpu = time.perf_counter(), time.process_time()
    extra: dict = {}
    if name in GRU_SETTINGS:
        from recsys.models.gru4rec import GRU4RecModel

        settings = {**GRU_SETTINGS[name], "n_epochs": args.epochs}
        model = GRU4RecModel.fit(inputs, GRU4RecParams(**{**settings, "layers": tuple(settings["layers"])}))
        extra = {"seconds_per_epoch": model.meta["seconds_per_epoch"], "cpu_per_epoch": (time.process_time() - cpu) / args.epochs,
                 "epoch_seconds": [round(r["seconds"], 2) for r in model.meta["curve"]],
                 "losses": [round(float(r["loss"]), 4) for r in model.meta["curve"]]}
    elif name in ("vsknn", "sknn"):
        from recsys.models.sknn import SKNNModel

        model = SKNNModel.fit(inputs, SKNNParams(variant=name))
    elif name == "item_knn":
        from recsys.models.item_knn import ItemKNNModel

        model = ItemKNNModel.fit(inputs, NoParams())
    elif name == "popular":
        from recsys.models.popular import PopularModel

        model = PopularModel.fit(inputs, NoParams())
    elif name == "word2vec":
        from recsys.models.word2vec import Word2VecModel
        from recsys.walks import generate_walks_local

        inputs.walks = generate_walks_local(inputs.table, WalksConfig(), args.seed).column("walk")
        model = Word2VecModel.fit(inputs, Word2VecParams())
    else:
        raise ValueError(f"unknown model {name!r}")
    return model, {"fit_seconds": time.perf_counter() - started, **extra}


def score(model, test: Sequences) -> dict:
    started = time.perf_counter()
    top, targets, _ = next_item_top_k(model, test, K)
    metrics = next_item_metrics(top, targets, (K,))
    return {"recall": metrics[f"next_recall@{K}"], "mrr": metrics[f"next_mrr@{K}"], "predictions": metrics["predictions"],
            "score_seconds": time.perf_counter() - started}


def run_official(path: Path, name: str, split: dict, args) -> dict:
    settings = {**GRU_SETTINGS[name], "n_epochs": args.epochs}
    env = {**os.environ, **{v: str(args.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    started = time.perf_counter()
    command = [sys.executable, "-c", OFFICIAL_DRIVER, str(path), str(split["train_path"]), str(split["test_path"]),
               json.dumps(settings), str(args.threads)]
    done = subprocess.run(command,
                          capture_output=True, text=True, env=env, cwd=str(path))
    if done.returncode != 0:
        raise RuntimeError(f"the official GRU4Rec failed ({name}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
    epochs = [(int(e), float(loss), float(s)) for e, loss, s in EPOCH_LINE.findall(done.stdout)]
    return {**result, "seconds_per_epoch": float(np.mean([s for _, _, s in epochs])) if epochs else float("nan"),
            "epoch_seconds": [s for _, _, s in epochs], "losses": [loss for _, loss, _ in epochs],
            "wall_seconds": time.perf_counter() - started}


# -- report -------------------------------------------------------------------------------------------

def print_table(split: dict, args, rows: dict[str, dict], official: dict[str, dict]) -> None:
    test = split["test"]
    print(f"YooChoose 100k sample: train_full {split['train_clicks']} clicks, {len(split['train'])} sessions, "
          f"{len(split['item_ids'])} items; test {split['test_clicks']} clicks in {split['test_sessions_raw']} sessions, "
          f"{split['unseen_test_clicks']} clicks on unseen items dropped -> {len(test)} sessions of 2+, "
          f"{int(test.lengths.sum() - len(test))} predictions; seed {args.seed}, {args.threads} torch thread(s), "
          f"GRU4Rec {args.epochs} epochs")
    header = f"{'model':<16}{'Recall@20':>10}{'MRR@20':>9}{'fit s':>8}{'s/ep':>7}{'cpu/ep':>7}{'score s':>8}"
    if official:
        header += f" | {'official R@20':>13}{'MRR@20':>8}{'s/ep':>7}{'cpu/ep':>7} | {'dR@20':>7}{'dMRR@20':>8}{'s x':>6}{'cpu x':>6}  target"
    print(header)
    print("-" * len(header))
    nan = float("nan")
    for name, row in rows.items():
        line = (f"{name:<16}{row['recall']:>10.4f}{row['mrr']:>9.4f}{row['fit_seconds']:>8.1f}"
                f"{row.get('seconds_per_epoch', nan):>7.2f}{row.get('cpu_per_epoch', nan):>7.2f}{row['score_seconds']:>8.1f}")
        if name in official:
            ref = official[name]
            d_recall, d_mrr = row["recall"] - ref["recall"], row["mrr"] - ref["mrr"]
            wall = row["seconds_per_epoch"] / ref["seconds_per_epoch"]
            cpu = row["cpu_per_epoch"] / ref["cpu_per_epoch"]
            close = abs(d_recall) <= 0.01 and abs(d_mrr) <= 0.01
            verdict = ("accuracy met" if close else "accuracy MISSED") + (", time met" if max(wall, cpu) <= 1.0 else
                                                                          ", time MISSED" if min(wall, cpu) > 1.0 else ", time mixed")
            line += (f" | {ref['recall']:>13.4f}{ref['mrr']:>8.4f}{ref['seconds_per_epoch']:>7.2f}{ref['cpu_per_epoch']:>7.2f}"
                     f" | {d_recall:>+7.4f}{d_mrr:>+8.4f}{wall:>6.2f}{cpu:>6.2f}  {verdict}")
        print(line)
    if official:
        print("s/ep: wall-clock seconds per epoch; cpu/ep: CPU seconds per epoch (less sensitive to other processes "
              "on a shared machine; official: its epochs, ours: the whole fit); s x, cpu x: ours / official (<= 1.00: no slower). Target: |dR@20| and "
              "|dMRR@20| <= 0.01, epochs no slower.")


def parse_args(argv) -> argparse.Namespace:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--data", type=Path, default=DATASETS / "yoochoose", help="the folder of the four yoochoose-clicks-100k files")
    cli.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    cli.add_argument("--epochs", type=int, default=10, help="GRU4Rec epochs (ours and official)")
    cli.add_argument("--seed", type=int, default=42)
    cli.add_argument("--threads", type=int, default=1)
    cli.add_argument("--official", type=Path, default=None, help="a checkout of hidasib/GRU4Rec_PyTorch_Official: also run it")
    cli.add_argument("--json", type=Path, default=None, help="also write the results here")
    return cli.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not (args.data / f"{PREFIX}train_full.txt").is_file():
        raise SystemExit(f"dataset not found: {args.data} (expects {PREFIX}train_full.txt and {PREFIX}test.txt)")
    torch.set_num_threads(args.threads)
    split = load_split(args.data)
    rows: dict[str, dict] = {}
    official: dict[str, dict] = {}
    for name in args.models:
        inputs = build_inputs(split["train"], split["item_ids"], args.seed, args.threads)
        model, cost = fit_ours(name, inputs, args)
        rows[name] = {**cost, **score(model, split["test"])}
        print(f"  {name}: Recall@20 {rows[name]['recall']:.4f} MRR@20 {rows[name]['mrr']:.4f} "
              f"({rows[name]['fit_seconds']:.1f} s fit)", flush=True)
        if args.official is not None and name in GRU_SETTINGS:
            official[name] = run_official(args.official, name, split, args)
            print(f"  {name} (official): Recall@20 {official[name]['recall']:.4f} MRR@20 {official[name]['mrr']:.4f} "
                  f"({official[name]['seconds_per_epoch']:.2f} s/epoch)", flush=True)
            if official[name]["predictions"] != rows[name]["predictions"]:
                print(f"  WARNING: {official[name]['predictions']} official predictions vs {rows[name]['predictions']} ours")
    print_table(split, args, rows, official)
    results = {"dataset": "yoochoose-clicks-100k", "seed": args.seed, "threads": args.threads, "epochs": args.epochs,
               "predictions": int(split["test"].lengths.sum() - len(split["test"])), "models": rows, "official": official,
               "settings": {name: {**s, "n_epochs": args.epochs} for name, s in GRU_SETTINGS.items()}}
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return results


if __name__ == "__main__":
    main()
