"""The train stage: fit every model named in the config on data loaded once, and store each under ``models/``.

``load_training_inputs`` reads the graph stage's transition table, item statistics and catalogue,
the walks and the validation pairs into memory (``TrainingInputs``); ``train_models`` hands them to
each model's ``fit`` with that model's own params, so no model reads a file.

Cores (``train.threads``, ``train.parallel_models``; measured in ``benchmarks/threads.py``): by default
the listed models are fitted in parallel processes (this one and workers), one thread each, as many
at a time as there are cores, the longest first, each process taking the next fit when it is free.
Each fit is single-threaded and seeded, so the tables are those of a serial one-thread run on any
machine. Intra-op threads pay off little here: gensim's workers scale but race
(Hogwild, not reproducible), and the PyTorch models' per-batch ops are too small to split (2 threads
ran 0.4-1.1x the speed of one on the sample). Worker processes start with ``OMP_WAIT_POLICY=PASSIVE``:
OpenMP's default spin-waiting threads made a 2-thread PyTorch fit up to 20x slower on a busy machine.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow.parquet as pq

from recsys.catalog import CATALOG_FILE, Catalog, build_catalog
from recsys.lake import PAIRS_FILE, read_walks, replace_dir, temporary_sibling
from recsys.models import REGISTRY, model_class, spec_of
from recsys.models.base import Model, TrainingInputs, ValidationPairs, no_progress
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

    def models_by_name(self) -> dict[str, TrainedModel]:
        return {m.name: m for m in self.models}


@dataclass(frozen=True)
class Parallelism:
    """How the train stage spreads over cores: ``workers`` models fitted at once, each in its own
    process (1: in this process, one after another), each fit on ``threads`` threads."""

    workers: int = 1
    threads: int = 1


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parallelism(threads: int | str, parallel_models: bool, n_models: int) -> Parallelism:
    """``train.threads`` (auto: every available core) spread over the models (``parallel_models``: one
    process per model, one thread each) or given to each fit in turn."""
    cores = available_cores() if threads == "auto" else int(threads)
    if parallel_models:
        return Parallelism(workers=max(1, min(cores, n_models)), threads=1)
    return Parallelism(workers=1, threads=max(1, cores))


def training_threads(deterministic: bool | None) -> int:
    """Threads of one fit under the old ``train.deterministic`` (None, its new default: one thread per fit)."""
    return available_cores() if deterministic is False else 1


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
                 folder_of: Callable[[str], Path], progress: Progress | None = None,
                 parallel: Parallelism | None = None) -> TrainResult:
    """Fit each model with ``params_for(name)``; save it (atomically) to ``folder_of(name)``. Without
    ``parallel`` (or with one worker and one thread) in this process with ``inputs.threads`` threads;
    else in worker processes (``fit_in_workers``)."""
    if parallel is not None and (parallel.workers > 1 or parallel.threads > 1):
        return fit_in_workers(models, params_for, replace(inputs, threads=parallel.threads), folder_of, progress,
                              parallel.workers)
    trained = []
    for name in models:
        if progress is not None:
            inputs.progress = lambda done, total, name=name: progress(name, done, total)
        trained.append(fit_and_save(name, params_for(name), inputs, folder_of(name)))
        if progress is not None:
            progress(name, 1, 1)
    return TrainResult(tuple(trained))


def fit_and_save(name: str, params: Any, inputs: TrainingInputs, folder: Path) -> TrainedModel:
    """One model fitted on ``inputs`` and saved to ``folder``, with what the report needs of it."""
    started = time.perf_counter()
    model = model_class(name).fit(inputs, params)
    seconds = time.perf_counter() - started
    save_model(model, folder)
    log.info("train: %s fitted in %.1f s (%d thread(s)) -> %s", name, seconds, inputs.threads, folder)
    meta = getattr(model, "meta", {})
    return TrainedModel(name, str(folder), round(seconds, 3), tuple(sorted(model.serves)),
                        tuple(meta.get("curve") or ()), tuple(meta.get("warnings") or ()))


def fit_in_workers(models: tuple[str, ...], params_for: Callable[[str], Any], inputs: TrainingInputs,
                   folder_of: Callable[[str], Path], progress: Progress | None, workers: int) -> TrainResult:
    """Fit ``workers`` models at a time, each with ``inputs.threads`` threads; results in the listed
    order. The models are those of ``train_models`` in one process with the same threads: a fit
    depends only on its inputs, params and seed. Fresh (spawned) worker processes, given the inputs once,
    take the queued models one at a time (a worker pays ~6 s of imports before it starts);
    single-threaded, this process takes them too, the longest first (``fit_from_one_queue``). A
    multi-threaded fit always runs in a worker, whose OpenMP threads do not spin (``worker_environment``)."""
    queued = queue_order(models)
    here = inputs.threads == 1
    slots = max(1, min(workers - here, len(queued) - here))
    shipped = replace(inputs, progress=no_progress)  # a callback of this process does not cross to a worker
    with worker_environment(inputs.threads), ProcessPoolExecutor(
            max_workers=slots, mp_context=multiprocessing.get_context("spawn"),
            initializer=_receive_inputs, initargs=(shipped,)) as pool:

        def fit_away(name: str) -> TrainedModel:
            return pool.submit(_fit_received, name, params_for(name), folder_of(name)).result()

        def fit_here(name: str) -> TrainedModel:
            return train_models((name,), params_for, inputs, folder_of, progress).models[0]

        trained, away = fit_from_one_queue(queued, fit_away, slots, fit_here if here else None)
    if progress is not None:
        for name in away:
            progress(name, 1, 1)
    return TrainResult(tuple(trained[name] for name in models))


def fit_from_one_queue(queued: list[str], fit_away: Callable[[str], TrainedModel], slots: int,
                       fit_here: Callable[[str], TrainedModel] | None = None) -> tuple[dict[str, TrainedModel], list[str]]:
    """Fit the ``queued`` models in queue order by whichever is free: ``slots`` threads that each hand one
    fit at a time to ``fit_away`` (the worker pool) and, with ``fit_here``, this thread, which takes the
    first model. ``ProcessPoolExecutor`` moves queued calls to its workers ahead of time, so with every
    model submitted at once item_knn waited 44 s behind word2vec at 10M events while this process sat
    idle after LightGCN. Returns the fits and the names fitted away, in the order they ended; after
    every started fit has ended, raises the first failure (no new fit starts once one has failed)."""
    pending, lock = deque(queued), threading.Lock()
    trained: dict[str, TrainedModel] = {}
    away: list[str] = []
    failures: list[BaseException] = []

    def claim() -> str | None:
        with lock:
            return pending.popleft() if pending and not failures else None

    def fit(name: str, how: Callable[[str], TrainedModel], fitted_away: bool) -> None:
        try:
            model = how(name)
        except BaseException as error:  # noqa: BLE001 - re-raised below, once the other fits have ended
            with lock:
                failures.append(error)
            return
        with lock:
            trained[name] = model
            if fitted_away:
                away.append(name)

    def feed() -> None:
        while (name := claim()) is not None:
            fit(name, fit_away, True)

    name = claim() if fit_here is not None else None  # the longest fit, before a feeder can take it
    feeders = [threading.Thread(target=feed, name=f"fit-feeder-{i}", daemon=True) for i in range(slots)]
    for feeder in feeders:
        feeder.start()
    while name is not None:
        fit(name, fit_here, False)
        name = claim()
    for feeder in feeders:
        feeder.join()
    if failures:
        raise failures[0]
    return trained, away


def queue_order(models: tuple[str, ...]) -> list[str]:
    """The longest fits first, so none is left to run alone at the end: on the sample the user-to-item
    and sequence models trained longest (lightgcn, ngcf, neumf, gru4rec: 20-150 s), the item
    embeddings next (5-16 s) and the baselines took under a second (benchmarks/threads.py)."""
    return sorted(models, key=lambda name: (REGISTRY[name].baseline, "user_to_item" not in REGISTRY[name].tables))


@contextmanager
def worker_environment(threads: int) -> Iterator[None]:
    """The environment worker processes start with: OpenMP/MKL sized to ``threads`` and OpenMP threads
    that sleep when idle instead of spinning (spinning threads stall a busy machine's other fits)."""
    settings = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    before = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_RECEIVED: list[TrainingInputs] = []  # in a worker process: the inputs it was started with


def _receive_inputs(inputs: TrainingInputs) -> None:
    _RECEIVED[:] = [inputs]


def _fit_received(name: str, params: Any, folder: Path) -> TrainedModel:
    return fit_and_save(name, params, _RECEIVED[0], folder)


def save_model(model: Model, folder: Path) -> Path:
    staging = temporary_sibling(folder, "staging")
    model.save(staging)
    replace_dir(staging, folder)
    return folder


def load_model(name: str, folder: Path, inputs: TrainingInputs) -> Model:
    spec_of(name)
    return model_class(name).load(Path(folder), inputs)
