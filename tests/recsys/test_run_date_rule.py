"""The default run date is the last complete event day (issue 13, item 5a): a newest day that holds a
fraction of a normal day's events is not the test day, while a log ending on a whole day keeps it."""

from __future__ import annotations

import datetime as dt
import gzip
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.config import WindowConfig
from recsys.lake import Lake
from recsys.timewindow import InsufficientData, resolve_window
from tests.conftest import DATASETS, SAMPLE, dataset


def _lake(root: Path, events_per_day: dict[str, int]) -> Lake:
    """Event partitions holding the given number of rows (split over two files, as batches leave them)."""
    for day, count in events_per_day.items():
        folder = root / "events" / f"event_date={day}"
        folder.mkdir(parents=True)
        half = count // 2
        for part, rows in enumerate((half, count - half)):
            pq.write_table(pa.table({"item_id": ["i"] * rows}), folder / f"part-{part}.parquet")
    return Lake(root)


def test_a_partial_newest_day_is_not_the_run_date_unless_asked(tmp_path):
    lake = _lake(tmp_path, {"2024-05-01": 1000, "2024-05-02": 1200, "2024-05-03": 900, "2024-05-04": 9})
    window = resolve_window(WindowConfig(), lake)
    assert window.run_date == dt.date(2024, 5, 3) and window.test_from == dt.date(2024, 5, 3)
    assert window.train_from == dt.date(2024, 5, 1) and window.train_until == dt.date(2024, 5, 2)
    assert "2024-05-04 holds 9 events" in window.note and "partial" in window.note
    newest = resolve_window(WindowConfig(run_date_rule="last_day"), lake)
    assert newest.run_date == dt.date(2024, 5, 4) and newest.note == ""
    assert resolve_window(WindowConfig(run_date=dt.date(2024, 5, 4)), lake).run_date == dt.date(2024, 5, 4)


def test_a_whole_newest_day_stays_the_run_date_and_the_share_is_configurable(tmp_path):
    lake = _lake(tmp_path, {"2024-05-01": 1000, "2024-05-02": 1000, "2024-05-03": 1000, "2024-05-04": 600})
    assert resolve_window(WindowConfig(), lake).run_date == dt.date(2024, 5, 4)  # 600 >= 0.5 x 1000
    assert resolve_window(WindowConfig(complete_day_share=0.8), lake).run_date == dt.date(2024, 5, 3)


def test_no_events_or_no_training_day_is_insufficient_data(tmp_path):
    with pytest.raises(InsufficientData, match="no events"):
        resolve_window(WindowConfig(), Lake(tmp_path / "empty"))
    with pytest.raises(InsufficientData, match="no training days"):
        resolve_window(WindowConfig(), _lake(tmp_path / "one", {"2024-05-01": 10}))


def _day_counts(path: Path, day_of_line) -> dict[str, int]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        next(handle)
        return dict(Counter(day_of_line(line) for line in handle if line.strip()))


def test_the_samples_run_date_stays_its_last_day(tmp_path):
    counts = _day_counts(SAMPLE / "events.csv.gz", lambda line: line[:10])
    assert max(counts) == "2024-03-14"
    assert resolve_window(WindowConfig(), _lake(tmp_path, counts)).run_date == dt.date(2024, 3, 14)


def test_the_click_logs_few_events_after_midnight_are_not_the_test_day(tmp_path):
    """The issue's click log (YooChoose test file): 13,559 clicks on 2014-04-07, then 9 on 2014-04-08."""
    path = dataset(DATASETS / "yoochoose" / "yoochoose-clicks-100k_test.txt")

    def utc_day(line: str) -> str:
        return str(dt.datetime.fromtimestamp(float(line.split("\t")[2]), dt.timezone.utc).date())

    counts = _day_counts(path, utc_day)
    assert counts["2014-04-08"] == 9
    window = resolve_window(WindowConfig(train_days=1), _lake(tmp_path, {"2014-04-06": 13000, **counts}))
    assert window.run_date == dt.date(2014, 4, 7)
