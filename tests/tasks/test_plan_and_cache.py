"""The run plan (run ids), the stage cache keys (each stage keyed on what it reads) and the lake lock."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest

from recsys.config import PipelineConfig
from recsys.graph import GraphResult
from recsys.lake import Lake
from recsys.walks import WalksResult
from tasks.cache import stage_key
from tasks.lock import LakeBusyError, LakeLock
from tasks.plan import RunPlan, config_digest
from tasks.stages import _graph_reads, _train_reads, _walks_reads
from tests.conftest import SAMPLE


def test_run_id_ignores_locations_but_not_settings(tmp_path):
    shutil.copy(SAMPLE / "events.csv.gz", tmp_path / "events.csv.gz")
    here = PipelineConfig()
    elsewhere = PipelineConfig.model_validate({"lake": str(tmp_path / "lake"), "spark": {"master": "local[1]"},
                                               "ingest": {"input": str(tmp_path / "events.csv.gz"), "items_input": None}})
    assert config_digest(here) == config_digest(elsewhere)
    assert config_digest(here) != config_digest(here.model_copy(update={"seed": 1}))
    assert config_digest(here) != config_digest(PipelineConfig.model_validate({"walks": {"walk_length": 30}}))


def _plan(tmp_path, run_id: str = "20240314-aaaa", cache: bool = True) -> RunPlan:
    return RunPlan(run_id, "2024-03-14", "2024-03-01", "2024-03-13", "2024-03-14", str(tmp_path / "runs" / run_id),
                   str(tmp_path), "sample", 42, cache)


def _keys(tmp_path, config: PipelineConfig, run_id: str) -> dict[str, str]:
    plan = _plan(tmp_path, run_id)
    graph = GraphResult(str(tmp_path / "graph"), 3, 4, 5, 0)
    walks = WalksResult(str(tmp_path / "walks"), 6, 7, 3)
    return {
        "graph": stage_key("graph", _graph_reads)(None, {"settings": config.graph, "plan": plan}),
        "walks": stage_key("walks", _walks_reads)(None, {"settings": config.walks, "graph": graph, "plan": plan}),
        "train": stage_key("train", _train_reads)(None, {"settings": config.train, "graph": graph, "walks": walks,
                                                          "validation": None, "plan": plan}),
    }


def test_a_setting_invalidates_only_the_stages_that_read_it(tmp_path):
    base = _keys(tmp_path, PipelineConfig(), "20240314-aaaa")
    # another run id (every setting is in it), same graph settings and inputs: the graph stays cached
    longer_walks = _keys(tmp_path, PipelineConfig.model_validate({"walks": {"walk_length": 30}}), "20240314-bbbb")
    assert longer_walks["graph"] == base["graph"]
    assert longer_walks["walks"] != base["walks"]
    assert longer_walks["train"] == base["train"]  # no train setting changed: train re-runs only when the walks' files do
    more_epochs = _keys(tmp_path, PipelineConfig.model_validate({"train": {"word2vec": {"epochs": 9}}}), "20240314-cccc")
    assert (more_epochs["graph"], more_epochs["walks"]) == (base["graph"], base["walks"]) and more_epochs["train"] != base["train"]


def test_a_stage_key_follows_the_files_it_reads_and_cache_false_turns_it_off(tmp_path):
    config = PipelineConfig()
    before = _keys(tmp_path, config, "r")
    (tmp_path / "graph").mkdir()
    (tmp_path / "graph" / "table.npz").write_bytes(b"x")
    after = _keys(tmp_path, config, "r")
    assert after["graph"] == before["graph"] and after["walks"] != before["walks"]
    off = stage_key("graph", _graph_reads)(None, {"settings": config.graph, "plan": _plan(tmp_path, cache=False)})
    assert off is None


def test_the_lake_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    lake = Lake(tmp_path)
    with LakeLock(tmp_path):
        holder = json.loads(lake.run_lock.read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(LakeBusyError, match="another run holds the lake lock"):
            LakeLock(tmp_path).__enter__()
    assert not lake.run_lock.exists()
    dead = {**holder, "pid": 2**22 + 12345}  # beyond the default pid range: no such process
    lake.run_lock.write_text(json.dumps(dead))
    with LakeLock(tmp_path):
        assert json.loads(lake.run_lock.read_text())["pid"] == os.getpid()


def test_run_plan_round_trips_through_prefects_json_serializer(tmp_path):
    """Cached stage results and the plan travel through Prefect's JSON serializer, never pickle."""
    from prefect.serializers import JSONSerializer

    plan = _plan(tmp_path)
    serializer = JSONSerializer()
    assert serializer.loads(serializer.dumps(plan)) == plan
    assert dataclasses.asdict(serializer.loads(serializer.dumps(plan))) == dataclasses.asdict(plan)


def test_every_cached_stage_result_round_trips_through_prefects_json_serializer(tmp_path):
    """What a cached stage returns is read back from JSON: nested results, tuples, None and NaN included."""
    import math

    from prefect.serializers import JSONSerializer

    from recsys.evaluate import EvaluateResult
    from recsys.holdout import ValidationResult
    from recsys.publish import PublishResult
    from recsys.train import TrainedModel, TrainResult

    results = [
        GraphResult(str(tmp_path / "g"), 3, 4, 5, 0, cold_items=2, validation_events=1, long_sessions=1, long_session_events=9),
        WalksResult(str(tmp_path / "w"), 6, 7, 3),
        ValidationResult(str(tmp_path / "v"), 10, 4, 4),
        TrainResult((TrainedModel("skipgram", "/m/skipgram", 1.5, ("item_to_item",),
                                  ({"epoch": 1, "loss": 0.5, "validation_auc": None, "best": True},)),
                     TrainedModel("popular", "/m/popular", 0.0))),
        EvaluateResult("/r/metrics.parquet", "skipgram", "auc",
                       ({"model": "skipgram", "auc": 0.8, "auc_cold": float("nan"), "k": 10},), "/r/plots"),
        PublishResult("item_to_item", "/l/recommendations/item_to_item", 40, 2, "skipgram", "/l/_LATEST",
                      removed_versions=("2024-03-01",), version=3),
        PublishResult("item_to_item", "/l/t", 0, 0, "m", "/l/_LATEST", published=False, reason="worse"),
    ]
    serializer = JSONSerializer()
    for result in results:
        back = serializer.loads(serializer.dumps(result))
        assert type(back) is type(result)
        if isinstance(result, EvaluateResult):
            assert math.isnan(back.rows[0]["auc_cold"]) and back.rows[0]["auc"] == 0.8 and back.champion == "skipgram"
        else:
            assert back == result, type(result)


def test_no_validation_split_when_the_training_window_is_one_day():
    import datetime as dt

    from recsys.config import PipelineConfig
    from recsys.graph import ValidationSplit
    from recsys.timewindow import TimeWindow
    from tasks.plan import validation_split

    config = PipelineConfig.model_validate({"train": {"models": ["skipgram"]}})
    one_day = TimeWindow(dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 2))
    assert validation_split(config, one_day) is None
    week = TimeWindow(dt.date(2024, 3, 1), dt.date(2024, 3, 8), dt.date(2024, 3, 8))
    assert validation_split(config, week) == ValidationSplit(dt.date(2024, 3, 7), dt.date(2024, 3, 7), 0.1, 42)
