"""What the Prefect UI shows of a run besides task states: the library's log lines and progress bars.

``library_logs_to_prefect`` sends the ``recsys`` loggers' records to the run's logs (Prefect's API
log handler, while a flow runs); ``Progress`` is a progress artifact a long stage updates (walks,
each model's training epochs).
"""

from __future__ import annotations

import contextlib
import logging

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_LOGGING_EXTRA_LOGGERS

LIBRARY = "recsys"


@contextlib.contextmanager
def library_logs_to_prefect():
    """Forward the library's INFO and above to the flow run's logs, unless Prefect's
    ``PREFECT_LOGGING_EXTRA_LOGGERS`` already does."""
    library = logging.getLogger(LIBRARY)
    if library.getEffectiveLevel() > logging.INFO:  # Prefect's extra loggers keep the root's WARNING
        library.setLevel(logging.INFO)
    if LIBRARY in (PREFECT_LOGGING_EXTRA_LOGGERS.value() or []):
        yield
        return
    handler = APILogHandler(level=logging.INFO)
    library.addHandler(handler)
    try:
        yield
    finally:
        library.removeHandler(handler)


class Progress:
    """One progress artifact (0-100 %) with a description, updated as work is done."""

    def __init__(self, key: str, description: str):
        self.description, self.log = description, get_run_logger()  # the walks' progress comes from another thread
        self.artifact = create_progress_artifact(progress=0.0, key=key, description=description)
        self.last = 0.0

    def __call__(self, fraction: float, detail: str = "") -> None:
        percent = round(100.0 * min(max(fraction, 0.0), 1.0), 1)
        if percent == self.last:
            return
        if int(percent // 25) > int(self.last // 25):  # a log line at each quarter, for the CLI and the run logs
            self.log.info("%s: %d%%%s", self.description, percent, f" ({detail})" if detail else "")
        self.last = percent
        try:
            update_progress_artifact(self.artifact, percent, description=f"{self.description}{': ' + detail if detail else ''}")
        except Exception as exc:  # a progress bar is never worth failing a stage for
            self.log.debug("progress artifact not updated: %s", exc)
