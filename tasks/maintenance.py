"""Operations on a lake outside a nightly run (the CLI's ``recsys latest`` and ``recsys rollback``)."""

from __future__ import annotations

from pathlib import Path

from recsys.lake import Lake
from recsys.publish import rollback
from tasks.lock import LakeLock


def rollback_latest(lake_root: Path, run_date: str) -> dict:
    """Under the run lock, restore the published table to the commit of ``run_date`` (and point ``_LATEST`` at it)."""
    with LakeLock(lake_root):
        return rollback(Lake(lake_root), run_date)


def latest_pointer(lake_root: Path) -> Path:
    """The ``_LATEST`` file of the published tables (it may not exist yet)."""
    return Lake(Path(lake_root).resolve()).latest_pointer
