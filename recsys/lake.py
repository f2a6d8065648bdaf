"""The lake layout in one place, and the small I/O helpers every stage writes through.

``Lake`` knows where each table lives (see DESIGN.md, "Lake layout"); no other module builds a lake
path by hand. Writes go to a temporary name and are renamed into place, so a reader never sees half
a file.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq


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
    def corpus(self) -> Path:
        return self.root / "walks_corpus.txt"

    def model(self, name: str) -> Path:
        return self.root / "models" / name

    @property
    def holdout(self) -> Path:
        return self.root / "holdout"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.parquet"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"


@dataclass(frozen=True)
class Lake:
    root: Path

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def items(self) -> Path:
        return self.root / "items"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

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

    def published_version(self, table: str, run_date: str) -> Path:
        return self.published(table) / f"run_date={run_date}"

    @property
    def latest_pointer(self) -> Path:
        return self.recommendations / "_LATEST"


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Run ``write`` on a temporary sibling of ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
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


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder ``src`` to ``dst``, replacing an older ``dst`` if there is one."""
    if dst.exists():
        trash = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.old")
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def read_parquet_dir(path: Path) -> pa.Table:
    """Read every visible Parquet file under ``path`` (Spark's and ours), skipping hidden temp files."""
    return pq.read_table(path, partitioning="hive", ignore_prefixes=[".", "_"])


def read_walks(path: Path) -> pa.ChunkedArray:
    """The walks stage's output: one ``list<int32>`` of node indices per walk, in walk-id order."""
    return read_parquet_dir(path).column("walk")
