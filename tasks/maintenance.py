"""Operations on a lake outside a nightly run (the CLI's ``recsys latest`` and ``recsys rollback``)."""

from __future__ import annotations

from pathlib import Path

from recsys.lake import Lake
from recsys.publish import SCHEMAS, published_dates, rollback
from tasks.lock import LakeLock


def rollback_latest(lake_root: Path, run_date: str, table: str | None = None) -> dict[str, dict]:
    """Under the run lock, restore each published table (or only ``table``) that has a commit of ``run_date``
    to it, and point ``_LATEST`` at it; returns the new ``_LATEST`` per table restored."""
    lake = Lake(lake_root)
    with LakeLock(lake_root):
        tables = [table] if table else [t for t in SCHEMAS if run_date in published_dates(lake, t)]
        if not tables:
            found = {t: published_dates(lake, t) for t in SCHEMAS}
            raise FileNotFoundError(f"no published table has a commit for {run_date} (have: {found})")
        return {t: rollback(lake, run_date, t) for t in tables}


def latest_pointer(lake_root: Path) -> Path:
    """The ``_LATEST`` file of the published tables (it may not exist yet)."""
    return Lake(Path(lake_root).resolve()).latest_pointer
