"""Ingest on real Spark when a batch is all or mostly quarantined: one clear error, nothing ingested,
nothing marked done; and, in a batch that is accepted, a mostly quarantined file is read again."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

import pytest

from recsys.config import ColumnMapping, IngestConfig
from recsys.ingest import DONE, QUARANTINED, REJECTED, IngestRejected, ingest, ingested_checksums, read_manifest
from recsys.lake import Lake, read_parquet_dir

NOW = dt.datetime(2024, 3, 20, tzinfo=dt.timezone.utc)
START = 1709287200  # 2024-03-01T10:00:00Z
HEADER = "ts,user,item,action"
# unix seconds read as ISO: every timestamp is unparseable (the "wrong time format" case)
WRONG_TIME = ColumnMapping(user_id="user", item_id="item", event_time="ts", time_format="iso", event_type="action",
                           category="cat")


def _log(path: Path, good: int, null_users: int = 0, cat: bool = True, user: str = "u") -> Path:
    """``good`` rows with unix-second times, then ``null_users`` rows without a user."""
    rows = [f"{START + 60 * n},{user}{n % 3},i{n % 4},view" for n in range(good)]
    rows += [f"{START + 60 * n},,i{n % 4},view" for n in range(null_users)]
    header = HEADER + (",cat" if cat else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *(r + (",shoes" if cat else "") for r in rows)]) + "\n")
    return path


def _config(path: Path, mapping: ColumnMapping) -> IngestConfig:
    return IngestConfig(input=path, items_input=None, preset=None, mapping=mapping)


def test_an_all_quarantined_batch_stops_with_one_error_and_ingests_nothing(spark, tmp_path):
    raw = _log(tmp_path / "in" / "clicks.csv", good=8, null_users=2)
    lake = Lake(tmp_path / "lake")

    with pytest.raises(IngestRejected) as caught:
        ingest(spark, _config(raw, WRONG_TIME), lake, now=NOW)

    error, text = caught.value, str(caught.value)
    assert (error.rows_read, error.rows_quarantined) == (10, 10)
    assert "10 of 10 rows read were quarantined (100.0%" in text
    assert error.reasons == (("unparseable timestamp (column 'ts', format iso)", 8), ("null user id (column 'user')", 2))
    assert "        8  unparseable timestamp (column 'ts', format iso)\n" in text
    assert "        2  null user id (column 'user')\n" in text
    # two example lines, each with its file, line number and raw text: one per top reason
    assert f"  {raw}, line 2: {START},u0,i0,view,shoes\n" in text
    assert f"  {raw}, line 10: {START},,i0,view,shoes\n" in text
    assert f"  {raw}: 10 of 10 rows quarantined" in text
    # nothing of the batch is in the lake but its quarantine rows; no items/ from it; not marked done
    assert not lake.events.exists() and not lake.items.exists()
    assert read_parquet_dir(lake.quarantine).num_rows == 10 and str(lake.quarantine) in text
    assert [e.status for e in read_manifest(lake)] == [REJECTED] and ingested_checksums(lake) == set()
    again = pickle.loads(pickle.dumps(error))  # Prefect may persist a failed task's exception
    assert str(again) == text and again.reasons == error.reasons


@pytest.mark.slow
def test_a_mostly_quarantined_batch_is_rejected_and_a_rerun_without_a_fix_fails_the_same_way(spark, tmp_path):
    raw = _log(tmp_path / "in" / "clicks.csv", good=2, null_users=3)  # 60% quarantined
    lake = Lake(tmp_path / "lake")
    mapping = WRONG_TIME.model_copy(update={"time_format": "unix_s"})

    with pytest.raises(IngestRejected, match=r"3 of 5 rows read were quarantined \(60.0%"):
        ingest(spark, _config(raw, mapping), lake, now=NOW)
    with pytest.raises(IngestRejected, match=r"3 of 5 rows read were quarantined \(60.0%"):  # read again, not skipped
        ingest(spark, _config(raw, mapping), lake, now=NOW)

    assert not lake.events.exists() and not lake.items.exists()
    assert [e.status for e in read_manifest(lake)] == [REJECTED, REJECTED]
    assert read_parquet_dir(lake.quarantine).num_rows == 6  # each attempt's rows; the next accepted read replaces both


@pytest.mark.slow
def test_in_an_accepted_batch_a_mostly_quarantined_file_is_ingested_and_read_again(spark, tmp_path):
    folder = tmp_path / "in"
    mapping = WRONG_TIME.model_copy(update={"time_format": "unix_s"})
    _log(folder / "big.csv", good=12)
    junk = _log(folder / "junk.csv", good=1, null_users=3, user="v")  # 75% quarantined, 16 rows in the batch: 19% quarantined
    lake = Lake(tmp_path / "lake")

    first = ingest(spark, _config(folder, mapping), lake, now=NOW)
    second = ingest(spark, _config(folder, mapping), lake, now=NOW)  # only junk.csv: known, so not rejected

    assert (first.rows_accepted, first.rows_quarantined, first.quarantined_files) == (13, 3, (str(junk.resolve()),))
    assert (second.files_ingested, second.rows_read, second.quarantined_files) == (1, 4, (str(junk.resolve()),))
    assert second.rows_replaced == 1 and second.rows_duplicate == 0  # its earlier row is replaced, not doubled
    assert read_parquet_dir(lake.events).num_rows == 13 and read_parquet_dir(lake.quarantine).num_rows == 3
    statuses = {(Path(e.path).name, e.batch_id): e.status for e in read_manifest(lake)}
    assert sorted(statuses.values()) == [DONE, QUARANTINED, QUARANTINED]
