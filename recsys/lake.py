"""The lake layout in one place, and the small I/O helpers every stage writes through.

``Lake`` knows where each table lives (see DESIGN.md, "Lake layout"); no other module builds a lake
path by hand. Writes go to a temporary name and are renamed into place, so a reader never sees half
a file. Every temporary name is hidden and ends in ``.tmp``, ``.staging``, ``.old`` or ``.removed``,
so what a killed run leaves behind is recognisable, and ``remove_leftovers`` deletes it at the start
of the next run, except an ``.old`` copy with nothing at its own name (a ``replace_dir`` killed between
its two renames), which it renames back: a replaced folder is always its old or its new copy.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

PAIRS_FILE = "pairs.parquet"  # the holdout and validation pairs inside their folders
LEFTOVER = re.compile(r"^\..+\.[0-9a-f]{8,32}\.(tmp|staging|old|removed)$")


@dataclass(frozen=True)
class RunPaths:
    """Folders and files of one run under ``runs/<run_id>/``."""

    root: Path

    @property
    def graph(self) -> Path:
        return self.root / "graph"

    @property
    def walks(self) -> Path:
        return self.root / "walks"

    @property
    def validation(self) -> Path:
        return self.root / "validation"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model(self, name: str) -> Path:
        return self.models / name

    @property
    def holdout(self) -> Path:
        return self.root / "holdout"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.parquet"

    @property
    def user_metrics(self) -> Path:
        return self.root / "user_metrics.parquet"

    @property
    def next_item_metrics(self) -> Path:
        return self.root / "next_item_metrics.parquet"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def stage_seconds(self) -> Path:
        """Wall seconds of each stage of the run (JSON), as the report's "Stages" section shows them."""
        return self.root / "stage_seconds.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"


@dataclass(frozen=True)
class Lake:
    root: Path

    @property
    def events(self) -> Path:
        return self.root / "events"

    def event_day(self, day) -> Path:
        """The partition of one event date (``datetime.date`` or ISO string)."""
        return self.events / f"event_date={day}"

    @property
    def items(self) -> Path:
        return self.root / "items"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def quarantine_day(self, day) -> Path:
        """The quarantine partition of one ingest date (``datetime.date`` or ISO string)."""
        return self.quarantine / f"ingest_date={day}"

    @property
    def manifest(self) -> Path:
        return self.root / "_manifest"

    def run(self, run_id: str) -> RunPaths:
        return RunPaths(self.root / "runs" / run_id)

    @property
    def recommendations(self) -> Path:
        return self.root / "recommendations"

    def published(self, table: str) -> Path:
        return self.recommendations / table

    @property
    def latest_pointer(self) -> Path:
        return self.recommendations / "_LATEST"

    @property
    def latest_json(self) -> Path:
        """The pointer under a name Hadoop-based readers see (they skip names starting with ``_``)."""
        return self.recommendations / "LATEST.json"

    @property
    def run_lock(self) -> Path:
        return self.root / "_RUN_LOCK"


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Run ``write`` on a temporary sibling of ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, "tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    return _atomic(path, lambda tmp: pq.write_table(table, tmp))


def write_json_atomic(payload: dict[str, Any], path: Path) -> Path:
    return _atomic(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"))


def write_text_atomic(text: str, path: Path) -> Path:
    return _atomic(path, lambda tmp: tmp.write_text(text))


def temporary_sibling(path: Path, kind: str) -> Path:
    """A hidden name beside ``path`` for work in progress; ``kind`` is tmp, staging, old or removed."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.{kind}")


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder ``src`` to ``dst``, replacing an older ``dst`` if there is one."""
    if dst.exists():
        trash = temporary_sibling(dst, "old")
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def remove_dir(folder: Path) -> None:
    """Take ``folder`` out of readers' sight in one rename, then delete it."""
    trash = temporary_sibling(folder, "removed")
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_leftovers(root: Path) -> list[Path]:
    """Delete the temporary files and folders a killed run left anywhere under ``root``.

    A run killed between the two renames of ``replace_dir`` leaves the old copy under its ``.old`` name
    and nothing at its own: that copy is renamed back instead (the new one, never moved in, is deleted).
    """
    found = [p for p in root.rglob(".*") if LEFTOVER.match(p.name)] if root.exists() else []
    found = [p for p in found if not _restored(p)]
    for path in sorted(found, key=lambda p: len(p.parts)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if found:
        log.info("removed %d leftover(s) of an interrupted run under %s", len(found), root)
    return found


def _restored(leftover: Path) -> bool:
    """Rename an ``.old`` copy back to its name when nothing is there (a replace killed halfway)."""
    match = LEFTOVER.match(leftover.name)
    if match.group(1) != "old" or not leftover.exists():
        return False
    original = leftover.with_name(leftover.name[1:].rsplit(".", 2)[0])
    if original.exists() or original.is_symlink():
        return False
    os.replace(leftover, original)
    log.warning("restored %s from %s: the run that was replacing it was killed halfway", original, leftover.name)
    return True


def read_parquet_dir(path: Path) -> pa.Table:
    """Read every visible Parquet file under ``path`` (Spark's and ours), skipping hidden temp files."""
    return pq.read_table(path, partitioning="hive", ignore_prefixes=[".", "_"])


def read_walks(path: Path) -> pa.ChunkedArray:
    """The walks stage's output: one ``list<int32>`` of node indices per walk, in walk-id order."""
    return read_parquet_dir(path).column("walk")
