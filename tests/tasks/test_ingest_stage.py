"""The ingest task inside real Prefect flows: an all-quarantined batch fails the run at ingest with the
one clear message (the flow is Failed, no later stage runs, and a caller catches ``IngestRejected``);
``reingest_path`` reads one file again through the task."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import PipelineConfig
from recsys.ingest import IngestRejected
from recsys.lake import Lake, read_parquet_dir

START = 1709287200  # 2024-03-01T10:00:00Z


def _raw(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = [f"{START + 3600 * n},u{n % 4},i{n % 5},view" for n in range(12)]
    path = folder / "clicks.csv"
    path.write_text("\n".join(["ts,user,item,action", *lines]) + "\n")
    return path


def _config(raw: Path, lake: Path, time_format: str) -> PipelineConfig:
    mapping = {"user_id": "user", "item_id": "item", "event_time": "ts", "time_format": time_format, "event_type": "action"}
    return PipelineConfig.model_validate({"lake": str(lake), "dataset": "clicks", "train": {"models": ["popular"]},
                                          "ingest": {"input": str(raw), "items_input": None, "preset": None,
                                                     "mapping": mapping}})


def _task_states(flow_state) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: run.state.name for run in runs}


@pytest.mark.slow
def test_an_all_quarantined_batch_fails_the_nightly_flow_at_ingest_with_its_message(prefect_harness, tmp_path):
    from flows.nightly import nightly

    config = _config(_raw(tmp_path / "in"), tmp_path / "lake", "iso")  # unix seconds read as ISO: all quarantined

    state = nightly(config=config, return_state=True)

    assert state.is_failed()
    assert "ingest rejected: 12 of 12 rows read were quarantined" in state.message
    assert _task_states(state) == {"ingest": "Failed"}  # plan-run, graph, ... never started
    with pytest.raises(IngestRejected, match=r"(?s)Top reasons:.*unparseable timestamp \(column 'ts', format iso\)"):
        nightly(config=config)  # what `recsys run` calls: the exception itself reaches the caller


@pytest.mark.slow
def test_the_ingest_task_reingests_one_file(prefect_harness, tmp_path):
    from prefect import flow

    from tasks.stages import ingest_task

    raw = _raw(tmp_path / "in")
    config = _config(raw, tmp_path / "lake", "unix_s")

    @flow(name="reingest-test")
    def run(reingest_path: Path | None = None):
        return ingest_task(config.ingest, config.lake, config.spark, reingest_path)

    first, second = run(), run(raw)

    assert (first.files_ingested, first.rows_accepted) == (1, 12)
    assert (second.files_ingested, second.rows_accepted, second.rows_replaced) == (1, 12, 12)
    assert read_parquet_dir(Lake(config.lake).events).num_rows == 12
