"""Run ids: the same settings give the same id wherever the data and lake live."""

import shutil

from recsys.config import PipelineConfig
from recsys.pipeline import config_digest
from tests.conftest import SAMPLE


def test_run_id_ignores_locations_but_not_settings(tmp_path):
    shutil.copy(SAMPLE / "events.csv.gz", tmp_path / "events.csv.gz")
    here = PipelineConfig()
    elsewhere = PipelineConfig.model_validate({"lake": str(tmp_path / "lake"), "spark": {"master": "local[1]"},
                                               "ingest": {"input": str(tmp_path / "events.csv.gz"), "items_input": None}})
    assert config_digest(here) == config_digest(elsewhere)
    assert config_digest(here) != config_digest(here.model_copy(update={"seed": 1}))
    assert config_digest(here) != config_digest(PipelineConfig.model_validate({"walks": {"walk_length": 30}}))
