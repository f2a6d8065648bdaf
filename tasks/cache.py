"""Stage caching: a stage is skipped (Prefect state "Cached") when what it reads is unchanged.

Each stage declares what it reads: the settings it uses and the files and folders it opens. The
key digests those, the project's source code and the names, sizes and modification times of the
files, so a setting a stage does not read never invalidates it (a walk setting does not recompute
the graph). A cached stage's result still names the folder where it was computed, which may be an
earlier run's (``tasks.stages.CachedStage`` computes it again if that folder is gone). Results are
kept as JSON (never pickle) in Prefect's result storage.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

CODE_ROOTS = tuple(Path(__file__).resolve().parent.parent / name for name in ("recsys", "tasks"))

Reads = Callable[[dict[str, Any]], tuple[dict[str, Any], list[Path]]]


def stage_key(stage: str, reads: Reads):
    """A Prefect ``cache_key_fn`` from a stage's ``reads(inputs) -> (settings, paths)``; None when the
    run plan says ``cache: false``."""

    def key(context, inputs: dict[str, Any]) -> str | None:
        if not inputs["plan"].cache:
            return None
        settings, paths = reads(inputs)
        digest = hashlib.sha256()
        for part in (stage, code_digest(), json.dumps(_plain(settings), sort_keys=True, default=str)):
            digest.update(part.encode() + b"\0")
        for path in paths:
            digest.update(files_fingerprint(Path(path)).encode())
        return f"{stage}-{digest.hexdigest()[:32]}"

    return key


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of the library's and the tasks' source: a code change invalidates every cached stage."""
    digest = hashlib.sha256()
    for root in CODE_ROOTS:
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def files_fingerprint(path: Path) -> str:
    if path.is_file():
        stat = path.stat()
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns};"
    if not path.is_dir():
        return f"{path}:absent;"
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return "".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns};" for p in files)
