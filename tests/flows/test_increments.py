"""Nights one after another through the nightly flow: new files each day, late rows, re-runs, caching.

The embedded sample is cut into one raw file per day. Run D ingests the files it has not seen and
publishes ``run_date=D``; the next night adds D+1's file and a file of late rows for an earlier day;
then D+1 is run again, first with Prefect's cache (every stage after ingest is skipped) and then
without it (everything recomputes). The lake must end up with the same events and the same table.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

import pytest
from deltalake import DeltaTable

from recsys.lake import Lake, read_parquet_dir
from recsys.publish import published_dates, read_latest
from tests.conftest import SAMPLE

D, NEXT, LATE_DAY = "2024-03-13", "2024-03-14", "2024-03-10"
LATE_ROWS = 300
SMALL = {"walks": {"walks_per_node": 2, "walk_length": 10, "partitions": 2},
         "train": {"models": ["word2vec", "popular"], "word2vec": {"epochs": 2}},
         "publish": {"tolerance": 1.0}}


def _days_of_sample() -> tuple[str, dict[str, list[str]]]:
    with gzip.open(SAMPLE / "events.csv.gz", "rt") as handle:
        header, *lines = handle.read().splitlines()
    days: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        days[line[:10]].append(line)
    return header, days


def _write(path: Path, header: str, lines: list[str]) -> None:
    path.write_text("\n".join([header, *lines]) + "\n")


def _config(raw: Path, lake: Path, run_date: str, cache: bool = True) -> dict:
    return {**SMALL, "lake": str(lake), "cache": cache, "window": {"run_date": run_date},
            "ingest": {"preset": "sample", "input": str(raw), "items_input": str(SAMPLE / "items.csv.gz")}}


def _task_states(flow_state) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: run.state.name for run in runs}


def _events_per_day(lake: Path) -> dict[str, int]:
    table = read_parquet_dir(Lake(lake).events)
    counts: dict[str, int] = defaultdict(int)
    for day in table.column("event_date").to_pylist():
        counts[str(day)] += 1
    return dict(counts)


@pytest.fixture(scope="module")
def nights(tmp_path_factory, prefect_harness):
    from flows.nightly import nightly

    root = tmp_path_factory.mktemp("increments")
    raw, lake = root / "raw", root / "lake"
    raw.mkdir()
    header, days = _days_of_sample()
    late, on_time = days[LATE_DAY][:LATE_ROWS], days[LATE_DAY][LATE_ROWS:]
    for day, lines in days.items():
        if day <= D:
            _write(raw / f"events-{day}.csv", header, on_time if day == LATE_DAY else lines)
    first = nightly(config=_config(raw, lake, D))
    per_day_first = _events_per_day(lake)

    _write(raw / f"events-{NEXT}.csv", header, days[NEXT])
    _write(raw / f"late-{LATE_DAY}-arrived-{NEXT}.csv", header, late)
    second = nightly(config=_config(raw, lake, NEXT))
    per_day_second = _events_per_day(lake)
    table_second = read_latest(lake)

    cached_state = nightly(config=_config(raw, lake, NEXT), return_state=True)
    cached = cached_state.result()
    per_day_cached, table_cached = _events_per_day(lake), read_latest(lake)

    recomputed = nightly(config=_config(raw, lake, NEXT, cache=False))
    return {"lake": lake, "first": first, "second": second, "cached": cached, "recomputed": recomputed,
            "states": _task_states(cached_state), "per_day": [per_day_first, per_day_second, per_day_cached,
                                                              _events_per_day(lake)],
            "tables": [table_second, table_cached, read_latest(lake)], "days": days}


@pytest.mark.slow
def test_each_night_ingests_only_new_files(nights):
    first, second = nights["first"].ingest, nights["second"].ingest
    assert (first.files_ingested, first.files_skipped) == (13, 0)
    assert (second.files_found, second.files_ingested, second.files_skipped) == (15, 2, 13)
    assert (nights["cached"].ingest.files_ingested, nights["recomputed"].ingest.files_ingested) == (0, 0)
    assert first.balanced and second.balanced


@pytest.mark.slow
def test_each_night_trains_on_the_window_ending_at_its_run_date(nights):
    first, second = nights["first"].plan, nights["second"].plan
    assert (first.run_date, first.test_from, first.train_until) == (D, D, "2024-03-12")
    assert (second.run_date, second.test_from, second.train_until) == (NEXT, NEXT, D)
    assert nights["first"].evaluate.rows and nights["second"].evaluate.rows


@pytest.mark.slow
def test_late_rows_land_in_their_own_days_partition(nights):
    before, after = nights["per_day"][0], nights["per_day"][1]
    assert NEXT not in before
    assert after[LATE_DAY] == before[LATE_DAY] + LATE_ROWS == len(nights["days"][LATE_DAY])
    assert after[NEXT] == len(nights["days"][NEXT])
    assert {d: n for d, n in after.items() if d not in (LATE_DAY, NEXT)} == {d: n for d, n in before.items() if d != LATE_DAY}


@pytest.mark.slow
def test_two_nights_leave_two_versions_and_latest_names_the_second(nights):
    lake = Lake(nights["lake"])
    assert published_dates(lake) == [D, NEXT]
    pointer = json.loads(lake.latest_pointer.read_text())
    assert pointer["run_date"] == NEXT and pointer["run_id"] == nights["second"].plan.run_id
    first = DeltaTable(nights["first"].publish.path, version=nights["first"].publish.version).to_pyarrow_table()
    assert first.num_rows > 0 and set(first.column("run_id").to_pylist()) == {nights["first"].plan.run_id}


@pytest.mark.slow
def test_rerun_with_cache_skips_every_stage_after_ingest(nights):
    states = nights["states"]
    assert {stage: states[stage] for stage in ("graph", "walks", "train", "evaluate", "publish")} == dict.fromkeys(
        ("graph", "walks", "train", "evaluate", "publish"), "Cached")
    assert states["ingest"] == "Completed" and states["plan-run"] == "Completed" and states["report"] == "Completed"
    assert nights["cached"].publish == nights["second"].publish  # the cached result, read back from JSON



@pytest.mark.slow
def test_reruns_add_no_events_and_change_no_table(nights):
    _, second, cached, recomputed = nights["per_day"]
    assert second == cached == recomputed
    table_second, table_cached, table_recomputed = nights["tables"]
    assert table_second.equals(table_cached)
    assert table_second.drop_columns(["run_id"]).equals(table_recomputed.drop_columns(["run_id"]))
    assert set(table_recomputed.column("run_id").to_pylist()) == {nights["second"].plan.run_id}
    assert nights["recomputed"].publish.published and nights["recomputed"].publish.version > nights["second"].publish.version
    assert published_dates(Lake(nights["lake"])) == [D, NEXT]  # the re-publication replaced NEXT's version


@pytest.mark.slow
def test_a_cached_stage_whose_run_folder_was_deleted_is_computed_again(nights, tmp_path):
    """An operator deletes an old run folder: the next run does not hand on a result naming it."""
    import shutil

    from flows.nightly import nightly

    raw = Path(nights["second"].ingest.events_path).parent.parent / "raw"
    run_dir = Path(nights["second"].plan.run_dir)
    shutil.rmtree(run_dir)
    again = nightly(config=_config(raw, nights["lake"], NEXT))
    assert Path(again.graph.path).exists() and Path(again.walks.path).exists()
    assert all(Path(m.path).exists() for m in again.train.models)
    assert again.plan.run_dir == str(run_dir) and Path(again.report.path).exists()
