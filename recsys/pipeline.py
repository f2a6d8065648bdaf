"""Stage entry points: each takes the config (and the run plan) and returns a small typed result.

These are what ``tasks/`` wraps and what tests call without Prefect. Each reads its inputs from the
lake and writes its outputs to the lake, so any stage can be re-run alone. Each also records its
counts under ``runs/<run_id>/stages/`` for the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from recsys.config import PipelineConfig
from recsys.evaluate import EvaluateResult, metrics_table, pick_champion, score_model, write_metrics
from recsys.graph import GraphResult, ValidationSplit, build_graph
from recsys.holdout import HoldoutResult, build_holdout, build_validation, load_holdout
from recsys.ingest import IngestResult, ingest
from recsys.lake import Lake, LakeLock, RunPaths, remove_leftovers, write_json_atomic, write_text_atomic
from recsys.models import WITH_CURVES
from recsys.models.base import TrainingInputs
from recsys.publish import PublishResult, item_to_item_table, publish_item_to_item
from recsys.report import write_report
from recsys.spark import spark_session
from recsys.timewindow import TimeWindow, resolve_window
from recsys.train import TrainResult, load_model, train_models, training_threads
from recsys.transition import TransitionTable
from recsys.walks import WalksResult, generate_walks

log = logging.getLogger(__name__)

# Where things are and how Spark runs do not change what a run computes: they stay out of the run id,
# so the same data and settings give the same run id (and table contents) in any checkout or cluster.
_NOT_IN_RUN_ID = {"lake": True, "spark": True, "cache": True, "ingest": {"input": True, "items_input": True}}
CODE_ROOTS = (Path(__file__).resolve().parent,)


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    run_date: str
    train_from: str
    train_until: str
    test_from: str
    run_dir: str

    @property
    def window(self) -> TimeWindow:
        return TimeWindow(dt.date.fromisoformat(self.train_from), dt.date.fromisoformat(self.test_from),
                          dt.date.fromisoformat(self.run_date))

    @property
    def paths(self) -> RunPaths:
        return RunPaths(Path(self.run_dir))


def config_digest(config: PipelineConfig) -> str:
    settings = config.model_dump(mode="json", exclude=_NOT_IN_RUN_ID)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def plan_run(config: PipelineConfig) -> RunPlan:
    """The run's id and window. Same run date and settings -> same id (so a re-run replaces, not adds)."""
    lake = Lake(config.lake)
    window = resolve_window(config.window, lake)
    run_id = f"{window.run_date:%Y%m%d}-{config_digest(config)}"
    return RunPlan(run_id, str(window.run_date), str(window.train_from), str(window.train_until),
                   str(window.test_from), str(lake.run(run_id).root))


@contextlib.contextmanager
def exclusive_lake(config: PipelineConfig):
    """Hold the lake's run lock for a whole run, after removing what an interrupted run left behind."""
    with LakeLock(config.lake):
        remove_leftovers(config.lake)
        yield


def stage_inputs(config: PipelineConfig, plan: RunPlan, stage: str) -> list[Path]:
    """The files and folders a stage reads: what its cache key fingerprints."""
    lake, run = Lake(config.lake), plan.paths
    window_days = [lake.events / f"event_date={d}" for d in _days(plan.train_from, plan.run_date)]
    return {
        "graph": window_days + [lake.items],
        "walks": [run.graph],
        # the validation pairs the train stage builds come from held-out sessions of the training days:
        # those days are the graph stage's inputs, so a change there rewrites the graph, and the key changes
        "train": [run.graph, run.walks],
        "evaluate": window_days + [run.graph, run.root / "models"],
        "publish": [run.graph, run.root / "models", run.metrics],
    }[stage]


def stage_cache_key(config: PipelineConfig, plan: RunPlan, stage: str) -> str | None:
    """Same code, settings, run and input files (names, sizes, modification times) -> same key.

    None (never cached) when ``config.cache`` is off.
    """
    if not config.cache:
        return None
    digest = hashlib.sha256()
    for part in (stage, code_digest(), json.dumps(dataclasses.asdict(plan), sort_keys=True), str(config.lake),
                 config.model_dump_json(exclude={"spark"})):
        digest.update(part.encode() + b"\0")
    for path in stage_inputs(config, plan, stage):
        digest.update(_files_fingerprint(path).encode())
    return f"{stage}-{digest.hexdigest()[:32]}"


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of the library's source: a code change invalidates every cached stage."""
    digest = hashlib.sha256()
    for root in CODE_ROOTS:
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def _files_fingerprint(path: Path) -> str:
    if path.is_file():
        stat = path.stat()
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns};"
    if not path.is_dir():
        return f"{path}:absent;"
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return "".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns};" for p in files)


def _days(first: str, last: str) -> list[dt.date]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def record_ingest(plan: RunPlan, result: IngestResult) -> None:
    """Keep the night's ingest accounting with the run, for its report."""
    _record(plan, "ingest", result)


def _record(plan: RunPlan, stage: str, result: object) -> None:
    write_json_atomic(dataclasses.asdict(result), plan.paths.root / "stages" / f"{stage}.json")


def _recorded(plan: RunPlan) -> dict[str, dict]:
    folder = plan.paths.root / "stages"
    order = ["ingest", "graph", "walks", "validation", "train", "holdout"]
    found = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")} if folder.exists() else {}
    return {k: _flat(found[k]) for k in order if k in found}


def _flat(record: dict) -> dict:
    if "models" in record:  # the train stage: seconds per model
        return {m["name"]: f"{m['seconds']:.1f} s" for m in record["models"]}
    return {k: v for k, v in record.items() if not isinstance(v, (list, dict)) and not k.endswith("path")}


def run_ingest(config: PipelineConfig, now: dt.datetime | None = None) -> IngestResult:
    return ingest(spark_session(config.spark), config.ingest, Lake(config.lake), now)


def _wants_curves(config: PipelineConfig) -> bool:
    return config.evaluate.validation_share > 0 and any(m in WITH_CURVES for m in config.train.models)


def validation_split(config: PipelineConfig, plan: RunPlan) -> ValidationSplit | None:
    """The sessions held out of training for learning curves: None unless a PyTorch model is listed."""
    if not _wants_curves(config):
        return None
    window = plan.window
    first = max(window.train_from, window.train_until - dt.timedelta(days=config.evaluate.validation_days - 1))
    return ValidationSplit(first, window.train_until, config.evaluate.validation_share, config.seed)


def run_graph(config: PipelineConfig, plan: RunPlan) -> GraphResult:
    result = build_graph(spark_session(config.spark), config.graph, Lake(config.lake), plan.window, plan.paths.graph,
                         validation_split(config, plan))
    _record(plan, "graph", result)
    return result


def run_walks(config: PipelineConfig, plan: RunPlan) -> WalksResult:
    table = TransitionTable.load(plan.paths.graph)
    log.info("walks: read the transition table (%d nodes, %d edges, %.1f MiB of arrays) from %s", table.n_nodes,
             table.n_edges, table.nbytes() / 2**20, plan.paths.graph)
    result = generate_walks(spark_session(config.spark), table, config.walks, config.seed, plan.paths.walks)
    _record(plan, "walks", result)
    return result


def training_inputs(config: PipelineConfig, plan: RunPlan) -> TrainingInputs:
    validation = plan.paths.root / "validation"
    return TrainingInputs(graph_dir=plan.paths.graph, walks_dir=plan.paths.walks, work_dir=plan.paths.root / "work",
                          seed=config.seed, threads=training_threads(config.train),
                          validation_dir=validation if _wants_curves(config) else None)


def run_train(config: PipelineConfig, plan: RunPlan) -> TrainResult:
    log.info("train: models %s from the walks at %s and the graph at %s", ", ".join(config.train.models),
             plan.paths.walks, plan.paths.graph)
    inputs = training_inputs(config, plan)
    split = validation_split(config, plan)
    if split is not None:
        _record(plan, "validation", build_validation(
            spark_session(config.spark), Lake(config.lake), plan.window, config.graph, split,
            config.evaluate.validation_pairs, inputs.catalog, plan.paths.graph, config.seed, inputs.validation_dir))
    result = train_models(config.train, inputs, plan.paths.root / "models")
    shutil.rmtree(plan.paths.root / "work", ignore_errors=True)
    _record(plan, "train", result)
    return result


def run_evaluate(config: PipelineConfig, plan: RunPlan) -> EvaluateResult:
    inputs = training_inputs(config, plan)
    holdout_result: HoldoutResult = build_holdout(
        spark_session(config.spark), Lake(config.lake), plan.window, config.graph, config.evaluate, inputs.catalog,
        config.seed, plan.paths.holdout)
    _record(plan, "holdout", holdout_result)
    holdout = load_holdout(plan.paths.holdout)
    trained = {m["name"]: m for m in json.loads((plan.paths.root / "stages" / "train.json").read_text())["models"]}
    scores, curves = [], {}
    for name in config.train.models:
        model = load_model(name, Path(trained[name]["path"]), inputs)
        scores.append(score_model(model, holdout, config.evaluate.k))
        curves[name] = getattr(model, "meta", {}).get("curve")
        log.info("evaluate: %s AUC %.4f (seen %.4f, cold %.4f), HitRate@%d %.4f", name, scores[-1].auc,
                 scores[-1].auc_seen, scores[-1].auc_cold, config.evaluate.k, scores[-1].hit_rate)
    context = {"run_id": plan.run_id, "dataset": config.dataset, "seed": config.seed, "train_from": plan.train_from,
               "train_until": plan.train_until, "test_from": plan.test_from, "test_until": plan.run_date}
    metrics = metrics_table(scores, holdout, context, config.evaluate.k, {n: m["seconds"] for n, m in trained.items()})
    write_metrics(metrics, plan.paths.metrics)
    champion = pick_champion(metrics, config.publish.champion_metric)
    write_report(plan.paths.report, metrics, scores, context, champion, config.publish.champion_metric, _recorded(plan),
                 {n: c for n, c in curves.items() if c})
    log.info("evaluate: champion by %s is %s; metrics at %s, report at %s", config.publish.champion_metric,
             champion, plan.paths.metrics, plan.paths.report)
    return EvaluateResult(str(plan.paths.metrics), str(plan.paths.report), champion, tuple(metrics.to_pylist()))


def run_publish(config: PipelineConfig, plan: RunPlan, evaluation: EvaluateResult) -> PublishResult:
    inputs = training_inputs(config, plan)
    champion = evaluation.champion
    log.info("publish: top-%d of %s from %s", config.publish.top_n, champion, plan.paths.model(champion))
    model = load_model(champion, plan.paths.model(champion), inputs)
    recs = item_to_item_table(model, inputs.catalog, config.publish.top_n, plan.run_id)
    row = next(r for r in evaluation.rows if r["model"] == champion)
    # NaN (e.g. no seen pairs) is not valid JSON for the services that read _LATEST: write null
    headline = {m: (None if math.isnan(row[m]) else row[m]) for m in ("auc", "auc_seen", "auc_cold", "hit_rate")}
    result = publish_item_to_item(Lake(config.lake), recs, plan.run_date, plan.run_id, champion, headline,
                                  config.publish.champion_metric, config.publish.tolerance, config.publish.retention)
    _append_publication(plan, result)
    return result


def _append_publication(plan: RunPlan, result: PublishResult) -> None:
    """Say in the run's report what publishing did, and why not when it refused."""
    if result.published:
        text = f"Published `{result.table}` from **{result.model}**: {result.rows} rows for {result.items} items at `{result.path}`."
    else:
        text = f"**Nothing published**: {result.reason}. `_LATEST` still names the previous version."
    report = plan.paths.report
    write_text_atomic(report.read_text().split("\n## Publication\n")[0] + f"\n## Publication\n\n{text}\n", report)
