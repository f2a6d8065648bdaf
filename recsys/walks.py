"""The walks stage: weighted random walks over the transition table, in parallel on Spark.

Walk ``w`` starts at the ``w % S``-th node that has neighbours (S of them) and is seeded from
(seed, w) alone, so the same seed gives the same walks whatever the partitioning, on one machine or
a cluster. The CSR and alias arrays are broadcast to the executors; each partition runs the
compiled kernel of ``recsys.walk_kernel`` inside ``mapInArrow`` and writes its walks straight to a
Parquet file with pyarrow (the walks never pass through the JVM's row format, which costs more than
the walking), returning one summary row to the driver. The files are written to a staging folder
that is renamed into place when every partition is done; a retried task rewrites the same file.
Output: Parquet, one walk per row, column ``walk`` of ``list<int32>`` node indices (DeepWalk,
Perozzi et al. 2014, with the weighted transitions of Wang et al. 2018). On a cluster the output
folder must be on storage every executor can write (as the lake is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession

from recsys.config import WalksConfig
from recsys.lake import replace_dir, temporary_sibling, write_parquet_atomic
from recsys.spark import job_progress
from recsys.transition import TransitionTable
from recsys.walk_kernel import random_walks

log = logging.getLogger(__name__)

SUMMARY_DDL = "file string, walks long, steps long"


@dataclass(frozen=True)
class WalksResult:
    path: str
    walks: int
    steps: int
    start_nodes: int


def start_nodes(table: TransitionTable) -> np.ndarray:
    """Nodes with at least one neighbour; an isolated node would only give a one-node walk."""
    return np.flatnonzero(table.out_degree() > 0).astype(np.int32)


def walks_for_ids(arrays: dict[str, np.ndarray], walk_ids: np.ndarray, length: int, seed: int) -> pa.ListArray:
    """The walks with the given ids as an Arrow ``list<int32>`` array (the kernel behind both paths)."""
    starts = arrays["starts"][walk_ids % len(arrays["starts"])]
    nodes, offsets = random_walks(arrays["indptr"], arrays["indices"], arrays["alias_prob"], arrays["alias_idx"],
                                  starts.astype(np.int32), walk_ids.astype(np.int64), length, seed)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(nodes, pa.int32()))


def kernel_arrays(table: TransitionTable) -> dict[str, np.ndarray]:
    return {"indptr": table.indptr, "indices": table.indices, "alias_prob": table.alias_prob,
            "alias_idx": table.alias_idx, "starts": start_nodes(table)}


def generate_walks_local(table: TransitionTable, config: WalksConfig, seed: int) -> pa.Table:
    """The same walks as the Spark stage, computed in this process (tests, small graphs)."""
    arrays = kernel_arrays(table)
    total = len(arrays["starts"]) * config.walks_per_node
    walk_ids = np.arange(total, dtype=np.int64)
    return pa.table({"walk": walks_for_ids(arrays, walk_ids, config.walk_length, seed)})


def generate_walks(spark: SparkSession, table: TransitionTable, config: WalksConfig, seed: int, out: Path,
                   progress: Callable[[int, int], None] | None = None) -> WalksResult:
    """Run the walks on Spark and write them under ``out`` as Parquet, one file per partition;
    ``progress(partitions done, partitions)`` while they run."""
    arrays = kernel_arrays(table)
    total = len(arrays["starts"]) * config.walks_per_node
    if total == 0:
        raise ValueError("the graph has no edges: no walk can start (too few co-occurring events in the window?)")
    staging = temporary_sibling(out, "staging")
    staging.mkdir(parents=True)
    broadcast = spark.sparkContext.broadcast(arrays)
    length, folder = config.walk_length, str(staging)

    def run_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        local = broadcast.value
        for batch in batches:
            walk_ids = batch.column("id").to_numpy()
            if len(walk_ids) == 0:
                continue
            walks = walks_for_ids(local, walk_ids, length, seed)
            path = Path(folder) / f"part-{int(walk_ids[0]):012d}.parquet"
            write_parquet_atomic(pa.table({"walk": walks}), path)
            steps = int(pc.sum(pc.list_value_length(walks)).as_py()) - len(walks)
            yield pa.RecordBatch.from_pydict({"file": [path.name], "walks": [len(walks)], "steps": [steps]})

    ids = spark.range(0, total, numPartitions=config.partitions)
    with job_progress(spark, progress):
        summary = ids.mapInArrow(run_partition, SUMMARY_DDL).collect()
    broadcast.unpersist()
    replace_dir(staging, out)
    result = WalksResult(path=str(out), walks=sum(r["walks"] for r in summary), steps=sum(r["steps"] for r in summary),
                         start_nodes=len(arrays["starts"]))
    log.info("walks: %d walks (%d per node from %d start nodes, length <= %d), %d steps, %d partitions, at %s",
             result.walks, config.walks_per_node, result.start_nodes, length, result.steps, config.partitions, out)
    return result

