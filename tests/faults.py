"""Pause points for the crash tests, installed from outside the production code (a failpoint, as in
TiKV's ``fail-rs``, but by wrapping functions in the test's own process).

``run_cli_with_pause()`` is what a crash test starts as a subprocess: when ``RECSYS_PAUSE_AT`` names a
point, the function there is wrapped so that, at that moment, the process writes its pid to the file
named by ``RECSYS_PAUSE_SIGNAL`` and waits to be killed:

- ``walks``: the walks are written to their staging folder but not yet moved into place;
- ``train``: the first model is saved, the next not yet trained;
- ``publish``: the table's data file is written, the Delta commit not yet made;
- ``lock``: the flow runs (Prefect's temporary server is up) and holds the lake lock; no stage has started.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from pathlib import Path


def _pause() -> None:
    Path(os.environ["RECSYS_PAUSE_SIGNAL"]).write_text(str(os.getpid()))
    threading.Event().wait()  # until the test kills this process


def _before(module, name: str) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    def paused(*args, **kwargs):
        _pause()
        return original(*args, **kwargs)

    setattr(module, name, paused)


def _after(module, name: str) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    def paused(*args, **kwargs):
        result = original(*args, **kwargs)
        _pause()
        return result

    setattr(module, name, paused)


def install(point: str) -> None:
    import recsys.publish
    import recsys.train
    import recsys.walks
    import tasks.lock

    {"walks": lambda: _before(recsys.walks, "replace_dir"),
     "train": lambda: _after(recsys.train, "save_model"),
     "publish": lambda: _before(recsys.publish, "_commit"),
     "lock": lambda: _before(tasks.lock, "remove_leftovers")}[point]()


def run_cli_with_pause(argv: list[str]) -> int:
    if os.environ.get("RECSYS_PAUSE_AT"):
        install(os.environ["RECSYS_PAUSE_AT"])
    from flows.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(run_cli_with_pause(sys.argv[1:]))
