"""The run's time window: which event days train the models and which are held out.

The run date is the configured one, or else picked from the lake's event days by
``window.run_date_rule``:

- ``last_complete_day`` (the default): the newest event day, unless it looks partial, and then the
  event day before it. Every day but the newest is complete (a later event exists). The newest one
  counts as complete when it holds at least ``window.complete_day_share`` (0.5) of the median events
  per day of the 7 event days before it: a log cut early in its last day (a few events after
  midnight) is not tested on those few events, while a log that ends with a whole day (the embedded
  sample, Taobao's head) keeps it.
- ``last_day``: the newest event day, whatever it holds.

The test days are the last ``test_days`` days up to the run date; the training days are the
``train_days`` before them (starting at the first of those days that has events). Events outside the
window (older days, stray rows, a partial newest day) never reach training, so a stray timestamp
cannot stretch it. Event days are UTC dates.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
from dataclasses import dataclass

import pyarrow.parquet as pq

from recsys.config import WindowConfig
from recsys.lake import Lake

log = logging.getLogger(__name__)

REFERENCE_DAYS = 7  # event days before the newest whose median size says what a whole day holds (a week: weekdays even out)


class InsufficientData(ValueError):
    """The lake cannot give a meaningful run (no events, no training day): a data problem, not a bug."""


@dataclass(frozen=True)
class TimeWindow:
    train_from: dt.date
    test_from: dt.date
    run_date: dt.date
    note: str = ""  # how the run date was chosen when the newest event day was left out

    @property
    def train_until(self) -> dt.date:
        return self.test_from - dt.timedelta(days=1)

    def describe(self) -> str:
        return (f"train {self.train_from}..{self.train_until}, test {self.test_from}..{self.run_date} "
                f"(UTC event days)")


def event_days(lake: Lake) -> list[dt.date]:
    """Days that have an ``events/event_date=...`` partition."""
    if not lake.events.exists():
        return []
    days = []
    for folder in lake.events.glob("event_date=*"):
        if folder.is_dir() and any(folder.glob("*.parquet")):
            days.append(dt.date.fromisoformat(folder.name.split("=", 1)[1]))
    return sorted(days)


def events_on(lake: Lake, day: dt.date) -> int:
    """Events of one day, from the Parquet footers (no data is read)."""
    return sum(pq.read_metadata(path).num_rows for path in lake.event_day(day).glob("*.parquet"))


def pick_run_date(config: WindowConfig, lake: Lake, days: list[dt.date]) -> tuple[dt.date, str]:
    """The run date (see the module docstring) and, when the newest event day was left out, why."""
    if config.run_date is not None:
        return config.run_date, ""
    newest = days[-1]
    if config.run_date_rule == "last_day" or len(days) < 2:
        return newest, ""
    reference = days[-1 - REFERENCE_DAYS:-1]
    typical = statistics.median(events_on(lake, day) for day in reference)
    last = events_on(lake, newest)
    if last >= config.complete_day_share * typical:
        return newest, ""
    note = (f"the newest event day {newest} holds {last} events, under {config.complete_day_share:g} x the median "
            f"{typical:g} of the {len(reference)} event days before it: taken as partial, so the run date is "
            f"{days[-2]} (window.run_date_rule=last_complete_day; last_day or window.run_date to choose otherwise)")
    log.warning("window: %s", note)
    return days[-2], note


def resolve_window(config: WindowConfig, lake: Lake) -> TimeWindow:
    days = event_days(lake)
    if not days:
        raise InsufficientData(f"no events in the lake at {lake.events}; run ingest first")
    run_date, note = pick_run_date(config, lake, days)
    test_from = run_date - dt.timedelta(days=config.test_days - 1)
    train_from = test_from - dt.timedelta(days=config.train_days)
    train_days = [d for d in days if train_from <= d < test_from]
    if not train_days:
        raise InsufficientData(f"no training days in the lake between {train_from} and {test_from - dt.timedelta(days=1)} "
                               f"(event days present: {days[0]}..{days[-1]})")
    # report the days that are really there, not the empty start of a long window
    return TimeWindow(train_from=train_days[0], test_from=test_from, run_date=run_date, note=note)
