"""A run on a user's own logs never defaults into another dataset's lake (issue 13, item 4): the dataset
is the one given, else the preset's, else the input's name, and the lake follows it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.cli import build_config, parser
from recsys.config import IngestConfig, PipelineConfig, dataset_name
from tests.conftest import PROJECT_ROOT


@pytest.mark.parametrize("path, name", [
    ("/data/logs/", "logs"),
    ("/data/UserBehavior_head.csv", "UserBehavior_head"),
    ("/x/yoochoose-clicks-100k_test.txt", "yoochoose-clicks-100k_test"),
    ("/x/clicks.csv.gz", "clicks"),
    ("/x/ml-100k.inter", "ml-100k"),
    ("/x/2019-Oct-sample.csv", "2019-Oct-sample"),
    ("/x/My Shop (EU) events.jsonl.gz", "My_Shop_EU_events"),
    ("/x/_hidden.parquet", "hidden"),
])
def test_the_inputs_name_without_format_endings_is_the_dataset_name(path, name):
    assert dataset_name(path) == name


def test_own_logs_get_their_own_dataset_and_lake_whatever_the_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_mapping = PipelineConfig.model_validate({"ingest": {"input": "/data/logs/", "preset": None}})
    assert by_mapping.dataset == "logs" and by_mapping.lake == tmp_path / "data" / "lake" / "logs"
    default_preset = PipelineConfig.model_validate({"ingest": {"input": "/data/clicks.csv.gz"}})  # preset: sample
    assert default_preset.dataset == "clicks" and default_preset.lake.name == "clicks"
    by_preset = PipelineConfig.model_validate({"ingest": {"input": "/data/head.csv", "preset": "taobao"}})
    assert by_preset.dataset == "taobao" and by_preset.lake.name == "taobao"
    named = PipelineConfig.model_validate({"dataset": "shop", "ingest": {"input": "/data/logs", "preset": None}})
    assert named.dataset == "shop" and named.lake.name == "shop"
    # the flow parameter built in Python, dataset left at its default
    flow_parameter = PipelineConfig(ingest=IngestConfig(input=Path("/data/logs"), preset=None))
    assert flow_parameter.dataset == "logs" and flow_parameter.lake == tmp_path / "data" / "lake" / "logs"
    # no input at all is still the embedded sample, in its own lake
    assert PipelineConfig().dataset == "sample" and PipelineConfig().lake == tmp_path / "data" / "lake" / "sample"


@pytest.mark.parametrize("settings, field", [
    ({"ingest": {"input": "/", "preset": None}}, "dataset"),  # nothing to take a name from
    ({"ingest": {"input": "/data/sample.csv", "preset": None}}, "dataset"),  # the sample's name is the sample's
    ({"dataset": "sample", "ingest": {"input": "/data/logs", "preset": None}}, "dataset"),  # prefect.yaml edited by half
    ({"lake": "data/lake/sample", "ingest": {"input": "/data/logs", "preset": None}}, "lake"),
])
def test_own_logs_named_sample_or_in_the_samples_lake_fail_naming_the_field(settings, field, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError) as error:
        PipelineConfig.model_validate(settings)
    assert f"Value error, {field}: " in str(error.value)


def test_the_cli_on_own_logs_without_lake_or_dataset(tmp_path, monkeypatch):
    """The README's hand-mapping command: before the fix it resolved to data/lake/sample, dataset sample."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "day1.csv").write_text("customer,product_id,ts\n")
    args = parser().parse_args(["run", "--input", "logs/", "--set", "ingest.preset=null",
                                "--set", "ingest.mapping.user_id=customer", "--set", "ingest.mapping.item_id=product_id"])
    config = build_config(args)
    assert config.dataset == "logs" and config.lake == tmp_path / "data" / "lake" / "logs"
    preset = build_config(parser().parse_args(["run", "--preset", "sample", "--input", "logs"]))
    assert preset.dataset == "logs"  # --preset sample names no dataset: the input does
    assert build_config(parser().parse_args(["run"])).dataset == "sample"  # no arguments: the sample
    assert not (tmp_path / "data").exists()


def test_a_dataset_that_cannot_be_inferred_exits_2_naming_dataset(tmp_path):
    result = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--input", "/", "--set", "ingest.preset=null"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(PROJECT_ROOT)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "dataset: cannot take a dataset name from ingest.input '/'" in result.stdout
    assert not (tmp_path / "data").exists()
