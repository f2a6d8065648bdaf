"""Run-level operations that are not stages: the final state and exit code of a nightly run, and the
CLI's ``recsys latest`` and ``recsys rollback``.

A run's outcome (docs/operations.md, "What a run ends in"):

| outcome | Prefect state | ``recsys run`` exit |
|---|---|---|
| every table the run serves is published | ``Completed`` | 0 |
| a table's champion was refused by the gate, none lacked data | ``Completed`` named ``PartlyPublished`` or ``NotPublished`` | 0 |
| a table's holdout is below ``evaluate.min_positives`` / ``min_users`` | ``Completed`` named ``PartlyPublished`` or ``NotPublished`` | 4 |
| the lake has no events or no training day for the window | ``Failed`` | 4 |
| the input batch is all or mostly quarantined (``IngestRejected``) | ``Failed`` | 3 |
| a bad configuration | none starts | 2 |
| a top-N or K above the number of items in the run's graph (``CatalogueTooSmall``) | ``Failed``, before training | 2 |
| another live run holds the lake lock (``recsys run``, ``ingest``, ``rollback``) | none starts | 5 |
| any other error | ``Failed`` | 1 |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.states import Completed, State

from recsys.config import CatalogueTooSmall
from recsys.ingest import IngestRejected
from recsys.lake import Lake
from recsys.publish import PublishResult, SCHEMAS, latest_file, published_dates, rollback, run_outcome
from recsys.timewindow import InsufficientData
from tasks.lock import LakeLock

EXIT_OK, EXIT_ERROR, EXIT_BAD_CONFIG, EXIT_INPUT_REJECTED, EXIT_DATA_SHORT, EXIT_LAKE_BUSY = 0, 1, 2, 3, 4, 5


def final_state(result: Any, *published: PublishResult | None) -> Any:
    """What the nightly flow returns: ``result`` itself when every table it serves was published (state
    ``Completed``), else ``result`` inside a ``Completed`` state named ``NotPublished`` (no table got a
    commit) or ``PartlyPublished``, whose message says why each table got none."""
    outcome = run_outcome(list(published))
    if outcome.state == "Completed":
        return result
    return Completed(name=outcome.state, message=outcome.message, data=result)


def exit_code(state: State) -> tuple[int, str]:
    """The ``recsys run`` exit status of a finished flow run's state, and a line saying why (see the table above)."""
    if state.is_completed():
        result = state.result()
        outcome = run_outcome([result.publish, result.publish_users])
        return (EXIT_DATA_SHORT if outcome.data_short else EXIT_OK), outcome.message
    try:
        state.result()
    except IngestRejected as exc:
        return EXIT_INPUT_REJECTED, str(exc)
    except InsufficientData as exc:
        return EXIT_DATA_SHORT, str(exc)
    except CatalogueTooSmall as exc:
        return EXIT_BAD_CONFIG, str(exc)
    except Exception as exc:  # noqa: BLE001 - any other failure is the run's error, shown as such
        return EXIT_ERROR, f"{type(exc).__name__}: {exc}"
    return EXIT_ERROR, f"the run ended in state {state.name}: {state.message}"


def rollback_latest(lake_root: Path, run_date: str, table: str | None = None) -> dict[str, dict]:
    """Under the run lock, restore each published table (or only ``table``) that has a commit of ``run_date``
    to it, and point ``LATEST.json`` (and ``_LATEST``) at it; returns the new pointer per table restored."""
    lake = Lake(lake_root)
    with LakeLock(lake_root):
        tables = [table] if table else [t for t in SCHEMAS if run_date in published_dates(lake, t)]
        if not tables:
            found = {t: published_dates(lake, t) for t in SCHEMAS}
            raise FileNotFoundError(f"no published table has a commit for {run_date} (have: {found})")
        return {t: rollback(lake, run_date, t) for t in tables}


def latest_pointer(lake_root: Path) -> Path:
    """The pointer of the published tables: ``LATEST.json``, or the legacy ``_LATEST`` of a lake published
    before it existed (either may not exist yet)."""
    lake = Lake(Path(lake_root).resolve())
    current = latest_file(lake)
    return current if current.exists() or not lake.latest_pointer.exists() else lake.latest_pointer
