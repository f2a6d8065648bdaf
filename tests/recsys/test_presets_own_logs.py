"""Issue 13, items 1 and 7: public logs ingested from their raw layouts, end to end on real Spark.

Each preset gets a handful of lines in its file's exact layout (the real first lines where they are
known: ../shared/datasets for the GRU4Rec form and LightGCN's sequences, the published heads of
YooChoose, RetailRocket and MovieLens; lines marked "layout" are written in the layout by hand), is
ingested into a fresh lake, and every event must come out with the right user, item, time and type.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recsys.config import ColumnMapping, IngestConfig, PipelineConfig
from recsys.ingest import ingest
from recsys.lake import Lake, read_parquet_dir
from recsys.timewindow import resolve_window

UTC = dt.timezone.utc


def _t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def _unix(seconds: int, micros: int = 0) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, UTC) + dt.timedelta(microseconds=micros)


# preset -> (file name, file text, expected (user, item, event_time, event_type, session or None = cut at the gap))
CASES = {
    "diginetica_purchases": ("train-purchases.csv", (
        "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n"
        "150;NA;472065;2016-05-06;14615;5281\n"  # layout
        "150;NA;472065;2016-05-06;14615;1155\n"  # layout
        "1611;18278;1262327;2016-05-15;17391;64286\n"  # layout
    ), [
        ("150", "5281", _t("2016-05-06T00:07:52.065"), "purchase", "150"),
        ("150", "1155", _t("2016-05-06T00:07:52.065"), "purchase", "150"),
        ("1611", "64286", _t("2016-05-15T00:21:02.327"), "purchase", "1611"),
    ]),
    "yoochoose_clicks": ("yoochoose-clicks.dat", (
        "1,2014-04-07T10:51:09.277Z,214536502,0\n"
        "1,2014-04-07T10:54:09.868Z,214536500,0\n"
        "1,2014-04-07T10:54:46.998Z,214536506,0\n"
        "2,2014-04-07T13:56:37.614Z,214662742,0\n"
    ), [
        ("1", "214536502", _t("2014-04-07T10:51:09.277"), "view", "1"),
        ("1", "214536500", _t("2014-04-07T10:54:09.868"), "view", "1"),
        ("1", "214536506", _t("2014-04-07T10:54:46.998"), "view", "1"),
        ("2", "214662742", _t("2014-04-07T13:56:37.614"), "view", "2"),
    ]),
    "yoochoose_buys": ("yoochoose-buys.dat", (
        "420374,2014-04-06T18:44:58.314Z,214537888,12462,1\n"
        "420374,2014-04-06T18:44:58.325Z,214537850,10471,1\n"
        "281626,2014-04-06T09:40:13.032Z,214535653,1883,1\n"
    ), [
        ("420374", "214537888", _t("2014-04-06T18:44:58.314"), "purchase", "420374"),
        ("420374", "214537850", _t("2014-04-06T18:44:58.325"), "purchase", "420374"),
        ("281626", "214535653", _t("2014-04-06T09:40:13.032"), "purchase", "281626"),
    ]),
    "gru4rec": ("yoochoose-clicks-100k_train_full.txt", (
        "SessionId\tItemId\tTime\n"
        "3\t214716935\t1396437466.94\n"
        "3\t214832672\t1396438212.318\n"
        "6\t214701242\t1396796300.848\n"
    ), [
        ("3", "214716935", _unix(1396437466, 940_000), "view", "3"),
        ("3", "214832672", _unix(1396438212, 318_000), "view", "3"),
        ("6", "214701242", _unix(1396796300, 848_000), "view", "6"),
    ]),
    "retailrocket": ("events.csv", (
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,view,248676,\n"
        "1433221999827,111016,view,318965,\n"
        "1433221941632,599528,addtocart,356475,\n"  # layout
        "1433222276276,599528,transaction,356475,4000\n"  # layout
    ), [
        ("257597", "355908", _unix(1433221332, 117_000), "view", None),
        ("992329", "248676", _unix(1433224214, 164_000), "view", None),
        ("111016", "318965", _unix(1433221999, 827_000), "view", None),
        ("599528", "356475", _unix(1433221941, 632_000), "cart", None),
        ("599528", "356475", _unix(1433222276, 276_000), "purchase", None),
    ]),
    "movielens_dat": ("ratings.dat", (
        "1::1193::5::978300760\n"
        "1::661::3::978302109\n"
        "1::914::3::978301968\n"
        "1::3408::4::978300275\n"
        "1::2355::5::978824291\n"
    ), [
        ("1", "1193", _unix(978300760), "purchase", None),
        ("1", "661", _unix(978302109), "favorite", None),
        ("1", "914", _unix(978301968), "favorite", None),
        ("1", "3408", _unix(978300275), "cart", None),
        ("1", "2355", _unix(978824291), "purchase", None),
    ]),
    "movielens_csv": ("ratings.csv", (
        "userId,movieId,rating,timestamp\n"
        "1,1,4.0,964982703\n"
        "1,3,4.0,964981247\n"
        "1,47,5.0,964983815\n"
        "5,1,3.5,964982931\n"  # layout: a half star
        "5,3,0.5,964981000\n"  # layout
    ), [
        ("1", "1", _unix(964982703), "cart", None),
        ("1", "3", _unix(964981247), "cart", None),
        ("1", "47", _unix(964983815), "purchase", None),
        ("5", "1", _unix(964982931), "favorite", None),
        ("5", "3", _unix(964981000), "view", None),
    ]),
    "sequence": ("train.txt", (
        "0 0 1 2 3 4\n"  # the first tokens of ../shared/datasets/gowalla/train.txt lines
        "1 127 128 129\n"
    ), [
        ("0", "0", _t("2000-01-01T00:00:00"), "view", None),
        ("0", "1", _t("2000-01-01T00:00:01"), "view", None),
        ("0", "2", _t("2000-01-01T00:00:02"), "view", None),
        ("0", "3", _t("2000-01-01T00:00:03"), "view", None),
        ("0", "4", _t("2000-01-02T23:59:59"), "view", None),
        ("1", "127", _t("2000-01-01T00:00:00"), "view", None),
        ("1", "128", _t("2000-01-01T00:00:01"), "view", None),
        ("1", "129", _t("2000-01-02T23:59:59"), "view", None),
    ]),
}


def _ingest(spark, tmp_path: Path, name: str, text: str, **config) -> tuple[Lake, object]:
    raw = tmp_path / "in" / name
    raw.parent.mkdir(parents=True)
    raw.write_text(text)
    lake = Lake(tmp_path / "lake")
    return lake, ingest(spark, IngestConfig(input=raw, items_input=None, **config), lake)


def _events(lake: Lake) -> list[tuple]:
    table = pq.read_table(lake.events, partitioning="hive")
    return sorted(zip(*(table.column(c).to_pylist() for c in ("user_id", "item_id", "event_time", "event_type",
                                                               "session_id"))))


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(CASES))
def test_each_new_preset_ingests_its_layout(spark, tmp_path, preset):
    name, text, expected = CASES[preset]
    lake, result = _ingest(spark, tmp_path, name, text, preset=preset)

    assert (result.rows_read, result.rows_accepted, result.rows_quarantined) == (len(expected), len(expected), 0)
    events = _events(lake)
    assert [e[:4] for e in events] == sorted(e[:4] for e in expected)
    for event, want in zip(events, sorted(expected)):
        if want[4] is not None:
            assert event[4] == want[4]  # the log's own session
        else:
            assert event[4].startswith(f"{want[0]}@")  # cut at the inactivity gap


@pytest.mark.slow
def test_yoochoose_buys_carry_their_price_into_the_items(spark, tmp_path):
    name, text, _ = CASES["yoochoose_buys"]
    lake, _ = _ingest(spark, tmp_path, name, text, preset="yoochoose_buys")
    prices = {r["item_id"]: r["price"] for r in read_parquet_dir(lake.items).to_pylist()}
    assert prices == {"214537888": 12462.0, "214537850": 10471.0, "214535653": 1883.0}


def test_a_sequence_file_splits_leave_last_out(spark, tmp_path):
    """The synthetic clock puts every user's last item, and only it, on the test day, with the window
    settings a run on the sequence preset gets (the newest day, one item per user, is the test day even
    though it holds fewer events than the history day)."""
    name, text, expected = CASES["sequence"]
    lake, _ = _ingest(spark, tmp_path, name, text, preset="sequence")
    config = PipelineConfig.model_validate({"dataset": "gowalla", "lake": str(lake.root),
                                            "ingest": {"input": str(tmp_path / "in"), "preset": "sequence"}})
    window = resolve_window(config.window, lake)
    assert (window.train_from, window.test_from, window.run_date) == (
        dt.date(2000, 1, 1), dt.date(2000, 1, 2), dt.date(2000, 1, 2))
    test_day = {(e[0], e[1]) for e in _events(lake) if e[2].date() == window.test_from}
    assert test_day == {("0", "4"), ("1", "129")}
    sessions = {e[0]: set() for e in _events(lake)}
    for user, _, time, _, session in _events(lake):
        if time.date() < window.test_from:
            sessions[user].add(session)
    assert all(len(s) == 1 for s in sessions.values())  # a user's history is one session


def test_fractional_unix_seconds_and_milliseconds_are_exact(spark, tmp_path):
    """Issue 13, item 1: `1396860669.277` with unix_s quarantined every row; now it is kept to the
    microsecond without float drift, while text, NaN and inf still quarantine with the same reason."""
    text = ("SessionId\tItemId\tTime\n"
            "3\ta\t1396860669.277\n"
            "3\tb\t1396438212.318\n"
            "3\tc\t1396438212.9999999\n"  # a double makes it 1396438213.0; cut at the microsecond, it stays
            "3\td\t1396438213\n"
            "6\te\tNaN\n6\tf\tinf\n6\tg\tsoon\n6\th\t1.2.3\n")
    mapping = ColumnMapping(delimiter="\t", user_id="SessionId", item_id="ItemId", event_time="Time",
                            time_format="unix_s", event_type=None, session_id="SessionId")
    lake, result = _ingest(spark, tmp_path, "clicks.tsv", text, preset=None, mapping=mapping)
    assert (result.rows_accepted, result.rows_quarantined) == (4, 4)
    times = {e[1]: e[2] for e in _events(lake)}
    assert times == {"a": _unix(1396860669, 277_000), "b": _unix(1396438212, 318_000),
                     "c": _unix(1396438212, 999_999), "d": _unix(1396438213)}
    reasons = {r["raw"].split("\t")[1]: r["reason"] for r in read_parquet_dir(lake.quarantine).to_pylist()}
    assert reasons == {item: f"unparseable timestamp (column 'Time', format unix_s): {raw}"
                       for item, raw in (("e", "NaN"), ("f", "inf"), ("g", "soon"), ("h", "1.2.3"))}


def test_fractional_unix_milliseconds(spark, tmp_path):
    text = ("timestamp,visitorid,event,itemid,transactionid\n"
            "1433221332117.5,1,view,a,\n1433221332118,1,view,b,\nNaN,1,view,c,\n")
    lake, result = _ingest(spark, tmp_path, "events.csv", text, preset="retailrocket")
    assert (result.rows_accepted, result.rows_quarantined) == (2, 1)
    assert {e[1]: e[2] for e in _events(lake)} == {"a": _unix(1433221332, 117_500), "b": _unix(1433221332, 118_000)}
