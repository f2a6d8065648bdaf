"""Walk throughput and memory, side by side in one run.

Builds a power-law graph (default 400,000 nodes, 8,000,000 edges) and reports walk steps per second
per core for
  1. the project's compiled alias-table kernel alone (one core),
  2. the Spark walks stage end to end (local[*]; the first call, when Python workers start, and a
     second, warm call; session start-up reported separately),
  3. a dictionary + ``random.choices`` walker like the one in the source article (one core),
with the ratios between them, and the peak memory of the Spark stage's Python workers against the
size of the CSR arrays they receive.

    python benchmarks/walks.py                      # the figures in docs/benchmarks.md
    python benchmarks/walks.py --nodes 50000 --edges 1000000   # a quick look
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.config import SparkConfig, WalksConfig  # noqa: E402
from recsys.spark import spark_session  # noqa: E402
from recsys.transition import TransitionTable  # noqa: E402
from recsys.walk_kernel import random_walks, walk_steps  # noqa: E402
from recsys.walks import generate_walks, kernel_arrays  # noqa: E402


def power_law_graph(n_nodes: int, n_edges: int, seed: int) -> TransitionTable:
    """Out-degrees and in-degrees both heavy-tailed (Zipf-like), weights uniform in [0.1, 1.1)."""
    rng = np.random.default_rng(seed)
    rank_weight = 1.0 / np.arange(1, n_nodes + 1) ** 0.8
    p = rank_weight / rank_weight.sum()
    src = rng.choice(n_nodes, n_edges, p=p)
    dst = rng.permutation(n_nodes)[rng.choice(n_nodes, n_edges, p=p)]
    keep = src != dst
    src, dst = src[keep], dst[keep]
    weight = rng.random(len(src)) + 0.1
    ids = np.array([f"n{i}" for i in range(n_nodes)], dtype=object)
    return TransitionTable.from_edges(ids, src, dst, weight)


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def python_worker_peaks_mib() -> list[float]:
    """VmHWM (peak resident memory) of each live PySpark Python worker process."""
    peaks = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline:
                status = Path(f"/proc/{pid}/status").read_text()
                peaks.append(int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024)
        except (FileNotFoundError, ProcessLookupError, AttributeError):
            continue
    return peaks


def bench_kernel(table: TransitionTable, walks_per_node: int, length: int, seed: int) -> tuple[float, int]:
    arrays = kernel_arrays(table)
    ids = np.arange(len(arrays["starts"]) * walks_per_node, dtype=np.int64)
    starts = arrays["starts"][ids % len(arrays["starts"])]
    args = (arrays["indptr"], arrays["indices"], arrays["alias_prob"], arrays["alias_idx"])
    random_walks(*args, starts[:10], ids[:10], length, seed)  # compile outside the timing
    started = time.perf_counter()
    _, offsets = random_walks(*args, starts, ids, length, seed)
    return time.perf_counter() - started, walk_steps(offsets)


def dict_table(table: TransitionTable, nodes: np.ndarray) -> dict[int, tuple[list[int], list[float]]]:
    """The article's structure: node -> (neighbours, weights), for the nodes the peer walker can reach."""
    return {int(n): (table.indices[table.indptr[n]:table.indptr[n + 1]].tolist(),
                     table.probs[table.indptr[n]:table.indptr[n + 1]].tolist()) for n in nodes}


def bench_dict_walker(table: TransitionTable, n_walks: int, length: int, seed: int) -> tuple[float, int, float]:
    rng = random.Random(seed)
    started_build = time.perf_counter()
    transitions = dict_table(table, np.arange(table.n_nodes))
    build_seconds = time.perf_counter() - started_build
    starts = np.flatnonzero(table.out_degree() > 0)[:n_walks].tolist()
    steps = 0
    started = time.perf_counter()
    for node in starts:
        walk = [node]
        for _ in range(length - 1):
            neighbours, weights = transitions[walk[-1]]
            if not neighbours:
                break
            walk.append(rng.choices(neighbours, weights=weights)[0])
        steps += len(walk) - 1
    return time.perf_counter() - started, steps, build_seconds


def bench_spark(table: TransitionTable, config: WalksConfig, seed: int) -> dict[str, float]:
    started = time.perf_counter()
    spark = spark_session(SparkConfig(master="local[*]", driver_memory="4g"))
    startup = time.perf_counter() - started
    cores = spark.sparkContext.defaultParallelism
    seconds = []
    for _ in range(2):  # cold: Python workers start and load the kernel; warm: they are reused
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            result = generate_walks(spark, table, config, seed, Path(out) / "walks")
            seconds.append(time.perf_counter() - started)
    workers = python_worker_peaks_mib()
    spark.stop()
    return {"startup": startup, "cold": seconds[0], "seconds": seconds[1], "steps": result.steps, "cores": cores,
            "worker_peak_mib": max(workers) if workers else float("nan"), "workers": len(workers)}


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--nodes", type=int, default=400_000)
    cli.add_argument("--edges", type=int, default=8_000_000)
    cli.add_argument("--walks-per-node", type=int, default=2)
    cli.add_argument("--length", type=int, default=40)
    cli.add_argument("--partitions", type=int, default=8)
    cli.add_argument("--peer-walks", type=int, default=20_000, help="walks for the (slow) dict walker")
    cli.add_argument("--seed", type=int, default=1)
    args = cli.parse_args()

    started = time.perf_counter()
    table = power_law_graph(args.nodes, args.edges, args.seed)
    degree = table.out_degree()
    csr_mib = table.nbytes() / 2**20
    walk_csr_mib = sum(a.nbytes for a in kernel_arrays(table).values()) / 2**20
    print(f"graph: {table.n_nodes:,} nodes, {table.n_edges:,} edges, max out-degree {degree.max():,}, "
          f"median {int(np.median(degree))}; CSR+alias arrays {csr_mib:.0f} MiB ({walk_csr_mib:.0f} MiB sent to walkers); "
          f"built in {time.perf_counter() - started:.1f} s")

    k_seconds, k_steps = bench_kernel(table, args.walks_per_node, args.length, args.seed)
    kernel_rate = k_steps / k_seconds
    print(f"kernel alone (1 core): {k_steps:,} steps in {k_seconds:.2f} s = {kernel_rate / 1e6:.2f} M steps/s/core")

    d_seconds, d_steps, d_build = bench_dict_walker(table, args.peer_walks, args.length, args.seed)
    dict_rate = d_steps / d_seconds
    print(f"dict + random.choices (1 core): {d_steps:,} steps in {d_seconds:.2f} s = {dict_rate / 1e6:.3f} M steps/s/core "
          f"(building the dict took {d_build:.1f} s)")
    del d_build

    walks = WalksConfig(walks_per_node=args.walks_per_node, walk_length=args.length, partitions=args.partitions)
    spark = bench_spark(table, walks, args.seed)
    spark_rate = spark["steps"] / spark["seconds"] / spark["cores"]
    cold_rate = spark["steps"] / spark["cold"] / spark["cores"]
    print(f"Spark stage end to end (local[*], {spark['cores']} cores, {args.partitions} partitions, incl. broadcast "
          f"and Parquet write): {spark['steps']:,} steps in {spark['seconds']:.2f} s = {spark_rate / 1e6:.2f} M steps/s/core "
          f"warm; first call {spark['cold']:.2f} s = {cold_rate / 1e6:.2f} M steps/s/core (Python workers start, kernel "
          f"loads); session start-up {spark['startup']:.1f} s (in neither)")
    print(f"memory: Python walker peak RSS {spark['worker_peak_mib']:.0f} MiB per worker ({spark['workers']} processes) "
          f"= {spark['worker_peak_mib'] / walk_csr_mib:.1f}x the arrays it receives; driver peak RSS {rss_peak_mib():.0f} MiB")
    print()
    print("| walker | M steps/s/core | vs dict + random.choices |")
    print("|---|---:|---:|")
    print(f"| compiled alias kernel | {kernel_rate / 1e6:.2f} | {kernel_rate / dict_rate:.0f}x |")
    print(f"| Spark stage end to end, warm | {spark_rate / 1e6:.2f} | {spark_rate / dict_rate:.0f}x |")
    print(f"| Spark stage end to end, first call | {cold_rate / 1e6:.2f} | {cold_rate / dict_rate:.0f}x |")
    print(f"| dict + random.choices | {dict_rate / 1e6:.3f} | 1x |")


if __name__ == "__main__":
    main()
