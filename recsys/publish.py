"""The publish stage: the champion's top-N item-to-item table, versioned by run date.

The table is written to a hidden staging folder, renamed into ``run_date=YYYY-MM-DD/`` in one step,
and only then is ``_LATEST`` rewritten (atomically) to point at it: a reader sees the old version or
the new one, never a part. ``read_latest`` is the documented way for a service to load the table.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.lake import Lake, replace_dir, write_json_atomic
from recsys.models.base import ItemModel
from recsys.transition import TransitionTable

log = logging.getLogger(__name__)

ITEM_TO_ITEM = "item_to_item"
ITEM_TO_ITEM_SCHEMA = pa.schema([
    ("item_id", pa.string()), ("rank", pa.int32()), ("rec_item_id", pa.string()),
    ("score", pa.float32()), ("model", pa.string()), ("run_id", pa.string()),
])
BLOCK_ITEMS = 4096


@dataclass(frozen=True)
class PublishResult:
    table: str
    path: str
    rows: int
    items: int
    model: str
    latest: str


def item_to_item_table(model: ItemModel, table: TransitionTable, n: int, run_id: str) -> pa.Table:
    """Top-``n`` rows per item that has neighbours, ordered by item id and rank."""
    parts = []
    ids = np.asarray(table.item_ids, dtype=object)
    for lo in range(0, table.n_nodes, BLOCK_ITEMS):
        nodes = np.arange(lo, min(lo + BLOCK_ITEMS, table.n_nodes))
        neighbours, scores = model.similar(nodes, n)  # (block, n)
        row, rank = np.nonzero(neighbours >= 0)
        parts.append(pa.table({
            "item_id": pa.array(ids[nodes[row]].tolist(), pa.string()),
            "rank": pa.array(rank + 1, pa.int32()),
            "rec_item_id": pa.array(ids[neighbours[row, rank]].tolist(), pa.string()),
            "score": pa.array(scores[row, rank], pa.float32()),
        }))
    body = pa.concat_tables(parts) if parts else ITEM_TO_ITEM_SCHEMA.empty_table().select(["item_id", "rank", "rec_item_id", "score"])
    body = body.append_column("model", pa.array([model.name] * body.num_rows, pa.string()))
    body = body.append_column("run_id", pa.array([run_id] * body.num_rows, pa.string()))
    return body.cast(ITEM_TO_ITEM_SCHEMA)


def publish_item_to_item(lake: Lake, recs: pa.Table, run_date: str, run_id: str, model: str,
                         headline: dict[str, float]) -> PublishResult:
    target = lake.published_version(ITEM_TO_ITEM, run_date)
    staging = lake.published(ITEM_TO_ITEM) / f".staging-{run_id}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    pq.write_table(recs, staging / "part-00000.parquet")
    replace_dir(staging, target)
    pointer = {"run_date": run_date, "run_id": run_id,
               "tables": {ITEM_TO_ITEM: {"path": str(target.relative_to(lake.recommendations)), "model": model,
                                         "rows": recs.num_rows, "metrics": headline}}}
    write_json_atomic(pointer, lake.latest_pointer)
    items = len(set(recs.column("item_id").to_pylist()))
    log.info("publish: %s -> %d rows for %d items from %s at %s; _LATEST -> %s", ITEM_TO_ITEM, recs.num_rows,
             items, model, target, run_date)
    return PublishResult(ITEM_TO_ITEM, str(target), recs.num_rows, items, model, str(lake.latest_pointer))


def read_latest(lake_root: str | Path, table: str = ITEM_TO_ITEM) -> pa.Table:
    """The latest published version of ``table`` as a pyarrow Table (``.to_pandas()`` for pandas)."""
    recommendations = Path(lake_root) / "recommendations"
    pointer = json.loads((recommendations / "_LATEST").read_text())
    folder = recommendations / pointer["tables"][table]["path"]
    return pq.read_table(folder, ignore_prefixes=[".", "_"])
