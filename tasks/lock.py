"""One run at a time per lake: the run lock, held for a whole flow (an orchestration concern, so it lives here)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
from pathlib import Path

from recsys.lake import Lake, remove_leftovers, temporary_sibling

log = logging.getLogger("recsys.lock")


class LakeBusyError(RuntimeError):
    pass


class LakeLock:
    """One run at a time per lake: ``_RUN_LOCK`` holds the owner's host and pid.

    A lock whose process is gone (a killed run on this host) is taken over; one held by a live
    process, or by another host, makes the new run fail with a message naming the owner.
    """

    def __init__(self, root: Path):
        self.path = Lake(Path(root)).run_lock
        self.owner = {"host": socket.gethostname(), "pid": os.getpid()}

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

    def _take_over_if_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        if holder.get("host") == self.owner["host"] and not _alive(int(holder.get("pid", -1))):
            log.warning("lake lock %s was held by pid %s, which is gone (a killed run): taking it over",
                        self.path, holder.get("pid"))
            self.path.unlink(missing_ok=True)
            return
        raise LakeBusyError(f"another run holds the lake lock {self.path}: {holder}. Wait for it to finish; "
                            "if that run is dead on another host, delete the lock file")

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


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
