"""How the train stage uses cores (recsys/train.py): models fitted in parallel worker processes give
the same saved models and top-N as one after another; each fit honours its thread count (torch's
intra-op threads, gensim's workers) and leaves torch's global thread count as it found it; the
``train.threads`` / ``train.parallel_models`` settings and the old ``train.deterministic``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from recsys.catalog import build_catalog
from recsys.config import TrainConfig, WalksConfig
from recsys.interactions import Interactions
from recsys.models import model_class
from recsys.models.base import TrainingInputs
from recsys.models.params import LightGCNParams, MFBPRParams, SkipGramParams, Word2VecParams
from recsys.models.word2vec import train_word2vec
from recsys.train import (Parallelism, TrainedModel, available_cores, fit_from_one_queue, load_model, parallelism,
                          train_models, training_threads)
from recsys.transition import TransitionTable
from recsys.walks import generate_walks_local


def _two_cliques(size: int = 6) -> TransitionTable:
    edges = [(a, b) for g in (0, size) for a in range(g, g + size) for b in range(g, g + size) if a != b]
    ids = np.array([f"i{n:02d}" for n in range(2 * size)], dtype=object)
    return TransitionTable.from_edges(ids, np.array([e[0] for e in edges]), np.array([e[1] for e in edges]),
                                      np.ones(len(edges)))


def _tiny_inputs(threads: int = 1) -> TrainingInputs:
    """Two cliques of items as walks, and users who each stay within one clique."""
    table = _two_cliques()
    walks = generate_walks_local(table, WalksConfig(walks_per_node=10, walk_length=10), seed=1)
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(20), 4)
    items = (users % 2) * 6 + rng.integers(0, 6, len(users))
    inputs = TrainingInputs(table, build_catalog(table, None), pa.table({"item_id": table.item_ids.tolist(), "events": [1] * 12}),
                            walks.column("walk").combine_chunks(), seed=7, threads=threads)
    inputs.interactions = Interactions.from_indices(users, items, n_users=20, n_items=12)
    return inputs


def _threads_seen_by(name: str, params, threads: int) -> set[int]:
    """torch's intra-op thread count at the end of every epoch of a real fit (the progress callback runs inside it)."""
    seen: set[int] = set()
    inputs = _tiny_inputs(threads)
    inputs.progress = lambda done, total: seen.add(torch.get_num_threads())
    model_class(name).fit(inputs, params)
    return seen


TORCH_MODELS = [("skipgram", SkipGramParams(epochs=2, vector_size=8)), ("mf_bpr", MFBPRParams(epochs=2, dim=8)),
                ("lightgcn", LightGCNParams(epochs=2, dim=8))]


@pytest.mark.parametrize("name,params", TORCH_MODELS, ids=[n for n, _ in TORCH_MODELS])
def test_a_pytorch_fit_runs_on_its_threads_and_restores_the_global_count(name, params):
    before = torch.get_num_threads()
    other = 3 if before != 3 else 2
    assert _threads_seen_by(name, params, other) == {other}
    assert torch.get_num_threads() == before
    assert _threads_seen_by(name, params, 1) == {1}
    assert torch.get_num_threads() == before


def test_the_global_thread_count_is_restored_when_a_fit_fails():
    before = torch.get_num_threads()
    inputs = _tiny_inputs(threads=before + 1)
    inputs.progress = lambda done, total: (_ for _ in ()).throw(RuntimeError("stopped in epoch 1"))
    with pytest.raises(RuntimeError, match="stopped in epoch 1"):
        model_class("mf_bpr").fit(inputs, MFBPRParams(epochs=2, dim=8))
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("threads", [1, 2])
def test_gensim_trains_with_as_many_workers_as_threads(threads):
    model = train_word2vec(_tiny_inputs().walks, Word2VecParams(vector_size=8, epochs=1), threads, seed=1)
    assert model.workers == threads


def test_parallelism_spreads_the_cores_over_models_or_over_one_fit():
    assert parallelism(2, True, 4) == Parallelism(workers=2, threads=1)
    assert parallelism(8, True, 4) == Parallelism(workers=4, threads=1)  # no more processes than models
    assert parallelism(8, False, 4) == Parallelism(workers=1, threads=8)
    assert parallelism(1, True, 4) == Parallelism(workers=1, threads=1)
    assert parallelism("auto", True, 100).workers == available_cores()


def test_train_settings_default_to_every_core_one_thread_per_model_and_accept_the_old_deterministic():
    default = TrainConfig()
    assert (default.threads, default.parallel_models) == ("auto", True)
    assert training_threads(default.deterministic) == 1
    old_true, old_false = TrainConfig(deterministic=True), TrainConfig(deterministic=False)
    assert (old_true.threads, old_true.parallel_models) == (1, False)
    assert (old_false.threads, old_false.parallel_models) == ("auto", False)
    assert TrainConfig(deterministic=False, threads=1).threads == 1  # the new settings win when given
    assert TrainConfig.model_validate({"threads": "3"}).threads == 3
    with pytest.raises(ValueError, match="threads"):
        TrainConfig(threads=0)


def _without_times(value):
    """JSON metadata with every ``seconds`` entry (wall-clock time, e.g. per curve epoch) left out."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _saved(folder: Path) -> dict[str, object]:
    """A saved model's arrays and metadata (fit times left out)."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".npy":
            files[path.name] = np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            files[path.name] = _without_times(json.loads(path.read_text()))
    return files


def _assert_same_models(names, first: Path, second: Path, inputs: TrainingInputs, top_n: int = 10) -> None:
    for name in names:
        a, b = _saved(first / name), _saved(second / name)
        assert a.keys() == b.keys() and a, name
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert np.array_equal(a[key], b[key]), (name, key)
            else:
                assert a[key] == b[key], (name, key)
        assert np.array_equal(_top_n(load_model(name, first / name, inputs), inputs, top_n),
                              _top_n(load_model(name, second / name, inputs), inputs, top_n)), name


def _top_n(model, inputs: TrainingInputs, n: int) -> np.ndarray:
    """Every item's top-N neighbours (an item-to-item model), else the first 256 users' top-N items by score."""
    if "item_to_item" in model.serves:
        return model.similar(np.arange(inputs.table.n_nodes), n)[0]
    scores = model.user_scores(np.arange(min(inputs.interactions.n_users, 256)))
    return np.argsort(-scores, axis=1, kind="stable")[:, :n]


def test_models_fitted_in_two_worker_processes_equal_those_fitted_one_after_another(tmp_path):
    names = ("word2vec", "popular", "skipgram", "mf_bpr")
    config = TrainConfig(word2vec=Word2VecParams(vector_size=8, epochs=2), skipgram=SkipGramParams(epochs=2, vector_size=8),
                         mf_bpr=MFBPRParams(epochs=2, dim=8))
    serial = train_models(names, config.params_for, _tiny_inputs(), lambda n: tmp_path / "serial" / n)
    reported = []
    parallel = train_models(names, config.params_for, _tiny_inputs(), lambda n: tmp_path / "parallel" / n,
                            lambda name, done, total: reported.append((name, done == total)), Parallelism(workers=2, threads=1))
    assert [m.name for m in parallel.models] == list(names)  # listed order, whatever finished first
    assert {name for name, finished in reported if finished} == set(names)  # each model reported done
    assert [m.serves for m in parallel.models] == [m.serves for m in serial.models]
    _assert_same_models(names, tmp_path / "serial", tmp_path / "parallel", _tiny_inputs())


@pytest.mark.slow
def _fitted(name: str) -> TrainedModel:
    return TrainedModel(name, f"/models/{name}", 1.0, ("item_to_item",))


def _signalled(event: threading.Event) -> None:
    assert event.wait(timeout=60), "the other thread never signalled"


def test_this_process_takes_the_next_queued_fit_while_the_worker_is_busy():
    # lightgcn here; the worker takes word2vec and holds it until this process has fitted the rest: the
    # pool would have queued popular and item_knn behind word2vec
    worker_started, worker_may_end = threading.Event(), threading.Event()
    here = []

    def fit_away(name: str) -> TrainedModel:
        worker_started.set()
        _signalled(worker_may_end)
        return _fitted(name)

    def fit_here(name: str) -> TrainedModel:
        if name == "lightgcn":
            _signalled(worker_started)  # the worker has taken word2vec
        here.append(name)
        if name == "item_knn":
            worker_may_end.set()
        return _fitted(name)

    queued = ["lightgcn", "word2vec", "popular", "item_knn"]
    trained, away = fit_from_one_queue(queued, fit_away, 1, fit_here)
    assert here == ["lightgcn", "popular", "item_knn"] and away == ["word2vec"]
    assert {name: model.name for name, model in trained.items()} == {name: name for name in queued}

    everything_away, _ = fit_from_one_queue(queued, _fitted, 2)  # no fit_here: multi-threaded fits
    assert sorted(everything_away) == sorted(queued)


def test_a_failed_fit_stops_new_fits_and_is_raised_after_the_running_ones_end():
    failed, started = threading.Event(), []

    def fit_away(name: str) -> TrainedModel:
        started.append(name)
        failed.set()
        raise RuntimeError(f"{name} broke")

    def fit_here(name: str) -> TrainedModel:
        if name == "lightgcn":
            _signalled(failed)  # the worker has taken word2vec, and failed
        return _fitted(name)

    with pytest.raises(RuntimeError, match="word2vec broke"):
        fit_from_one_queue(["lightgcn", "word2vec", "popular", "item_knn"], fit_away, 1, fit_here)
    assert started == ["word2vec"]  # the feeder takes nothing after its failure


def test_a_failing_fit_in_a_worker_fails_the_stage(tmp_path):
    inputs = _tiny_inputs()
    inputs.walks = None  # word2vec needs walks
    with pytest.raises(ValueError, match="walks"):
        train_models(("popular", "word2vec"), TrainConfig().params_for, inputs, lambda n: tmp_path / n,
                     parallel=Parallelism(workers=2, threads=1))


@pytest.mark.slow
def test_default_models_on_the_sample_are_the_same_in_parallel_as_serial(spark, tmp_path_factory):
    from benchmarks.threads import prepare_sample, sample_inputs

    prepared = prepare_sample(tmp_path_factory.mktemp("threads-sample"), spark=spark)
    config = TrainConfig(word2vec=Word2VecParams(epochs=1), lightgcn=LightGCNParams(epochs=1))
    names, out = config.models, tmp_path_factory.mktemp("models")
    train_models(names, config.params_for, sample_inputs(prepared), lambda n: out / "serial" / n)
    cores = parallelism(2, config.parallel_models, len(names))
    assert cores == Parallelism(workers=2, threads=1)
    train_models(names, config.params_for, sample_inputs(prepared), lambda n: out / "parallel" / n, parallel=cores)
    _assert_same_models(names, out / "serial", out / "parallel", sample_inputs(prepared), top_n=20)
