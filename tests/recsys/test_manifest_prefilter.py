"""The nightly listing does not hash files the manifest already knows: a file whose path, size and
modification time match a recorded read takes its SHA-256 from the manifest (``recsys.listing``,
``recsys.manifest.known_files``); any change of size or time hashes it again."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

import recsys.listing as listing
from recsys.config import ColumnMapping, IngestConfig
from recsys.ingest import ingest, live_reads, read_manifest
from recsys.lake import Lake
from recsys.manifest import known_files

NOW = dt.datetime(2024, 3, 20, tzinfo=dt.timezone.utc)
MAPPING = ColumnMapping(user_id="user", item_id="item", event_time="ts", time_format="unix_s", event_type="action")


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """The files hashed while the test runs (the real hash still runs)."""
    calls: list[str] = []
    real = listing._sha256

    def counting(path: Path) -> str:
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(listing, "_sha256", counting)
    return calls


def _log(path: Path, minutes: range) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{1709287200 + 60 * m},u{m % 3},i{m % 5},view" for m in minutes]
    path.write_text("\n".join(["ts,user,item,action", *lines]) + "\n")
    return path


def test_a_known_path_size_and_time_is_not_hashed(tmp_path, hashed):
    a, b = _log(tmp_path / "in" / "a.csv", range(5)), _log(tmp_path / "in" / "b.csv", range(5, 9))
    first, _ = listing.list_raw_files(tmp_path / "in", "csv")
    assert sorted(hashed) == ["a.csv", "b.csv"]
    known = {(str(f.path), f.size, f.mtime_ns): f.sha256 for f in first if f.path.name == "a.csv"}

    hashed.clear()
    again, _ = listing.list_raw_files(tmp_path / "in", "csv", known)
    assert hashed == ["b.csv"]
    assert [f.sha256 for f in again] == [f.sha256 for f in first]

    stat = a.stat()
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched: same bytes, new time
    hashed.clear()
    listing.list_raw_files(tmp_path / "in", "csv", known)
    assert sorted(hashed) == ["a.csv", "b.csv"]
    assert b.exists()


@pytest.mark.slow
def test_a_second_ingest_hashes_nothing_and_a_touched_file_is_hashed_but_not_read(spark, tmp_path, hashed):
    raw = _log(tmp_path / "in" / "clicks.csv", range(12))
    lake = Lake(tmp_path / "lake")
    config = IngestConfig(input=tmp_path / "in", items_input=None, preset=None, mapping=MAPPING)
    first = ingest(spark, config, lake, now=NOW)
    assert first.files_ingested == 1 and hashed == ["clicks.csv"]
    [sha256] = live_reads(read_manifest(lake))
    stat = raw.stat()
    assert known_files(live_reads(read_manifest(lake))) == {(str(raw.resolve()), stat.st_size, stat.st_mtime_ns): sha256}

    hashed.clear()
    second = ingest(spark, config, lake, now=NOW)
    assert (second.files_ingested, second.files_skipped, hashed) == (0, 1, [])

    stat = raw.stat()
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    third = ingest(spark, config, lake, now=NOW)
    assert hashed == ["clicks.csv"]  # a new time: hashed, and the same bytes are not read again
    assert (third.files_ingested, third.files_skipped, third.rows_read) == (0, 1, 0)
