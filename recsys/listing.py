"""Finding an ingest's raw files: every file under the input, and every path left out with its reason.

Nothing under the input is passed over silently. A hidden name (starting with ``.`` or ``_``: editors'
and copy tools' temporary files, Hadoop's ``_SUCCESS``), a symbolic link to a folder (not followed: it
may loop or lead out of the input), a folder that cannot be listed, something that is not a regular
file (reading a FIFO would block the ingest), and a file that cannot be stat'ed or hashed (unreadable,
or gone since the folder was listed) each come back as a ``Skipped`` path with its reason, which
ingest counts, logs and names in ``IngestResult.skipped_paths``. A skipped path writes nothing to the
lake, so it is looked at again at the next ingest.

Hashing every file under the input every night would read the whole input folder: a file whose path,
size and modification time match a read the manifest records (``known``) takes its SHA-256 from there
and is not opened. A file rewritten in place with the same size and the same nanosecond modification
time would be missed; ``recsys ingest --reingest PATH`` reads any file again.

A listed file records its size and modification time; ``changed_since_listed`` tells whether it
changed or vanished while it was read, so that ingest does not commit a file caught mid-copy.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from recsys.raw_files import detect_format


@dataclass(frozen=True)
class RawFile:
    path: Path
    size: int
    sha256: str
    format: str
    mtime_ns: int = 0  # when listed; with size, what tells a file that changed during the read


@dataclass(frozen=True)
class Skipped:
    """A path under the input that was not read, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


Known = dict[tuple[str, int, int], str]  # (resolved path, size, mtime_ns) -> the SHA-256 the manifest recorded


def list_raw_files(input_path: Path, default_format: str, known: Known | None = None) -> tuple[list[RawFile], list[Skipped]]:
    """The raw files under ``input_path`` (a file or a folder, searched recursively), and the paths left out.
    A file whose (path, size, mtime) is in ``known`` is not hashed: its SHA-256 is taken from there."""
    if input_path.is_file():
        candidates, skipped = [input_path], []
    elif input_path.is_dir():
        candidates, skipped = _walk(input_path)
    else:
        raise FileNotFoundError(f"ingest input not found: {input_path}")
    files = []
    for path in candidates:
        try:
            files.append(_raw_file(path, default_format, known or {}))
        except OSError as exc:
            skipped.append(Skipped(str(path), f"cannot be read: {_os_error(exc)}"))
    return files, sorted(skipped, key=lambda s: s.path)


def _walk(root: Path) -> tuple[list[Path], list[Skipped]]:
    files: list[Path] = []
    skipped: list[Skipped] = []
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skipped(str(folder), f"folder cannot be listed: {_os_error(exc)}"))
            continue
        for entry in entries:
            reason = _left_out(entry)
            if reason:
                skipped.append(Skipped(entry.path, reason))
            elif entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))
            else:
                files.append(Path(entry.path))
    return sorted(files), skipped


def _left_out(entry: os.DirEntry) -> str | None:
    """Why a folder entry is not read (None: it is read, or searched when a folder)."""
    if entry.name.startswith((".", "_")):
        return "hidden name (starts with '.' or '_'): not read"
    if entry.is_symlink() and entry.is_dir():
        return "symbolic link to a folder: not followed"
    if entry.is_dir(follow_symlinks=False) or entry.is_file():  # a link to a file is read
        return None
    if entry.is_symlink():
        return "broken symbolic link"
    return "not a regular file (a FIFO, socket or device): not read"


def _raw_file(path: Path, default_format: str, known: Known) -> RawFile:
    listed, resolved = path.stat(), path.resolve()
    sha256 = known.get((str(resolved), listed.st_size, listed.st_mtime_ns)) or _sha256(path)
    return RawFile(resolved, listed.st_size, sha256, detect_format(path, default_format), listed.st_mtime_ns)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _os_error(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def changed_since_listed(raw: RawFile) -> str | None:
    """Why the file is no longer the one listed (None: same size and modification time)."""
    try:
        now = raw.path.stat()
    except OSError as exc:
        return f"vanished during the read: {_os_error(exc)}"
    if (now.st_size, now.st_mtime_ns) != (raw.size, raw.mtime_ns):
        return f"changed during the read: {raw.size} -> {now.st_size} bytes"
    return None
