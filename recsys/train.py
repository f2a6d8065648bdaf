"""The train stage: fit every model named in the config and store it under the run's ``models/``."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from recsys.config import TrainConfig
from recsys.faults import pause_point
from recsys.lake import replace_dir, temporary_sibling
from recsys.models import model_class
from recsys.models.base import ItemModel, TrainingInputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedModel:
    name: str
    path: str
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    models: tuple[TrainedModel, ...]


def training_threads(config: TrainConfig) -> int:
    return 1 if config.deterministic else (os.cpu_count() or 1)


def train_models(config: TrainConfig, inputs: TrainingInputs, models_dir: Path) -> TrainResult:
    trained = []
    for name in config.models:
        started = time.perf_counter()
        model = model_class(name).fit(inputs, config)
        seconds = time.perf_counter() - started
        folder = models_dir / name
        staging = temporary_sibling(folder, "staging")
        model.save(staging)
        replace_dir(staging, folder)
        pause_point("train")
        log.info("train: %s fitted in %.1f s (%d thread(s)) -> %s", name, seconds, inputs.threads, folder)
        trained.append(TrainedModel(name, str(folder), round(seconds, 3)))
    return TrainResult(tuple(trained))


def load_model(name: str, folder: Path, inputs: TrainingInputs) -> ItemModel:
    return model_class(name).load(folder, inputs)
