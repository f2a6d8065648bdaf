"""The readers on the public layouts of issue 13, without Spark: a missing column named once, a
multi-character delimiter, and "one line per user" sequence files with their synthetic clock.

The end-to-end view through Spark, one fixture per preset, is in ``test_presets_own_logs.py``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from recsys import raw_files
from recsys.presets import PRESETS
from recsys.raw_files import (PARSED_SCHEMA, SEQUENCE_HISTORY_START, SEQUENCE_LAST_ITEM, ColumnMapping,
                              detect_format, missing_columns_reason, parse_file, required_columns)

# The header of Diginetica's train-purchases.csv and a line in its layout.
PURCHASES = "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n150;NA;472065;2016-05-06;14615;5281\n"


def _parsed(path: Path, file_format: str, mapping: ColumnMapping) -> list[dict]:
    batches = list(parse_file(path, file_format, mapping))
    assert all(batch.schema == PARSED_SCHEMA for batch in batches)
    return [row for batch in batches for row in batch.to_pylist()]


def _utc(seconds: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(seconds), dt.timezone.utc)


def test_a_missing_column_is_named_once_with_the_fields_that_want_it(tmp_path):
    """Issue 13: the views preset on the purchases file said ['session_id', 'item_id', 'session_id']."""
    path = tmp_path / "train-purchases.csv"
    path.write_text(PURCHASES)
    (row,) = _parsed(path, "csv", PRESETS["diginetica"])
    reason = row["reason"]
    assert reason.startswith("file lacks required column(s) ['session_id', 'item_id']: "), reason
    assert reason.count("'session_id'") == 2  # in the list, then once with the fields that read it
    assert ("'session_id' for user_id and session_id (the file has 'sessionId'); "
            "'item_id' (the file has 'itemId')") in reason
    assert "(header has ['sessionId', 'userId', 'timeframe', 'eventdate', 'ordernumber', 'itemId'])" in reason
    assert required_columns(PRESETS["diginetica"]) == ["session_id", "item_id", "eventdate", "timeframe"]


def test_a_plain_missing_column_keeps_the_short_message():
    assert missing_columns_reason(ColumnMapping(), ["user_id", "timestamp", "event_type"]) == \
        "file lacks required column(s) ['item_id']"
    assert missing_columns_reason(ColumnMapping(), ["user_id", "item_id", "timestamp", "event_type"]) is None


def test_the_purchases_preset_reads_that_file(tmp_path):
    path = tmp_path / "train-purchases.csv"
    path.write_text(PURCHASES)
    (row,) = _parsed(path, "csv", PRESETS["diginetica_purchases"])
    assert row["reason"] is None
    assert (row["user_id"], row["session_raw"], row["item_id"], row["time_raw"], row["time_offset"]) == (
        "150", "150", "5281", "2016-05-06", "472065")


def test_a_two_character_delimiter_splits_movielens_dat(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::1193::5::978300760\n1::661::3::978302109\n1::914::3\n")
    rows = _parsed(path, detect_format(path, "csv"), PRESETS["movielens_dat"])
    assert [(r["line"], r["user_id"], r["item_id"], r["event_type_raw"], r["time_raw"]) for r in rows[:2]] == [
        (1, "1", "1193", "5", "978300760"), (2, "1", "661", "3", "978302109")]
    assert rows[2]["reason"] == "expected 4 fields, got 3"


def test_a_headed_file_with_a_two_character_delimiter_names_its_columns(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("who||what||when\nu1||a||1700000000\n")
    mapping = ColumnMapping(delimiter="||", user_id="who", item_id="what", event_time="when", time_format="unix_s",
                            event_type=None)
    (row,) = _parsed(path, "csv", mapping)
    assert (row["reason"], row["user_id"], row["item_id"], row["time_raw"]) == (None, "u1", "a", "1700000000")


def test_sequence_lines_become_one_event_per_item_leave_last_out(tmp_path):
    # the first tokens of LightGCN's gowalla/train.txt lines, in their layout
    path = tmp_path / "train.txt"
    path.write_text("0 0 1 2 3 4\n1 127 128 129\n2 160\n3\n\n")
    mapping = PRESETS["sequence"]
    assert detect_format(path, mapping.format) == "sequence"  # a .txt is not read as CSV here
    rows = _parsed(path, "sequence", mapping)
    events = [(r["line"], r["user_id"], r["item_id"], _utc(r["time_raw"])) for r in rows if r["reason"] is None]
    day1 = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    last = dt.datetime(2000, 1, 2, 23, 59, 59, tzinfo=dt.timezone.utc)
    second = dt.timedelta(seconds=1)
    assert events == [
        (1, "0", "0", day1), (1, "0", "1", day1 + second), (1, "0", "2", day1 + 2 * second),
        (1, "0", "3", day1 + 3 * second), (1, "0", "4", last),
        (2, "1", "127", day1), (2, "1", "128", day1 + second), (2, "1", "129", last),
        (3, "2", "160", last),  # a one-item user has only the held-out item
    ]
    assert _utc(str(SEQUENCE_HISTORY_START)) == day1 and _utc(str(SEQUENCE_LAST_ITEM)) == last
    rejected = {r["line"]: r["reason"] for r in rows if r["reason"] is not None}
    assert rejected == {4: "sequence line has a user but no items", 5: "empty line"}
    assert rows[0]["raw"] == "0 0 (item 1 of 5)" and all(r["event_type_raw"] is None for r in rows)


def test_sasrec_pairs_on_consecutive_lines_form_one_sequence(tmp_path):
    path = tmp_path / "Beauty.txt"
    path.write_text("1 1\n1 2\n1 3\n2 4\n2 1\n1 9\n")
    rows = _parsed(path, "sequence", PRESETS["sequence"])
    accepted = [(r["line"], r["user_id"], r["item_id"], int(r["time_raw"])) for r in rows if r["reason"] is None]
    assert accepted == [(1, "1", "1", SEQUENCE_HISTORY_START), (2, "1", "2", SEQUENCE_HISTORY_START + 1),
                        (3, "1", "3", SEQUENCE_LAST_ITEM), (4, "2", "4", SEQUENCE_HISTORY_START),
                        (5, "2", "1", SEQUENCE_LAST_ITEM)]
    (resumed,) = [r for r in rows if r["reason"] is not None]
    assert resumed["line"] == 6 and "user '1' resumes the sequence begun on line 1" in resumed["reason"]


def test_sequence_tokens_split_on_any_whitespace_or_a_given_delimiter(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("u1\ta  b \n")
    rows = _parsed(path, "sequence", ColumnMapping(format="sequence"))
    assert [(r["user_id"], r["item_id"]) for r in rows] == [("u1", "a"), ("u1", "b")]
    path.write_text("u1,a,NA\n")
    rows = _parsed(path, "sequence", ColumnMapping(format="sequence", delimiter=","))
    assert [(r["user_id"], r["item_id"]) for r in rows] == [("u1", "a"), ("u1", None)]  # null marker


def test_a_sequence_too_long_for_the_synthetic_day_is_rejected_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(raw_files, "SEQUENCE_MAX_ITEMS", 3)
    path = tmp_path / "seq.txt"
    path.write_text("u1 a b c d\nu2 a b c\n")
    rows = _parsed(path, "sequence", PRESETS["sequence"])
    assert [r["reason"] is None for r in rows] == [False] * 4 + [True] * 3
    assert rows[0]["reason"].startswith("sequence of 4 items is longer than 3")


@pytest.mark.parametrize("name", ["events.csv", "events.parquet", "x.jsonl.gz"])
def test_a_sequence_mapping_reads_every_file_as_sequences(name):
    assert detect_format(Path(name), "sequence") == "sequence"
    assert detect_format(Path(name), "csv") != "sequence"
