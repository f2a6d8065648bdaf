"""The run's time window: which event days train the models and which are held out.

The run date is the configured one, or else the latest event day in the lake. The test days are the
last ``test_days`` days up to the run date; the training days are the ``train_days`` before them
(starting at the first of those days that has events).
Events outside the window (older days, stray rows) never reach training, so a stray timestamp
cannot stretch it. Event days are UTC dates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from recsys.config import WindowConfig
from recsys.lake import Lake


@dataclass(frozen=True)
class TimeWindow:
    train_from: dt.date
    test_from: dt.date
    run_date: dt.date

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


def resolve_window(config: WindowConfig, lake: Lake) -> TimeWindow:
    days = event_days(lake)
    if not days:
        raise ValueError(f"no events in the lake at {lake.events}; run ingest first")
    run_date = config.run_date or days[-1]
    test_from = run_date - dt.timedelta(days=config.test_days - 1)
    train_from = test_from - dt.timedelta(days=config.train_days)
    train_days = [d for d in days if train_from <= d < test_from]
    if not train_days:
        raise ValueError(f"no training days in the lake between {train_from} and {test_from - dt.timedelta(days=1)} "
                         f"(event days present: {days[0]}..{days[-1]})")
    # report the days that are really there, not the empty start of a long window
    return TimeWindow(train_from=train_days[0], test_from=test_from, run_date=run_date)
