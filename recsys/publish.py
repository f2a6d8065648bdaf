"""The publish stage: the champions' top-N tables, each published as a Delta Lake table.

Two tables, each with its own champion, gate and history: ``item_to_item`` (``item_id, rank,
rec_item_id, score, model, run_id``: the items related to each item) and ``user_to_item``
(``user_id, rank, item_id, score, model, run_id``: what each user with training history should see
next, the items the user already had left out unless ``publish.exclude_seen`` is false). Everything
below holds for both. A champion with vectors (an embedding or factor model) over at least
``publish.ann_min_items`` items is searched approximately (``searched_item_to_item_table``,
``searched_user_to_item_table``, ``recsys.ann``), and the result says how well (``PublishResult.search``).

``recommendations/item_to_item`` is a Delta table: Parquet data files plus the transaction log
``_delta_log/``, as the Delta Transaction Log Protocol defines it
(https://github.com/delta-io/delta/blob/master/PROTOCOL.md), written with the ``deltalake`` package
(delta-rs; no Spark, no server). Its current snapshot is exactly the recommendations of one run.
A publication follows the protocol's two phases of a write (PROTOCOL.md, "Overview"):

1. the gate (``gate``): a champion worse than the run the table holds now, or with no metric at all,
   commits nothing. Each commit records its holdout size (``positives``..., ``users_evaluated``) and
   each metric's standard error (``<metric>_se``) with its metrics; given a minimum holdout
   (``evaluate.min_positives``, ``evaluate.min_users``), the gate refuses a run below it and compares
   with the published run only when that run's holdout reached it too (a run published on a handful
   of pairs, or before sizes were recorded, is replaced without comparison). Either way the result
   says both figures with their 95% confidence intervals (``comparison``);
2. the run's rows go to a new data file ``part-00000-<uuid>.parquet`` in the table folder. No commit
   names it, so no reader sees it: a snapshot is the files the log has added and not removed
   ("Action Reconciliation");
3. ``_commit`` appends one commit: an overwrite that removes every file of the previous snapshot and
   adds the new one, and whose ``commitInfo`` records the run (run_id, run_date, model, metric, rows,
   and metrics and data files as JSON; "Commit Provenance Information"). A commit is one new file
   ``_delta_log/<version>.json``, and these files are the table's unit of atomicity ("Delta Log
   Entries"), so a reader sees the previous snapshot or the new one, never a part or a mix. A process
   killed before this step leaves the table as it was, plus an unreferenced data file that the next
   vacuum deletes;
4. the pointer is rewritten (atomically): ``LATEST.json``, one JSON object on one line, which Spark
   (``spark.read.json``), Hive's JSON SerDe and any JSON reader read as one row; and ``_LATEST``, the
   same content indented, for compatibility until 2027-06-01 (Hadoop's readers skip a name that starts
   with ``_`` as hidden, so Spark reads nothing from it). Both are informational: services read the
   Delta table, and the gate and rollback read the log;
5. retention vacuums the data files of the commits of older run dates (``_retain``), older by commit
   order, never by the date's name (the clock may step back).

Rollback is Delta's RESTORE to the newest commit of a run date: a new commit that carries the
restored run's metadata, so the gate then compares with the restored run. The run a snapshot holds is
the newest commit that carries run metadata (vacuum's own commits carry none). One writer at a time:
the pipeline's lake lock.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake.schema import Schema
from deltalake.transaction import AddAction, create_table_with_add_actions

from recsys.ann import SearchSummary, VectorSearch, library_version, measure_recall
from recsys.catalog import Catalog
from recsys.interactions import Interactions
from recsys.lake import Lake, write_json_atomic, write_text_atomic
from recsys.models.base import ITEM_TO_ITEM, USER_TO_ITEM, ItemModel, UserModel

log = logging.getLogger(__name__)

ITEM_TO_ITEM_SCHEMA = pa.schema([
    ("item_id", pa.string()), ("rank", pa.int32()), ("rec_item_id", pa.string()),
    ("score", pa.float32()), ("model", pa.string()), ("run_id", pa.string()),
])
USER_TO_ITEM_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
    ("score", pa.float32()), ("model", pa.string()), ("run_id", pa.string()),
])
SCHEMAS = {ITEM_TO_ITEM: ITEM_TO_ITEM_SCHEMA, USER_TO_ITEM: USER_TO_ITEM_SCHEMA}
ANCHOR = {ITEM_TO_ITEM: "item_id", USER_TO_ITEM: "user_id"}  # the column a service looks rows up by
BLOCK_CELLS = 1 << 22  # top-N cells (anchors x N) computed at once: memory stays bounded whatever N is
# A checkpoint every 10 commits (Delta's default is 100): loading the table replays at most 10 JSON
# commits after the newest checkpoint, which keeps every reader's load fast (a night is 1 to 3 commits).
TABLE_CONFIGURATION = {"delta.checkpointInterval": "10"}
RUN_KEYS = ("run_id", "run_date", "model", "metric", "metrics", "rows", "files")  # what each commit records
LEGACY_LATEST_UNTIL = "2027-06-01"  # ``_LATEST`` is written beside it until then

# Why a table got no commit (PublishResult.cause): the gate refused the champion; the holdout was below the
# minimum (or no model could be scored on it); the run lists no model that serves the table.
REFUSED_BY_GATE, HOLDOUT_TOO_SMALL, NOT_SERVED = "gate", "holdout_too_small", "not_served"

ITEM_METRICS = ("next_recall", "next_mrr", "auc", "auc_seen", "auc_cold", "hit_rate")
# what an item-to-item metric is computed on (held-out pairs, or next-item predictions); every user-to-item
# metric is a mean over users
_ITEM_HOLDOUT = {"auc": "positives", "auc_seen": "positives_seen", "auc_cold": "positives_cold", "hit_rate": "positives",
                 "next_recall": "predictions", "next_mrr": "predictions"}
USERS_EVALUATED = "users_evaluated"
Z95 = 1.959964  # a 95% normal confidence interval is the figure +- Z95 standard errors


@dataclass(frozen=True)
class PublishResult:
    table: str
    path: str  # the Delta table folder
    rows: int
    items: int  # distinct anchors: items (item_to_item) or users (user_to_item) with rows
    model: str
    latest: str
    published: bool = True
    reason: str = ""
    removed_versions: tuple[str, ...] = ()  # run dates whose data files retention removed
    version: int | None = None  # the Delta version committed; None when refused
    cause: str = ""  # why nothing was committed: REFUSED_BY_GATE, HOLDOUT_TOO_SMALL or NOT_SERVED; "" when published
    comparison: str = ""  # the champion's figure and the published run's, each with its 95% confidence interval
    search: dict | None = None  # how the top-N was searched when approximately (``SearchSummary.as_dict``): recall, seconds


@dataclass(frozen=True)
class GateDecision:
    refused: str  # why the run must not be published, "" when it may
    comparison: str  # what was compared (figures with confidence intervals), or why nothing was
    cause: str = ""  # REFUSED_BY_GATE or HOLDOUT_TOO_SMALL when refused


@dataclass(frozen=True)
class RunOutcome:
    """What a whole run published: ``state`` is ``Completed`` (every table the run serves got its commit),
    ``PartlyPublished`` or ``NotPublished``; ``data_short`` when a table got none because its holdout was
    too small (a data problem an operator has to act on, unlike a refusal by the gate)."""

    state: str
    message: str
    data_short: bool


def holdout_size_key(metric: str) -> str:
    """The metrics' key of the holdout size behind ``metric``: held-out pairs of its split, or users evaluated."""
    return _ITEM_HOLDOUT.get(metric, USERS_EVALUATED)


def item_headline(row: dict) -> dict[str, float | None]:
    """What an item-to-item commit records from its champion's metrics row: the metrics, their standard
    errors and the holdout's sizes."""
    keys = (*ITEM_METRICS, *(f"{m}_se" for m in ITEM_METRICS), "positives", "positives_seen", "positives_cold",
            "predictions", *(f"{m}_{end}" for m in ("next_recall", "next_mrr") for end in ("lo", "hi")))
    return {k: _finite(row.get(k)) for k in keys}


def user_headline(row: dict) -> dict[str, float | None]:
    """What a user-to-item commit records: every metric @K and its standard error, users served and evaluated."""
    return {k: _finite(v) for k, v in row.items() if "@" in k or k in ("users_served", USERS_EVALUATED)}


def latest_file(lake: Lake) -> Path:
    """``LATEST.json``, beside the tables (``Lake.latest_pointer`` is the legacy ``_LATEST``)."""
    return lake.latest_json


def read_pointer(lake: Lake) -> dict | None:
    """The pointer: ``LATEST.json``, or a lake's older ``_LATEST`` when it has no ``LATEST.json`` yet."""
    for path in (latest_file(lake), lake.latest_pointer):
        if path.exists():
            return json.loads(path.read_text())
    return None


def gate(previous: dict | None, headline: dict[str, float | None], metric: str, tolerance: float,
         min_size: int = 0) -> GateDecision:
    """Whether the new run may be published, and what was compared.

    ``previous`` is the run the table holds now (``current_run``: its ``run_date`` and ``metrics``).
    It may not when its ``metric`` could not be computed, when its holdout is below ``min_size`` (> 0),
    or when ``metric`` is lower than the published run's by more than ``tolerance`` (absolute). With
    ``min_size`` > 0 the two are compared only if the published run's recorded holdout reached
    ``min_size``; a published run with a smaller or no recorded holdout is replaced without comparison.
    """
    key = holdout_size_key(metric)
    new = _finite(headline.get(metric))
    if new is None:
        return GateDecision(f"{metric} could not be computed for this run", "", REFUSED_BY_GATE)
    mine = _figure(metric, headline)
    new_size = _finite(headline.get(key))
    if min_size and (new_size is None or new_size < min_size):
        return GateDecision(f"holdout too small: {mine} is below the minimum of {min_size}", mine, HOLDOUT_TOO_SMALL)
    held = (previous or {}).get("metrics") or {}
    old = _finite(held.get(metric))
    if previous is None:
        return GateDecision("", f"{mine}; the table's first publication")
    if old is None:
        return GateDecision("", f"{mine}; the published {previous['run_date']} run recorded no {metric} to compare with")
    theirs = f"the published {previous['run_date']} run's {_figure(metric, held)}"
    old_size = _finite(held.get(key))
    if min_size and (old_size is None or old_size < min_size):
        why = "recorded no holdout size" if old_size is None else f"is below the minimum of {min_size}"
        return GateDecision("", f"{mine}; not compared with {theirs}, whose holdout {why}")
    if new < old - tolerance:
        return GateDecision(f"{mine} is worse than {theirs} by more than the tolerance {tolerance}",
                            f"{mine} vs {theirs}", REFUSED_BY_GATE)
    return GateDecision("", f"{mine} vs {theirs}: within the tolerance {tolerance}")


def _figure(metric: str, metrics: dict) -> str:
    """``auc 0.9143 (95% CI 0.9080..0.9206, 7155 positives)``: a figure, its interval and its holdout size."""
    value, se, size = (_finite(metrics.get(k)) for k in (metric, f"{metric}_se", holdout_size_key(metric)))
    text = f"{metric} {value:.4f}" if value is not None else f"{metric} n/a"
    parts = []
    lo, hi = _finite(metrics.get(f"{metric}_lo")), _finite(metrics.get(f"{metric}_hi"))
    if value is not None and lo is not None and hi is not None:  # a bootstrap interval, where the metric has one
        parts.append(f"95% CI {lo:.4f}..{hi:.4f}")
    elif value is not None and se is not None:
        parts.append(f"95% CI {value - Z95 * se:.4f}..{value + Z95 * se:.4f}")
    parts.append(f"{int(size)} {holdout_size_key(metric).replace('_', ' ')}" if size is not None else "holdout size unknown")
    return f"{text} ({', '.join(parts)})"


def run_outcome(results: list[PublishResult | None]) -> RunOutcome:
    """The run's outcome from its tables' publications (a table the run does not serve does not count)."""
    served = [r for r in results if r is not None and r.cause != NOT_SERVED]
    missed = [r for r in served if not r.published]
    if not missed:
        return RunOutcome("Completed", "published " + ", ".join(r.table for r in served), False)
    state = "NotPublished" if len(missed) == len(served) else "PartlyPublished"
    message = "; ".join(f"nothing published to {r.table}: {r.reason}" for r in missed)
    return RunOutcome(state, message, any(r.cause == HOLDOUT_TOO_SMALL for r in missed))


def item_to_item_table(model: ItemModel, catalog: Catalog, n: int, run_id: str) -> pa.Table:
    """Top-``n`` rows per item that has neighbours, ordered by item id and rank.

    The items are those the model knows: graph nodes, and for side-information models also cold
    items (which get neighbours but are never recommended).
    """
    parts = []
    ids = np.asarray(catalog.item_ids, dtype=object)
    n = max(1, min(n, len(ids)))  # no item has more neighbours than the catalogue holds
    known = model.known_items()
    anchors = known[np.argsort(ids[known].astype(str), kind="stable")]
    block = max(1, BLOCK_CELLS // n)
    for lo in range(0, len(anchors), block):
        nodes = anchors[lo:lo + block]
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


def user_to_item_table(model: UserModel, history: Interactions | None, n: int, run_id: str,
                       batch_size: int = 1024) -> pa.Table:
    """Top-``n`` rows per user of the model's matrix (every user with training history), ordered by user
    id and rank; with ``history``, each user's items in it are left out (``publish.exclude_seen``)."""
    user_ids = np.asarray(model.user_ids, dtype=object)
    item_ids = np.asarray(model.item_ids, dtype=object)
    n = max(1, min(n, len(item_ids)))  # no user has more items to see than the model knows
    batch_size = max(1, min(batch_size, BLOCK_CELLS // n))
    users = np.argsort(user_ids.astype(str), kind="stable")
    parts = []
    for lo in range(0, len(users), batch_size):
        block = users[lo:lo + batch_size]
        top, scores = model.top_items(block, n, history, batch_size)  # (block, n); -1 where fewer items remain
        row, rank = np.nonzero(top >= 0)
        parts.append(pa.table({
            "user_id": pa.array(user_ids[block[row]].tolist(), pa.string()),
            "rank": pa.array(rank + 1, pa.int32()),
            "item_id": pa.array(item_ids[top[row, rank]].tolist(), pa.string()),
            "score": pa.array(scores[row, rank], pa.float32()),
        }))
    body = pa.concat_tables(parts) if parts else USER_TO_ITEM_SCHEMA.empty_table().select(["user_id", "rank", "item_id", "score"])
    body = body.append_column("model", pa.array([model.name] * body.num_rows, pa.string()))
    body = body.append_column("run_id", pa.array([run_id] * body.num_rows, pa.string()))
    return body.cast(USER_TO_ITEM_SCHEMA)


def searched_item_to_item_table(model: ItemModel, catalog: Catalog, n: int, run_id: str, ann_min_items: int = 0,
                                seed: int = 0, threads: int | None = None, min_recall: float = 0.0
                                ) -> tuple[pa.Table, SearchSummary | None]:
    """``item_to_item_table``, by the model's approximate search when it has one for a catalogue of at least
    ``ann_min_items`` items (``publish.ann_min_items``; 0: always exact), with what that search did: its
    recall@n against the exact top-n on a seeded sample of items (its ``ef_search`` raised first until that
    recall reaches ``min_recall``, ``publish.ann_min_recall``), and its time against the exact path's
    (``recsys.ann``). The summary is None when the table was searched exactly. The search uses ``threads``
    threads (default: every core); its result is the same for any number."""
    search = model.approximate_search(ann_min_items, threads or os.cpu_count() or 1)
    if search is None:
        return item_to_item_table(model, catalog, n, run_id), None
    top = max(1, min(n, len(catalog.item_ids)))
    return _searched(ITEM_TO_ITEM, search, model.known_items(), top, seed, min_recall,
                     lambda nodes: model.similar(nodes, top)[0], lambda nodes: model.exact_similar(nodes, top)[0],
                     lambda: item_to_item_table(model, catalog, n, run_id))


def searched_user_to_item_table(model: UserModel, history: Interactions | None, n: int, run_id: str,
                                ann_min_items: int = 0, seed: int = 0, threads: int | None = None,
                                min_recall: float = 0.0) -> tuple[pa.Table, SearchSummary | None]:
    """``user_to_item_table`` by the model's approximate search (``searched_item_to_item_table`` for users):
    the recall is measured on a seeded sample of users, their seen items left out as in the table."""
    search = model.approximate_search(ann_min_items, threads or os.cpu_count() or 1)
    if search is None:
        return user_to_item_table(model, history, n, run_id), None
    top = max(1, min(n, len(model.item_ids)))
    return _searched(USER_TO_ITEM, search, np.arange(len(model.user_ids)), top, seed, min_recall,
                     lambda rows: model.top_items(rows, top, history)[0],
                     lambda rows: model.exact_top_items(rows, top, history)[0],
                     lambda: user_to_item_table(model, history, n, run_id))


def _searched(table: str, search: VectorSearch, anchors: np.ndarray, n: int, seed: int, min_recall: float,
              approximate, exact, build: Callable[[], pa.Table]) -> tuple[pa.Table, SearchSummary]:
    """The table ``build`` makes by approximate search, after its recall@n against ``exact`` on a seeded
    sample of ``anchors`` was measured (and ``ef_search`` raised to reach ``min_recall``), with what the
    search did: that recall, and its seconds against the exact path's, logged."""
    recall, sample, exact_seconds = measure_recall(approximate, exact, anchors, seed=seed, search=search,
                                                   min_recall=min_recall)
    started = time.perf_counter()
    body = build()
    summary = SearchSummary(table, "hnsw", library_version(), len(search), int(len(anchors)), n, round(recall, 4),
                            sample, round(search.build_seconds, 2), round(time.perf_counter() - started, 2),
                            round(exact_seconds, 2), asdict(search.params))
    log.info("publish: %s", summary.describe())
    return body, summary


def publish_item_to_item(lake: Lake, recs: pa.Table, run_date: str, run_id: str, model: str,
                         headline: dict[str, float | None], metric: str = "auc", tolerance: float = 1.0,
                         retention: int = 0, min_size: int = 0) -> PublishResult:
    """``publish_table`` for the item-to-item table."""
    return publish_table(lake, ITEM_TO_ITEM, recs, run_date, run_id, model, headline, metric, tolerance, retention,
                         min_size)


def refused(lake: Lake, table: str, model: str, rows: int, reason: str, cause: str = REFUSED_BY_GATE,
            comparison: str = "") -> PublishResult:
    """The result of a publication that commits nothing (gate, holdout too small, or no model to publish)."""
    log.warning("publish: nothing published to %s: %s", table, reason)
    return PublishResult(table, str(lake.published(table)), rows, 0, model, str(latest_file(lake)),
                         published=False, reason=reason, cause=cause, comparison=comparison)


def publish_table(lake: Lake, table: str, recs: pa.Table, run_date: str, run_id: str, model: str,
                  headline: dict[str, float | None], metric: str, tolerance: float = 1.0,
                  retention: int = 0, min_size: int = 0) -> PublishResult:
    """Commit ``recs`` as ``table``'s new snapshot (one Delta commit), unless the gate says no.

    ``headline`` is what the commit records (``item_headline``, ``user_headline``); ``min_size`` is the
    minimum holdout the gate asks of this run and of the run it compares with (0: none).
    ``retention`` > 0 then keeps the data files of the newest ``retention`` run dates only.
    """
    path = lake.published(table)
    items = pc.count_distinct(recs.column(ANCHOR[table])).as_py()
    decision = gate(current_run(lake, table), headline, metric, tolerance, min_size)
    if decision.refused:
        return refused(lake, table, model, recs.num_rows, decision.refused, decision.cause, decision.comparison)
    name = f"part-00000-{uuid.uuid4()}.parquet"
    run = {"run_id": run_id, "run_date": run_date, "model": model, "metric": metric,
           "metrics": {k: _finite(v) for k, v in headline.items()}, "rows": recs.num_rows, "files": [name]}
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(recs.cast(SCHEMAS[table]), path / name)
    stat = (path / name).stat()
    add = AddAction(name, stat.st_size, {}, stat.st_mtime_ns // 1_000_000, True,
                    json.dumps({"numRecords": recs.num_rows}))
    version = _commit(path, add, run, SCHEMAS[table])
    _write_pointer(lake, _pointer(lake, table, run, version))
    removed = _retain(path, retention) if retention else ()
    log.info("publish: %s -> %d rows for %d %ss from %s, Delta version %d of %s; %s", table, recs.num_rows, items,
             ANCHOR[table].removesuffix("_id"), model, version, path, decision.comparison)
    return PublishResult(table, str(path), recs.num_rows, items, model, str(latest_file(lake)),
                         removed_versions=removed, version=version, comparison=decision.comparison)


def _write_pointer(lake: Lake, pointer: dict) -> None:
    """``LATEST.json`` (one line), then the legacy ``_LATEST`` (indented), each replaced atomically."""
    write_text_atomic(json.dumps(pointer, sort_keys=True, default=str) + "\n", latest_file(lake))
    write_json_atomic(pointer, lake.latest_pointer)


def _commit(path: Path, add: AddAction, run: dict, schema: pa.Schema = ITEM_TO_ITEM_SCHEMA) -> int:
    """Make the data file ``add`` the table's whole snapshot in one commit; return its version.

    When this is called the data file is complete in the table folder, and nothing else has changed:
    the log and the pointer are as the previous publication left them.
    """
    properties = CommitProperties(custom_metadata=_commit_info(run))
    if not DeltaTable.is_deltatable(str(path)):
        create_table_with_add_actions(str(path), Schema.from_arrow(schema), [add], "overwrite",
                                      configuration=TABLE_CONFIGURATION, commit_properties=properties)
        return DeltaTable(path).version()
    table = DeltaTable(path)
    table.create_write_transaction([add], "overwrite", schema, commit_properties=properties)
    table.update_incremental()  # one writer at a time (the lake lock): the newest version is this commit
    return table.version()


def rollback(lake: Lake, run_date: str, table: str = ITEM_TO_ITEM) -> dict:
    """Restore the table to the newest readable commit of ``run_date`` and rewrite the pointer (``LATEST.json``, ``_LATEST``)."""
    path = lake.published(table)
    delta = _open(path)
    runs = _runs(delta)
    found = [c for c in runs if c["run_date"] == run_date and _readable(path, c)]
    if not found:
        raise FileNotFoundError(f"no published {table} commit for {run_date} (have: {_dates(path, runs)})")
    target = found[-1]
    version = target["version"]
    if runs[-1]["version"] != version:  # else the snapshot already is that commit's
        delta.restore(version, commit_properties=CommitProperties(
            custom_metadata={**_commit_info(target), "restored_version": str(version)}))
        delta.update_incremental()
        version = delta.version()
    pointer = _pointer(lake, table, target, version)
    _write_pointer(lake, pointer)
    log.info("rollback: %s restored to %s (run %s), Delta version %d", table, run_date, target["run_id"], version)
    return pointer


def published_dates(lake: Lake, table: str = ITEM_TO_ITEM) -> list[str]:
    """Run dates with a commit whose data files are all still there (not vacuumed), sorted."""
    path = lake.published(table)
    return _dates(path, _runs(_open(path)))


def current_run(lake: Lake, table: str = ITEM_TO_ITEM) -> dict | None:
    """The run the table's snapshot holds: the newest commit with run metadata (a publish or a restore).

    Its keys: run_id, run_date, model, metric, metrics, rows, files, version, timestamp.
    """
    runs = _runs(_open(lake.published(table)))
    return runs[-1] if runs else None


def read_latest(lake_root: str | Path, table: str = ITEM_TO_ITEM, attempts: int = 5) -> pa.Table:
    """The table's current snapshot as a pyarrow Table (``DeltaTable(path).to_pyarrow_table()``).

    Retention may delete the files of a snapshot that has just been replaced; a read that loses that
    race loads the table again.
    """
    path = Lake(Path(lake_root)).published(table)
    for attempt in range(attempts):
        delta = DeltaTable(path)
        try:
            return delta.to_pyarrow_table()
        except FileNotFoundError:
            if attempt == attempts - 1 or DeltaTable(path).version() == delta.version():
                raise
    raise AssertionError("unreachable")


def _retain(path: Path, keep: int) -> tuple[str, ...]:
    """Delete the data files of all but the newest ``keep`` run dates' commits; return the dates removed.

    "Newest" is by the version of each date's latest publish (a rollback's restore commit does not make
    its date newer), never by the run date's name: after the clock stepped back, the run just published
    has an older date than the ones before it, and must still be kept. Delta's vacuum
    deletes the files that neither the current snapshot nor the commits it is told to keep reference.
    Its retention is a time, and every commit of a test lands within one second, so it runs with no
    time threshold and names the commits to keep instead (``keep_versions``). ``full`` also deletes
    data files that no commit ever referenced (left by a publish killed before its commit).
    """
    delta = DeltaTable(path)
    runs = _runs(delta)
    before = _dates(path, runs)
    kept = set(_newest_dates(path, runs, keep))
    delta.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True,
                 keep_versions=[c["version"] for c in runs if c["run_date"] in kept and _readable(path, c)])
    removed = tuple(sorted(set(before) - set(_dates(path, runs))))
    if removed:
        log.info("publish: retention %d removed the data files of %s", keep, ", ".join(removed))
    return removed


def _newest_dates(path: Path, runs: list[dict], keep: int) -> list[str]:
    """The run dates of the ``keep`` most recently published readable runs, by commit version."""
    dates: list[str] = []
    for run in reversed(runs):  # _runs is in version order
        if run["run_date"] not in dates and not run["restore"] and _readable(path, run):
            dates.append(run["run_date"])
    return dates[:keep]


def _open(path: Path) -> DeltaTable | None:
    return DeltaTable(path) if DeltaTable.is_deltatable(str(path)) else None


def _runs(delta: DeltaTable | None) -> list[dict]:
    """The commits that record a run (publishes and restores), oldest first, with their run metadata."""
    runs = [{**{k: info[k] for k in RUN_KEYS}, "version": info["version"], "timestamp": info["timestamp"],
             "restore": "restored_version" in info}
            for info in (delta.history() if delta else []) if all(k in info for k in RUN_KEYS)]
    for run in runs:
        run["metrics"], run["rows"], run["files"] = json.loads(run["metrics"]), int(run["rows"]), json.loads(run["files"])
    return sorted(runs, key=lambda run: run["version"])


def _readable(path: Path, run: dict) -> bool:
    """Whether the data files of a run's commit are all still there (a local lake).

    The commit records them, which is much cheaper than loading the table at each version.
    """
    return all((path / name).exists() for name in run["files"])


def _dates(path: Path, runs: list[dict]) -> list[str]:
    return sorted({c["run_date"] for c in runs if _readable(path, c)})


def _commit_info(run: dict) -> dict[str, str]:
    """The run as string-valued ``commitInfo`` fields; metrics as JSON with NaN and None as null."""
    return {"run_id": run["run_id"], "run_date": run["run_date"], "model": run["model"], "metric": run["metric"],
            "metrics": json.dumps({k: _finite(v) for k, v in run["metrics"].items()}, sort_keys=True),
            "rows": str(run["rows"]), "files": json.dumps(run["files"])}


def _pointer(lake: Lake, table: str, run: dict, version: int) -> dict:
    """The pointer after ``table`` got ``run``: the other tables' entries are kept as they were."""
    tables = dict((read_pointer(lake) or {}).get("tables") or {})
    tables[table] = {"path": table, "model": run["model"], "rows": run["rows"], "metrics": run["metrics"],
                     "delta_version": version, "run_date": run["run_date"], "run_id": run["run_id"]}
    return {"run_date": run["run_date"], "run_id": run["run_id"],
            "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "tables": tables}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
