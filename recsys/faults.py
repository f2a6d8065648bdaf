"""Named pause points where the crash-safety tests kill a run (a failpoint, as in TiKV's ``fail-rs``).

``pause_point("walks")`` does nothing unless the environment variable ``RECSYS_PAUSE_AT`` names that
point: then it writes this process's pid to the file named by ``RECSYS_PAUSE_SIGNAL`` and sleeps,
so a test can SIGKILL the run at a known moment (walks written but not yet moved into place, one
model saved and the next not, a published version staged but ``_LATEST`` not yet switched).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

POINTS = ("walks", "train", "publish")


def pause_point(name: str) -> None:
    if os.environ.get("RECSYS_PAUSE_AT") != name:
        return
    signal = os.environ.get("RECSYS_PAUSE_SIGNAL")
    if signal:
        Path(signal).write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("RECSYS_PAUSE_SECONDS", "600")))
