"""LightGCN training epoch time: ours (``recsys.models.lightgcn``) next to the official PyTorch code.

Both train on the Gowalla split of the LightGCN paper (``../shared/datasets/gowalla``: ``train.txt``
and ``test.txt``, one line per user, ``user item item ...``; the official code reads the same files),
with the paper's settings: dim 64, 3 layers, Adam lr 0.001, L2 decay 1e-4, BPR batch 2048, seed 2020,
on the same number of torch threads (``--threads``, default 1). Each side runs ``--epochs`` epochs
(default 2); the table shows each epoch's seconds, the median, and the ratio ours / peer of medians.

What an epoch is on each side (the work per epoch is the same up to 0.5 %):

- ours: ``train_bpr`` (``recsys.models.mf_bpr``) with ``propagate`` (``recsys.models.lightgcn``), as
  ``LightGCNModel.fit`` calls it: every training interaction once in a random order, each with one
  uniform negative (``bpr_triples``), i.e. ``nnz`` = 810,128 triples, 396 batches on Gowalla. The
  whole graph is propagated for every batch with a sparse CSR ``Â`` (backward reuses ``Â``).
- the official code (``Procedure.BPR_train_original``): ``nnz`` triples drawn user-first. With its
  C++ sampler (``code/sources/sampling.cpp``, built by ``cppimport``) every user gets
  ``nnz // n_users`` triples (29,858 x 27 = 806,166 on Gowalla, 394 batches); with its Python fallback
  (when ``cppimport`` is missing), ``nnz`` users drawn uniformly. Each triple is a uniform positive of
  the user and a rejection-sampled negative. The whole graph is propagated for every batch with
  ``torch.sparse.mm`` on a coalesced COO ``Â``.

Both times include the epoch's sampling and shuffling and all its Adam steps, and exclude setup (reading
the files, building ``Â``). The official ``main.py`` also evaluates on the test set every 10 epochs
(from epoch 0) and saves a checkpoint every epoch; neither is timed: the peer runs through a small
driver (``PEER_DRIVER`` below, run by the peer's Python in its ``code`` folder) that builds the dataset,
model and ``BPRLoss`` exactly as ``main.py`` does and times ``Procedure.BPR_train_original`` per epoch.
The peer's files are not changed; nothing of its code is in this repository.

Setting up the peer (outside this repository; the defaults of ``--peer-dir`` and ``--peer-python``)::

    # the code (github gusye1234/LightGCN-PyTorch), without its data/ folder (large files)
    mkdir -p /tmp/peer_lightgcn && git clone --depth 1 --filter=blob:none --no-checkout \\
        https://github.com/gusye1234/LightGCN-PyTorch /tmp/lgn.git && \\
        git -C /tmp/lgn.git archive HEAD -- code README.md requirements.txt | tar -x -C /tmp/peer_lightgcn
    # (from a bare mirror: git --git-dir=MIRROR archive HEAD -- code README.md requirements.txt | tar -x -C ...)
    python3.11 -m venv /tmp/peer_venv
    /tmp/peer_venv/bin/pip install torch==2.13.0 numpy==2.4.6 scipy==1.17.1 pandas scikit-learn tqdm \\
        cppimport pybind11        # torch PINNED (the CPU wheel); cppimport + pybind11: its C++ sampler

tensorboardX is not needed (the driver passes ``--tensorboard 0`` and does not import ``main.py``). The
script links ``train.txt`` and ``test.txt`` of the split into ``PEER_DIR/data/gowalla/`` (symlinks in a
real folder there, since the peer writes its ``s_pre_adj_mat.npz`` cache beside them). Then::

    python benchmarks/lightgcn_peer.py --epochs 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reproduce_graph_cf import DATASETS, load_split  # noqa: E402
from recsys.interactions import normalized_adjacency  # noqa: E402
from recsys.models.lightgcn import propagate  # noqa: E402
from recsys.models.mf_bpr import train_bpr  # noqa: E402
from recsys.models.negative_sampling import torch_threads  # noqa: E402
from recsys.models.params import LightGCNParams  # noqa: E402

SEED = 2020

# Run by the peer's Python with cwd PEER_DIR/code. argv: threads, then the peer's own command line.
# Mirrors main.py up to its epoch loop, then times BPR_train_original only (no Test, no torch.save).
PEER_DRIVER = r"""
import json, re, sys, time
threads = int(sys.argv[1])
sys.argv = ["main.py"] + sys.argv[2:]
import torch
torch.set_num_threads(threads)
import world, utils, Procedure
utils.set_seed(world.seed)
import register
from register import dataset
model = register.MODELS[world.model_name](world.config, dataset).to(world.device)
bpr = utils.BPRLoss(model, world.config)
sampled = {}
sample = utils.UniformSample_original
def counted(*a, **k):
    t = time.perf_counter()
    S = sample(*a, **k)
    sampled.update(triples=int(len(S)), sample_seconds=time.perf_counter() - t)
    return S
utils.UniformSample_original = counted
print("PEER_SETUP " + json.dumps({"n_users": dataset.n_users, "n_items": dataset.m_items,
      "nnz": dataset.trainDataSize, "cpp_sampler": bool(utils.sample_ext), "torch": torch.__version__,
      "threads": torch.get_num_threads(), "device": str(world.device)}), flush=True)
for epoch in range(world.TRAIN_epochs):
    start = time.perf_counter()
    info = Procedure.BPR_train_original(dataset, model, bpr, epoch, neg_k=1, w=None)
    seconds = time.perf_counter() - start
    loss = re.search(r"loss([0-9.eE+-]+?)-", info)
    print("PEER_EPOCH " + json.dumps({"epoch": epoch + 1, "seconds": seconds, "loss": float(loss.group(1)) if loss else None,
          **sampled}), flush=True)
"""


def link_peer_data(peer_dir: Path, folder: Path, name: str) -> None:
    """``peer_dir/data/<name>/{train,test}.txt`` -> the split's files (symlinks in a real folder)."""
    target = peer_dir / "data" / name
    if target.is_symlink():
        raise SystemExit(f"{target} is a symlink; it must be a real folder (the peer writes its adjacency cache there)")
    target.mkdir(parents=True, exist_ok=True)
    for file in ("train.txt", "test.txt"):
        link, source = target / file, (folder / file).resolve()
        if link.is_symlink() and link.resolve() == source:
            continue
        if link.exists() or link.is_symlink():
            raise SystemExit(f"{link} exists and is not a link to {source}; remove it")
        link.symlink_to(source)
        (target / "s_pre_adj_mat.npz").unlink(missing_ok=True)  # the peer's adjacency cache of other files


def run_ours(folder: Path, args) -> dict:
    split = load_split(folder)
    train = split["train"]
    params = LightGCNParams(dim=64, layers=3, lr=0.001, l2=1e-4, batch_size=2048, epochs=args.epochs,
                            max_batches_per_epoch=None)  # the official schedule: 2048 triples per step
    adjacency = normalized_adjacency(train)
    with torch_threads(args.threads):
        threads = torch.get_num_threads()
        _, _, curve = train_bpr(train, params, SEED, lambda e: propagate(adjacency, e, params.layers))
    return {"setup": {"n_users": train.n_users, "n_items": train.n_items, "nnz": train.nnz, "threads": threads,
                      "torch": torch.__version__},
            "epochs": [{"epoch": c["epoch"], "seconds": c["seconds"], "loss": c["loss"], "triples": c["triples"]}
                       for c in curve]}


def run_peer(args) -> dict:
    code = args.peer_dir / "code"
    if not (code / "Procedure.py").is_file():
        raise SystemExit(f"{code}: no LightGCN-PyTorch code there (see this script's docstring)")
    if not Path(args.peer_python).is_file():
        raise SystemExit(f"{args.peer_python}: no such Python (see this script's docstring)")
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
           "CUDA_VISIBLE_DEVICES": ""}
    command = [args.peer_python, "-c", PEER_DRIVER, threads, "--dataset", "gowalla", "--layer", "3", "--recdim", "64",
               "--lr", "0.001", "--decay", "1e-4", "--bpr_batch", "2048", "--epochs", str(args.epochs),
               "--seed", str(SEED), "--tensorboard", "0"]
    done = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
    setup, epochs = None, []
    for line in done.stdout.splitlines():
        if line.startswith("PEER_SETUP "):
            setup = json.loads(line.split(" ", 1)[1])
        elif line.startswith("PEER_EPOCH "):
            epochs.append(json.loads(line.split(" ", 1)[1]))
    if done.returncode or len(epochs) != args.epochs:
        tail = (done.stdout + done.stderr)[-3000:]
        raise SystemExit(f"the peer failed (exit {done.returncode}, {len(epochs)} epochs timed):\n{tail}")
    return {"setup": setup, "epochs": epochs}


def median_seconds(result: dict) -> float:
    return statistics.median(e["seconds"] for e in result["epochs"])


def print_table(ours: dict, peer: dict, args) -> None:
    o, p = ours["setup"], peer["setup"]
    print(f"\nGowalla: ours {o['n_users']:,} users x {o['n_items']:,} items, {o['nnz']:,} train interactions; "
          f"peer {p['n_users']:,} x {p['n_items']:,}, {p['nnz']:,}")
    print(f"dim 64, 3 layers, lr 0.001, l2 1e-4, batch 2048, seed {SEED}; torch threads: ours {o['threads']}, "
          f"peer {p['threads']}; torch ours {o['torch']}, peer {p['torch']}; peer sampler: "
          f"{'C++ (cppimport)' if p['cpp_sampler'] else 'Python fallback'}\n")
    head = f"{'implementation':28s} {'triples/epoch':>13s} {'epoch seconds':>24s} {'median':>8s} {'sample s':>9s} {'loss':>14s}"
    print(head)
    print("-" * len(head))
    for name, result in (("ours (recsys lightgcn)", ours), ("official LightGCN-PyTorch", peer)):
        epochs = result["epochs"]
        seconds = ", ".join(f"{e['seconds']:.1f}" for e in epochs)
        losses = ", ".join(f"{e['loss']:.4f}" if e["loss"] is not None else "-" for e in epochs)
        sample = f"{statistics.median(e['sample_seconds'] for e in epochs):.2f}" if "sample_seconds" in epochs[0] else "-"
        print(f"{name:28s} {epochs[0]['triples']:13,d} {seconds:>24s} {median_seconds(result):8.1f} {sample:>9s} {losses:>14s}")
    ratio = median_seconds(ours) / median_seconds(peer)
    per_triple = ratio * peer["epochs"][0]["triples"] / ours["epochs"][0]["triples"]
    print(f"\nours / peer, median epoch seconds: {ratio:.2f}x (per triple: {per_triple:.2f}x)"
          f"  ({'ours faster' if ratio < 1 else 'ours slower'})")


def parse_args(argv) -> argparse.Namespace:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--epochs", type=int, default=2)
    cli.add_argument("--threads", type=int, default=1)
    cli.add_argument("--peer-dir", type=Path, default=Path("/tmp/peer_lightgcn"))
    cli.add_argument("--peer-python", default="/tmp/peer_venv/bin/python")
    cli.add_argument("--dataset", type=Path, default=DATASETS / "gowalla", help="folder with train.txt and test.txt")
    cli.add_argument("--only", choices=("ours", "peer"), help="run one side only (no ratio)")
    args = cli.parse_args(argv)
    if args.epochs < 1 or args.threads < 1:
        cli.error("--epochs and --threads must be >= 1")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    folder = args.dataset.resolve()
    results = {}
    if args.only != "ours":
        link_peer_data(args.peer_dir, folder, "gowalla")
    if args.only != "peer":
        print(f"ours: {args.epochs} epochs on {args.threads} thread(s) ...", flush=True)
        started = time.perf_counter()
        results["ours"] = run_ours(folder, args)
        print(f"  epochs {[e['seconds'] for e in results['ours']['epochs']]} s "
              f"(run {time.perf_counter() - started:.0f} s)", flush=True)
    if args.only != "ours":
        print(f"peer: {args.epochs} epochs on {args.threads} thread(s) ...", flush=True)
        started = time.perf_counter()
        results["peer"] = run_peer(args)
        print(f"  epochs {[round(e['seconds'], 3) for e in results['peer']['epochs']]} s "
              f"(run {time.perf_counter() - started:.0f} s)", flush=True)
    if len(results) == 2:
        print_table(results["ours"], results["peer"], args)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
