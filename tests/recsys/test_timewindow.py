"""Run window from the lake's event days."""

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.config import WindowConfig
from recsys.lake import Lake
from recsys.timewindow import resolve_window


def _lake(tmp_path, days):
    """One real Parquet file of one event per day (the run-date rule reads the files' row counts)."""
    for day in days:
        folder = tmp_path / "events" / f"event_date={day}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"item_id": ["i1"]}), folder / "part-0.parquet")
    return Lake(tmp_path)


def test_latest_day_is_the_run_date_and_window_starts_at_first_present_day(tmp_path):
    lake = _lake(tmp_path, ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"])
    window = resolve_window(WindowConfig(train_days=30, test_days=2), lake)
    assert (window.train_from, window.train_until, window.test_from, window.run_date) == (
        dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3), dt.date(2024, 3, 4))


def test_configured_run_date_and_short_training_window(tmp_path):
    lake = _lake(tmp_path, [f"2024-03-{d:02d}" for d in range(1, 11)])
    window = resolve_window(WindowConfig(run_date=dt.date(2024, 3, 8), train_days=3, test_days=1), lake)
    assert (window.train_from, window.test_from) == (dt.date(2024, 3, 5), dt.date(2024, 3, 8))


def test_no_events_or_no_training_days_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no events"):
        resolve_window(WindowConfig(), Lake(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no training days"):
        resolve_window(WindowConfig(test_days=1), _lake(tmp_path, ["2024-03-01"]))
