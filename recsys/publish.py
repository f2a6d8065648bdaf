"""The publish stage: the champion's top-N item-to-item table, versioned by run date.

Each publication is a new folder ``run_date=YYYY-MM-DD/version=<UTC time>-<run id>/``: the table is
written to a hidden staging folder, renamed to that name in one step, and only then is ``_LATEST``
rewritten (atomically) to point at it. No folder a reader may be reading is ever changed in place:
a re-publication of the same run date goes to a new folder, and the one it supersedes is removed
only after ``_LATEST`` has moved on. So a reader sees the old version or the new one, never a part
or a mix. ``read_latest`` is the documented way for a service to load the table.
"""

from __future__ import annotations

import json
import logging
import os
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.faults import pause_point
from recsys.lake import Lake, remove_dir, temporary_sibling, write_json_atomic
from recsys.catalog import Catalog
from recsys.models.base import ItemModel

log = logging.getLogger(__name__)

ITEM_TO_ITEM = "item_to_item"
ITEM_TO_ITEM_SCHEMA = pa.schema([
    ("item_id", pa.string()), ("rank", pa.int32()), ("rec_item_id", pa.string()),
    ("score", pa.float32()), ("model", pa.string()), ("run_id", pa.string()),
])
BLOCK_ITEMS = 4096


VERSION_FILE = "_VERSION.json"  # inside each version folder: the pointer that names it (for rollback)


@dataclass(frozen=True)
class PublishResult:
    table: str
    path: str
    rows: int
    items: int
    model: str
    latest: str
    published: bool = True
    reason: str = ""
    removed_versions: tuple[str, ...] = ()


def read_pointer(lake: Lake) -> dict | None:
    return json.loads(lake.latest_pointer.read_text()) if lake.latest_pointer.exists() else None


def gate(previous: dict | None, headline: dict[str, float | None], metric: str, tolerance: float) -> str:
    """Why the new version must not be published, or "" when it may be.

    It may not when its ``metric`` is lower than the last published version's by more than
    ``tolerance`` (absolute), or when the metric could not be computed at all.
    """
    new = headline.get(metric)
    if new is None:
        return f"{metric} could not be computed for this run"
    old = ((previous or {}).get("tables", {}).get(ITEM_TO_ITEM, {}).get("metrics") or {}).get(metric)
    if old is not None and new < old - tolerance:
        return (f"{metric} {new:.4f} is worse than the published {previous['run_date']} version's {old:.4f} "
                f"by more than the tolerance {tolerance}")
    return ""


def item_to_item_table(model: ItemModel, catalog: Catalog, n: int, run_id: str) -> pa.Table:
    """Top-``n`` rows per item that has neighbours, ordered by item id and rank.

    The items are those the model knows: graph nodes, and for side-information models also cold
    items (which get neighbours but are never recommended).
    """
    parts = []
    ids = np.asarray(catalog.item_ids, dtype=object)
    known = model.known_items()
    anchors = known[np.argsort(ids[known].astype(str), kind="stable")]
    for lo in range(0, len(anchors), BLOCK_ITEMS):
        nodes = anchors[lo:lo + BLOCK_ITEMS]
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
                         headline: dict[str, float | None], metric: str = "auc", tolerance: float = 1.0,
                         retention: int = 0) -> PublishResult:
    """Write a new version for ``run_date``, then point ``_LATEST`` at it, unless the gate says no."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    target = lake.published_version(ITEM_TO_ITEM, run_date) / f"version={stamp}-{run_id}"
    items = len(set(recs.column("item_id").to_pylist()))
    refused = gate(read_pointer(lake), headline, metric, tolerance)
    if refused:
        log.warning("publish: nothing published for %s: %s", run_date, refused)
        return PublishResult(ITEM_TO_ITEM, str(target), recs.num_rows, items, model, str(lake.latest_pointer),
                             published=False, reason=refused)
    pointer = {"run_date": run_date, "run_id": run_id, "published_at": stamp,
               "tables": {ITEM_TO_ITEM: {"path": str(target.relative_to(lake.recommendations)), "model": model,
                                         "rows": recs.num_rows, "metrics": headline}}}
    staging = temporary_sibling(target, "staging")
    staging.mkdir(parents=True)
    pq.write_table(recs, staging / "part-00000.parquet")
    write_json_atomic(pointer, staging / VERSION_FILE)
    pause_point("publish")
    os.rename(staging, target)
    write_json_atomic(pointer, lake.latest_pointer)
    for superseded in versions(lake, run_date)[:-1]:
        remove_dir(superseded)
    removed = remove_old_versions(lake, retention) if retention else ()
    log.info("publish: %s -> %d rows for %d items from %s at %s; _LATEST -> %s", ITEM_TO_ITEM, recs.num_rows,
             items, model, target, run_date)
    return PublishResult(ITEM_TO_ITEM, str(target), recs.num_rows, items, model, str(lake.latest_pointer),
                         removed_versions=removed)


def versions(lake: Lake, run_date: str, table: str = ITEM_TO_ITEM) -> list[Path]:
    """The complete versions published for ``run_date``, oldest first."""
    folder = lake.published_version(table, run_date)
    found = folder.glob("version=*") if folder.exists() else []
    return sorted(p for p in found if (p / VERSION_FILE).exists())


def published_dates(lake: Lake, table: str = ITEM_TO_ITEM) -> list[str]:
    folder = lake.published(table)
    if not folder.exists():
        return []
    dates = (p.name.split("=", 1)[1] for p in folder.glob("run_date=*") if p.is_dir())
    return sorted(d for d in dates if versions(lake, d, table))


def remove_old_versions(lake: Lake, keep: int, table: str = ITEM_TO_ITEM) -> tuple[str, ...]:
    """Delete all but the newest ``keep`` run dates; the one ``_LATEST`` names is never deleted."""
    latest = (read_pointer(lake) or {}).get("run_date")
    dates = published_dates(lake, table)
    doomed = [d for d in dates[:-keep] if d != latest] if keep < len(dates) else []
    for run_date in doomed:
        remove_dir(lake.published_version(table, run_date))
    if doomed:
        log.info("publish: retention %d removed version(s) %s", keep, ", ".join(doomed))
    return tuple(doomed)


def rollback(lake: Lake, run_date: str, table: str = ITEM_TO_ITEM) -> dict:
    """Point ``_LATEST`` back at the published version of ``run_date``."""
    found = versions(lake, run_date, table)
    if not found:
        raise FileNotFoundError(f"no published {table} version for {run_date} (have: {published_dates(lake, table)})")
    pointer = json.loads((found[-1] / VERSION_FILE).read_text())
    write_json_atomic(pointer, lake.latest_pointer)
    log.info("rollback: _LATEST -> %s (run %s)", run_date, pointer["run_id"])
    return pointer


def read_latest(lake_root: str | Path, table: str = ITEM_TO_ITEM, attempts: int = 5) -> pa.Table:
    """The latest published version of ``table`` as a pyarrow Table (``.to_pandas()`` for pandas).

    A version is removed only after ``_LATEST`` has moved past it, so a read that loses that race
    finds its folder gone; it then reads the pointer again (never a part of either version).
    """
    recommendations = Path(lake_root) / "recommendations"
    for attempt in range(attempts):
        pointer = json.loads((recommendations / "_LATEST").read_text())
        folder = recommendations / pointer["tables"][table]["path"]
        try:
            return pq.read_table(folder / "part-00000.parquet")
        except (FileNotFoundError, OSError):
            if attempt == attempts - 1 or folder.exists():
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")
