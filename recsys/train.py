"""The train stage: fit every model named in the config on data loaded once, and store each under ``models/``.

``load_training_inputs`` reads the graph stage's transition table, item statistics and catalogue,
the walks and the validation pairs into memory (``TrainingInputs``); ``train_models`` hands them to
each model's ``fit`` with that model's own params, so no model reads a file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow.parquet as pq

from recsys.catalog import CATALOG_FILE, Catalog, build_catalog
from recsys.lake import PAIRS_FILE, read_walks, replace_dir, temporary_sibling
from recsys.models import model_class, spec_of
from recsys.models.base import Model, TrainingInputs, ValidationPairs
from recsys.sequences import has_sequences, load_sequences
from recsys.transition import TransitionTable, load_item_stats

if TYPE_CHECKING:
    from recsys.interactions import Interactions

log = logging.getLogger(__name__)


class UserMatrixSettings(Protocol):
    """What ``load_user_matrix`` reads of ``recsys.config.InteractionsConfig``."""

    weighting: str
    min_user_events: int
    min_item_events: int
    validation_min_items: int

Progress = Callable[[str, int, int], None]  # (model, epochs done, epochs in all)


@dataclass(frozen=True)
class TrainedModel:
    name: str
    path: str
    seconds: float
    serves: tuple[str, ...] = ()
    curve: tuple[dict, ...] = ()  # validation AUC and loss per epoch (PyTorch models)
    warnings: tuple[str, ...] = ()  # what the model found lacking in its inputs (meta["warnings"]), for the report


@dataclass(frozen=True)
class TrainResult:
    models: tuple[TrainedModel, ...]

    def model(self, name: str) -> TrainedModel:
        return next(m for m in self.models if m.name == name)


def training_threads(deterministic: bool) -> int:
    return 1 if deterministic else (os.cpu_count() or 1)


def read_validation_pairs(folder: Path | None) -> ValidationPairs | None:
    """The validation pairs written by ``recsys.holdout.build_validation`` into ``folder``, if any."""
    if folder is None or not (Path(folder) / PAIRS_FILE).exists():
        return None
    pairs = pq.read_table(Path(folder) / PAIRS_FILE)
    return ValidationPairs(pairs.column("a").to_numpy(), pairs.column("b").to_numpy(), pairs.column("label").to_numpy())


def load_training_inputs(graph_dir: Path, walks_dir: Path | None = None, validation_dir: Path | None = None,
                         seed: int = 0, threads: int = 1, users: UserMatrixSettings | None = None,
                         device: str = "cpu") -> TrainingInputs:
    """Everything a model may train on, read once; walks only when ``walks_dir`` is given, the user x
    item matrix only when ``users`` is (``load_user_matrix``), the sequences when the graph stage wrote them."""
    table = TransitionTable.load(graph_dir)
    catalog = Catalog.load(graph_dir) if (graph_dir / CATALOG_FILE).exists() else build_catalog(table, None)
    walks = read_walks(walks_dir).combine_chunks() if walks_dir is not None else None
    inputs = TrainingInputs(table=table, catalog=catalog, item_stats=load_item_stats(graph_dir), walks=walks,
                            validation=read_validation_pairs(validation_dir), seed=seed, threads=threads, device=device)
    if users is not None:
        inputs.interactions, inputs.user_validation, inputs.user_history = load_user_matrix(graph_dir, users)
    if has_sequences(graph_dir):
        inputs.sequences = load_sequences(graph_dir)
    return inputs


def load_user_matrix(graph_dir: Path, users: UserMatrixSettings) -> tuple[Interactions, Interactions | None, Interactions]:
    """``(train, validation, history)`` of the user x item matrix the graph stage stored: filtered as
    ``users`` says, then (when ``users.validation_min_items`` > 0) each qualifying user's latest item
    held out of ``train`` for the learning curves; ``history`` is both. Deterministic: every stage that
    loads it gets the same indices."""
    from recsys.interactions import load_user_items
    from recsys.models.user_curves import hold_out_latest

    stored, dropped = load_user_items(graph_dir, users.weighting, users.min_user_events, users.min_item_events)
    if dropped.users or dropped.items:
        log.info("user x item matrix: min_user_events %d / min_item_events %d left out %d users, %d items, "
                 "%d interactions", users.min_user_events, users.min_item_events, dropped.users, dropped.items,
                 dropped.interactions)
    if not users.validation_min_items:
        return stored.matrix, None, stored.matrix
    train, held_out = hold_out_latest(stored.matrix, stored.last_seen, users.validation_min_items)
    return train, held_out, stored.matrix


def resolve_device(setting: str) -> str:
    """``train.device``: ``auto`` is cuda when PyTorch sees a GPU, else cpu; ``cuda`` without one fails here."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but PyTorch sees no GPU (torch.cuda.is_available() is False)")
    return setting


def train_models(models: tuple[str, ...], params_for: Callable[[str], Any], inputs: TrainingInputs,
                 folder_of: Callable[[str], Path], progress: Progress | None = None) -> TrainResult:
    """Fit each model with ``params_for(name)``; save it (atomically) to ``folder_of(name)``."""
    trained = []
    for name in models:
        started = time.perf_counter()
        if progress is not None:
            inputs.progress = lambda done, total, name=name: progress(name, done, total)
        model = model_class(name).fit(inputs, params_for(name))
        seconds = time.perf_counter() - started
        folder = save_model(model, folder_of(name))
        log.info("train: %s fitted in %.1f s (%d thread(s)) -> %s", name, seconds, inputs.threads, folder)
        meta = getattr(model, "meta", {})
        trained.append(TrainedModel(name, str(folder), round(seconds, 3), tuple(sorted(model.serves)),
                                    tuple(meta.get("curve") or ()), tuple(meta.get("warnings") or ())))
        if progress is not None:
            progress(name, 1, 1)
    return TrainResult(tuple(trained))


def save_model(model: Model, folder: Path) -> Path:
    staging = temporary_sibling(folder, "staging")
    model.save(staging)
    replace_dir(staging, folder)
    return folder


def load_model(name: str, folder: Path, inputs: TrainingInputs) -> Model:
    spec_of(name)
    return model_class(name).load(Path(folder), inputs)
