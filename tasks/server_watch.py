"""The temporary Prefect server ends with the ``recsys run`` that started it, however that run ends.

Prefect starts its temporary ("ephemeral") API server as a child process
(``prefect.server.api.server.SubprocessASGIServer``) and stops it at exit; a run killed by SIGKILL
never gets there, and the server lived on. ``start_temporary_server`` starts that server up front
and beside it a watchdog: a small process in a session of its own that reads a pipe from the run.
Whatever ends the run, the kernel closes the pipe, the watchdog reads end-of-file and stops the server
(SIGTERM, then SIGKILL). The server is named by pid and start time, so a reused pid is never killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_GRACE_S = 10.0  # how long the server may take to stop on SIGTERM before it gets SIGKILL


_WATCHDOGS: list[subprocess.Popen] = []  # referenced until this process ends: their pipes must stay open


def start_temporary_server() -> None:
    """Start Prefect's temporary server and its watchdog; nothing when a real server is configured.

    Prefect stops the server at exit, as before; the watchdog stops it when no exit handler runs.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    server = SubprocessASGIServer()  # the instance Prefect's client uses when no API URL is set
    server.start()
    pid = server.server_process.pid
    _WATCHDOGS.append(subprocess.Popen([sys.executable, "-m", "tasks.server_watch", str(pid), process_started(pid) or ""],
                                       stdin=subprocess.PIPE, start_new_session=True,
                                       cwd=Path(__file__).resolve().parent.parent))


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def process_started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None where that is unknown: with the pid
    it names one process, since a reused pid has another start time."""
    fields = _stat(pid)
    return fields[19] if fields else None  # field 22 of stat: start time in clock ticks since boot


def _running(pid: int, started: str) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[19] == started and fields[0] != "Z"


def stop(pid: int, started: str) -> None:
    """Stop process ``pid`` if it is still the one that started at ``started``: SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _running(pid, started):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + STOP_GRACE_S
        while _running(pid, started) and time.monotonic() < deadline:
            time.sleep(0.1)


def _watch(pid: int, started: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of the run must not end the watchdog first
    sys.stdin.buffer.read()  # returns at end-of-file: the run's process has ended
    stop(pid, started)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), sys.argv[2])
