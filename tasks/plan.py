"""The run plan: the run's id, window, folder and validation split, decided once per run from the config and the lake.

The run id is the run date and a digest of the settings that change what a run computes: where the
data and the lake live, what the dataset is called (by default the input's name) and how Spark runs
stay out of it, so the same data and settings give the same run id (and table contents) in any
checkout or cluster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from recsys.config import PipelineConfig
from recsys.graph import ValidationSplit
from recsys.lake import Lake, RunPaths
from recsys.timewindow import TimeWindow, resolve_window

log = logging.getLogger("recsys.plan")  # a library logger, so the line reaches the run's Prefect logs

_NOT_IN_RUN_ID = {"lake": True, "dataset": True, "spark": True, "cache": True,
                  "ingest": {"input": True, "items_input": True}}


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    run_date: str
    train_from: str
    train_until: str
    test_from: str
    run_dir: str
    lake: str
    dataset: str
    seed: int
    cache: bool = True
    validation: ValidationSplit | None = None  # sessions held out of training for learning curves
    run_date_note: str = ""  # why the newest event day is not the run date (window.run_date_rule), or ""

    @property
    def window(self) -> TimeWindow:
        return TimeWindow(dt.date.fromisoformat(self.train_from), dt.date.fromisoformat(self.test_from),
                          dt.date.fromisoformat(self.run_date))

    @property
    def paths(self) -> RunPaths:
        return RunPaths(Path(self.run_dir))

    def context(self) -> dict:
        """What every reported figure is labelled with."""
        return {"run_id": self.run_id, "dataset": self.dataset, "seed": self.seed, "train_from": self.train_from,
                "train_until": self.train_until, "test_from": self.test_from, "test_until": self.run_date}


def config_digest(config: PipelineConfig) -> str:
    settings = config.model_dump(mode="json", exclude=_NOT_IN_RUN_ID)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


MIN_TRAIN_DAYS_PER_VALIDATION_DAY = 2  # validation sessions come from at most half of the training days


def validation_split(config: PipelineConfig, window: TimeWindow) -> ValidationSplit | None:
    """The sessions held out of training for learning curves: None unless a listed model records them."""
    if not config.curves_wanted():
        return None
    days = (window.train_until - window.train_from).days + 1
    if days < MIN_TRAIN_DAYS_PER_VALIDATION_DAY * config.evaluate.validation_days:
        log.warning("validation: the training window has %d day(s), under %d x evaluate.validation_days (%d): no "
                    "sessions held out, so the learning curves and early stopping of the item models are off", days,
                    MIN_TRAIN_DAYS_PER_VALIDATION_DAY, config.evaluate.validation_days)
        return None
    first = max(window.train_from, window.train_until - dt.timedelta(days=config.evaluate.validation_days - 1))
    return ValidationSplit(first, window.train_until, config.evaluate.validation_share, config.seed)


def plan_run(config: PipelineConfig) -> RunPlan:
    """The run's id and window. Same run date and settings -> same id (so a re-run replaces, not adds)."""
    lake = Lake(config.lake)
    window = resolve_window(config.window, lake)
    run_id = f"{window.run_date:%Y%m%d}-{config_digest(config)}"
    return RunPlan(run_id, str(window.run_date), str(window.train_from), str(window.train_until), str(window.test_from),
                   str(lake.run(run_id).root), str(config.lake), config.dataset, config.seed, config.cache,
                   validation_split(config, window), window.note)
