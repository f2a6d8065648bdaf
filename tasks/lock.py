"""One run at a time per lake: the run lock, held for a whole flow (an orchestration concern, so it lives here)."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
from pathlib import Path

from recsys.lake import Lake, remove_leftovers, temporary_sibling
from tasks.server_watch import process_started

log = logging.getLogger("recsys.lock")


class LakeBusyError(RuntimeError):
    pass


class LakeLock:
    """One run at a time per lake: ``_RUN_LOCK`` holds the owner's host, pid and process start time.

    A lock whose process is gone (a killed run on this host, or a pid since reused by another process)
    is taken over; one held by a live process, or by another host, makes the new run fail with a message
    naming the owner. Taking over is atomic: under an exclusive ``flock`` of ``_RUN_LOCK.guard`` (released
    by the kernel if its holder dies), the stale lock is renamed to a unique name and only then deleted, so
    two runs taking over at once cannot both end up holding the lock.
    """

    def __init__(self, root: Path):
        self.path = Lake(Path(root)).run_lock
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": process_started(os.getpid())}

    def __enter__(self) -> "LakeLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        claim = temporary_sibling(self.path, "tmp")
        claim.write_text(json.dumps({**self.owner, "since": dt.datetime.now(dt.timezone.utc).isoformat()}))
        try:
            while True:
                try:
                    os.link(claim, self.path)  # creates the lock, contents and all, only if there is none
                    return self
                except FileExistsError:
                    self._take_over_if_stale()
        finally:
            claim.unlink(missing_ok=True)

    def holder(self) -> dict | None:
        """The live run holding the lock, or None when it is free or its holder is gone."""
        try:
            holder = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return None if self._stale(holder) else holder

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") != self.owner["host"]:
            return False  # another host's process cannot be checked from here
        pid = int(holder.get("pid", -1))
        if not _alive(pid):
            return True
        started = holder.get("started")
        return started is not None and process_started(pid) not in (None, started)  # the pid was reused

    def _take_over_if_stale(self) -> None:
        with _guard(self.path):
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                return
            holder = json.loads(text) if text.strip() else {"host": self.owner["host"], "pid": -1}
            if not self._stale(holder):
                raise LakeBusyError(f"another run holds the lake lock {self.path}: {holder}. Wait for it to finish; "
                                    "if that run is dead on another host, delete the lock file")
            log.warning("lake lock %s was held by pid %s, which is gone (a killed run): taking it over",
                        self.path, holder.get("pid"))
            stale = temporary_sibling(self.path, "removed")
            os.rename(self.path, stale)
            stale.unlink()

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def _guard(lock: Path):
    """An exclusive ``flock`` beside the lock, for the read-check-remove of a stale lock."""
    with open(lock.with_name(lock.name + ".guard"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def exclusive_lake(root: Path):
    """Hold the lake's run lock for a whole run, after removing what an interrupted run left behind."""
    with LakeLock(root):
        remove_leftovers(root)
        yield
