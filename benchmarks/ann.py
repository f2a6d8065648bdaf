"""Exact top-N (our code path) vs approximate nearest-neighbour libraries, side by side on one machine.

For item vectors of ``--items`` items (default 180,000, the 10M-event log's catalogue) in ``--dim``
dimensions, every item's top-``--n`` most similar items (cosine), itself excluded:

- ``exact``: ``EmbeddingModel.similar`` (``recsys.models.embedding``: blocked matrix product plus
  ``top_n_rows``), timed on a seeded sample of ``--sample`` anchors and extrapolated to all items; its
  result on that sample is the truth every other method's recall@N is measured against;
- ``faiss-flat``: faiss's exact inner-product search (``IndexFlatIP``), all items;
- ``faiss-hnsw``, ``faiss-ivf``: faiss HNSW (Malkov & Yashunin 2018, "Efficient and robust approximate
  nearest neighbor search using Hierarchical Navigable Small World graphs") and IVF-flat (Jégou et al.
  2011, "Product quantization for nearest neighbor search", the inverted file without compression);
- ``usearch``: usearch's HNSW; ``hnswlib``: hnswlib's HNSW (the reference implementation; on PyPI
  only as a source tarball, so it needs a C++ compiler wherever it is installed);
- ``recsys-ann``: what the publish stage ships (``recsys.ann.VectorSearch``: faiss HNSW built on one
  thread over the Euclidean-transformed vectors, candidates re-scored exactly).

Each method runs in its own subprocess (so its peak memory is its own): build seconds, query seconds
for all items' top-N, recall@N against the exact sample, index bytes, peak RSS growth, and with
``--determinism`` whether two builds give identical neighbours. Threads: ``--threads`` (OpenMP, BLAS and
the libraries' own thread arguments). A library that is not installed is skipped, so the candidates can
live in a separate virtual environment:

    python3.11 -m venv /tmp/annvenv && /tmp/annvenv/bin/pip install numpy faiss-cpu usearch hnswlib
    PYTHONPATH=/tmp/annvenv/lib/python3.11/site-packages python benchmarks/ann.py --threads 2

Data: ``--data clusters`` (default) is a Gaussian mixture with Zipf-sized clusters (what trained item
embeddings look like: many small groups of related items and a few large ones); ``--data FILE.npy`` loads
real vectors (e.g. a trained model's ``vectors.npy``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Each configuration: (method, parameters). Kept small: every one builds an index over all items.
# ``build_threads``: threads of the index build when not ``--threads`` (1: a reproducible HNSW graph).
# The default set compares the libraries at one operating point (M 16, ef_search 128); ``--sweep`` adds more.
CONFIGS = [
    ("recsys-ann", {"M": 16, "ef_construction": 100, "ef_search": 128}),
    ("faiss-hnsw", {"M": 16, "ef_construction": 100, "ef_search": 128}),
    ("hnswlib", {"M": 16, "ef_construction": 100, "ef_search": 128}),
    ("usearch", {"M": 16, "ef_construction": 100, "ef_search": 128}),
    ("faiss-ivf", {"nlist": 1024, "nprobe": 32}),
    ("usearch", {"M": 16, "ef_construction": 100, "ef_search": 128, "build_threads": 1}),
    ("hnswlib", {"M": 16, "ef_construction": 100, "ef_search": 128, "build_threads": 1}),
    ("faiss-hnsw", {"M": 16, "ef_construction": 100, "ef_search": 128, "build_threads": 1}),
]
SWEEP = [
    ("faiss-flat", {}),
    ("faiss-hnsw", {"M": 16, "ef_construction": 100, "ef_search": 64}),
    ("faiss-hnsw", {"M": 32, "ef_construction": 100, "ef_search": 64}),
    ("faiss-ivf", {"nlist": 1024, "nprobe": 64}),
    ("usearch", {"M": 16, "ef_construction": 100, "ef_search": 64}),
    ("hnswlib", {"M": 16, "ef_construction": 100, "ef_search": 64}),
]


def clustered_vectors(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors from a Gaussian mixture whose cluster sizes follow Zipf's law (exponent 1)."""
    rng = np.random.default_rng(seed)
    sizes = 1.0 / np.arange(1, clusters + 1)
    members = rng.choice(clusters, size=n, p=sizes / sizes.sum())
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    spread = rng.uniform(0.3, 0.8, clusters).astype(np.float32)[members, None]
    vectors = centres[members] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last ``reset_peak_rss``) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    """Linux: writing 5 to ``clear_refs`` resets the peak resident set size to the current one."""
    Path("/proc/self/clear_refs").write_text("5")


# ----------------------------------------------------------------------------------------- methods
# Each builder returns (index, search(queries, k) -> neighbour ids (n, k), index bytes).

def build_faiss_flat(vectors, params, threads):
    import faiss
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index, lambda q, k: index.search(q, k)[1], vectors.nbytes


def build_faiss_hnsw(vectors, params, threads):
    import faiss
    faiss.omp_set_num_threads(params.get("build_threads", threads))
    index = faiss.IndexHNSWFlat(vectors.shape[1], params["M"], faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params["ef_construction"]
    index.add(vectors)
    faiss.omp_set_num_threads(threads)
    index.hnsw.efSearch = params["ef_search"]
    return index, lambda q, k: index.search(q, k)[1], len(faiss.serialize_index(index))


def build_faiss_ivf(vectors, params, threads):
    import faiss
    faiss.omp_set_num_threads(threads)
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], params["nlist"], faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 1234
    index.train(vectors)
    index.add(vectors)
    index.nprobe = params["nprobe"]
    return index, lambda q, k: index.search(q, k)[1], len(faiss.serialize_index(index))


def build_usearch(vectors, params, threads):
    from usearch.index import Index
    index = Index(ndim=vectors.shape[1], metric="ip", dtype="f32", connectivity=params["M"],
                  expansion_add=params["ef_construction"], expansion_search=params["ef_search"])
    index.add(np.arange(len(vectors)), vectors, threads=params.get("build_threads", threads))

    def search(queries, k):
        found = index.search(queries, k, threads=threads)
        return np.where(np.arange(k)[None, :] < found.counts[:, None], found.keys.astype(np.int64), -1)

    return index, search, index.serialized_length


def build_hnswlib(vectors, params, threads):
    import hnswlib
    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), ef_construction=params["ef_construction"], M=params["M"], random_seed=1)
    index.add_items(vectors, np.arange(len(vectors)), num_threads=params.get("build_threads", threads))
    index.set_ef(params["ef_search"])
    with tempfile.NamedTemporaryFile() as handle:
        index.save_index(handle.name)
        size = os.path.getsize(handle.name)
    return index, lambda q, k: index.knn_query(q, k, num_threads=threads)[0].astype(np.int64), size


def build_recsys_ann(vectors, params, threads):
    """What the publish stage ships: ``recsys.ann.VectorSearch`` (faiss HNSW built on one thread, exact re-scoring)."""
    from recsys.ann import HNSWParams, VectorSearch
    search = VectorSearch(vectors, HNSWParams(**params), threads=threads)
    return search, lambda q, k: search.top_n(q, k)[0], len(_faiss_bytes(search.index))


def _faiss_bytes(index):
    import faiss
    return faiss.serialize_index(index)


BUILDERS = {"recsys-ann": build_recsys_ann, "faiss-flat": build_faiss_flat, "faiss-hnsw": build_faiss_hnsw, "faiss-ivf": build_faiss_ivf,
            "usearch": build_usearch, "hnswlib": build_hnswlib}
LIBRARY = {"recsys-ann": "faiss", "faiss-flat": "faiss", "faiss-hnsw": "faiss", "faiss-ivf": "faiss", "usearch": "usearch", "hnswlib": "hnswlib"}


def without_self(found: np.ndarray, n: int) -> np.ndarray:
    """Each row's first ``n`` neighbours other than the row's own item (row i is item i)."""
    rows = np.arange(len(found))[:, None]
    keep = found != rows
    order = np.argsort(~keep, axis=1, kind="stable")
    return np.take_along_axis(found, order, axis=1)[:, :n]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(np.intersect1d(f[f >= 0], t[t >= 0])) / max((t >= 0).sum(), 1) for f, t in zip(found, truth)]
    return float(np.mean(hits))


def run_method(method: str, params: dict, data: Path, truth_file: Path, n: int, threads: int, determinism: bool) -> dict:
    vectors = np.load(data)
    truth = np.load(truth_file)
    anchors, exact = truth[:, 0], truth[:, 1:]
    reset_peak_rss()
    base = rss_mb("VmRSS")
    started = time.perf_counter()
    index, search, size = BUILDERS[method](vectors, params, threads)
    built = time.perf_counter() - started
    started = time.perf_counter()
    found = search(vectors, n + 1)
    queried = time.perf_counter() - started
    found = without_self(found, n)
    out = {"method": method, **params, "build_s": round(built, 2), "query_s": round(queried, 2),
           f"recall@{n}": round(recall(found[anchors], exact), 4), "index_mb": round(size / 2**20, 1),
           "rss_growth_mb": round(rss_mb("VmHWM") - base, 1)}
    if determinism:
        del index
        again = without_self(BUILDERS[method](vectors, params, threads)[1](vectors, n + 1), n)
        out["identical_rebuild"] = bool(np.array_equal(found, again))
    return out


def exact_truth(vectors: np.ndarray, n: int, sample: int, seed: int) -> tuple[np.ndarray, float]:
    """Our exact path's top-``n`` for a seeded sample of anchors, and its seconds extrapolated to all items."""
    from recsys.models.embedding import EmbeddingModel

    model = EmbeddingModel("bench", vectors, np.ones(len(vectors), bool), normalized=True)
    anchors = np.sort(np.random.default_rng(seed).choice(len(vectors), size=min(sample, len(vectors)), replace=False))
    started = time.perf_counter()
    neighbours, _ = model.similar(anchors, n)
    seconds = time.perf_counter() - started
    return np.hstack([anchors[:, None], neighbours]), seconds * len(vectors) / len(anchors)


def library_version(name: str) -> str:
    try:
        module = __import__(name)
    except ImportError:
        return ""
    return getattr(module, "__version__", "?")


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--items", type=int, default=180_000)
    cli.add_argument("--dim", type=int, default=64)
    cli.add_argument("--clusters", type=int, default=3000)
    cli.add_argument("--data", default="clusters", help="'clusters' or a .npy file of item vectors")
    cli.add_argument("--n", type=int, default=20)
    cli.add_argument("--sample", type=int, default=2000, help="anchors timed on the exact path and used for recall")
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--seed", type=int, default=1)
    cli.add_argument("--methods", nargs="*", help="only these methods (default: all configured)")
    cli.add_argument("--sweep", action="store_true", help="also run the other operating points (and exact faiss)")
    cli.add_argument("--determinism", action="store_true", help="build each index twice and compare the results")
    cli.add_argument("--worker", help=argparse.SUPPRESS)
    cli.add_argument("--params", help=argparse.SUPPRESS)
    cli.add_argument("--truth", type=Path, help=argparse.SUPPRESS)
    args = cli.parse_args()

    if args.worker:
        print(json.dumps(run_method(args.worker, json.loads(args.params), Path(args.data), args.truth, args.n,
                                    args.threads, args.determinism)))
        return

    if args.data == "clusters":
        vectors = clustered_vectors(args.items, args.dim, args.clusters, args.seed)
        what = f"Gaussian mixture, {args.clusters} Zipf-sized clusters"
    else:
        from recsys.models.embedding import unit_rows
        vectors = unit_rows(np.load(args.data))
        vectors = vectors[np.linalg.norm(vectors, axis=1) > 0]
        what = args.data
    print(f"{len(vectors):,} items x {vectors.shape[1]} dims ({what}); top-{args.n} by cosine; {args.threads} threads; "
          f"libraries: faiss {library_version('faiss') or '-'}, usearch {library_version('usearch') or '-'}, "
          f"hnswlib {library_version('hnswlib') or '-'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ann-bench-") as scratch:
        data, truth_file = Path(scratch) / "vectors.npy", Path(scratch) / "truth.npy"
        np.save(data, vectors)
        truth, exact_seconds = exact_truth(vectors, args.n, args.sample, args.seed)
        np.save(truth_file, truth)
        print(f"exact (EmbeddingModel.similar): {args.sample} anchors timed, all {len(vectors):,} items "
              f"extrapolated: {exact_seconds:.1f} s", flush=True)
        results = []
        for method, params in CONFIGS + (SWEEP if args.sweep else []):
            if args.methods and method not in args.methods:
                continue
            if not library_version(LIBRARY[method]):
                print(f"{method}: not installed, skipped", flush=True)
                continue
            command = [sys.executable, __file__, "--worker", method, "--params", json.dumps(params), "--data", str(data),
                       "--truth", str(truth_file), "--n", str(args.n), "--threads", str(args.threads)]
            command += ["--determinism"] if args.determinism else []
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads),
                   "MKL_NUM_THREADS": str(args.threads)}
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode:
                print(f"{method} {params}: failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["total_s"] = round(row["build_s"] + row["query_s"], 2)
            row["vs_exact"] = f"{exact_seconds / row['total_s']:.1f}x"
            results.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nexact path for all items (extrapolated): {exact_seconds:.1f} s")
    for row in results:
        print(f"{row['method']:<11} {json.dumps({k: v for k, v in row.items() if k != 'method'})}")


if __name__ == "__main__":
    main()
