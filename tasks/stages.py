"""One Prefect task per stage: each calls the library's stage function with the typed results it
depends on, and adds what orchestration needs (caching, retries, logs, artifacts, progress).

Retries only where a failure can be transient and a retry is safe (writing the published table).
Caching: each stage declares what it reads (``tasks.cache``); graph, validation, walks and train are
keyed on their own settings and inputs, evaluate and publish also on the run id (their outputs name
the run). Ingest is never cached: its manifest already makes a re-run read no file twice, and it
must look for new files every night. ``config.cache: false`` turns caching off.
"""

from __future__ import annotations

import dataclasses
import logging
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy
from prefect.tasks import Task

from recsys.config import EvaluateConfig, GraphConfig, IngestConfig, InteractionsConfig, PipelineConfig, PublishConfig, \
    SequencesConfig, SparkConfig, TrainConfig, WalksConfig
from recsys.evaluate import EvaluateResult, evaluate_models
from recsys.evaluate_users import evaluate_user_models
from recsys.graph import GraphResult, build_graph
from recsys.holdout import HoldoutResult, ValidationResult, build_holdout, build_validation, load_holdout, \
    next_item_sessions, user_test_items
from recsys.ingest import IngestRejected, IngestResult, ingest, reingest  # IngestRejected: for flows and the CLI
from recsys.lake import Lake, write_text_atomic
from recsys.next_item import evaluate_next_item
from recsys.models import serving
from recsys.models.base import ITEM_TO_ITEM, USER_TO_ITEM
from recsys.publish import HOLDOUT_TOO_SMALL, NOT_SERVED, PublishResult, item_headline, publish_item_to_item, \
    publish_table, refused, searched_item_to_item_table, searched_user_to_item_table, user_headline
from recsys.report import search_text, write_report
from recsys.spark import spark_session
from recsys.train import TrainResult, load_model, load_training_inputs, parallelism, resolve_device, train_models
from recsys.transition import TransitionTable
from recsys.walks import WalksResult, generate_walks
from tasks.cache import stage_key
from tasks.observe import Progress
from tasks.plan import RunPlan, plan_run


@dataclasses.dataclass(frozen=True)
class ReportResult:
    path: str


def _days(first: str, last: str, lake: str) -> list[Path]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [Lake(Path(lake)).event_day(start + dt.timedelta(days=n)) for n in range((end - start).days + 1)]


def _window(plan: RunPlan) -> dict:
    return {"train_from": plan.train_from, "train_until": plan.train_until, "test_from": plan.test_from,
            "run_date": plan.run_date, "lake": plan.lake, "seed": plan.seed}


def _cached(stage: str, reads) -> dict[str, Any]:
    return {"cache_policy": CacheKeyFnPolicy(cache_key_fn=stage_key(stage, reads)), "persist_result": True,
            "result_serializer": "json"}


def _log_result(stage: str, result: object) -> None:
    fields = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(result).items() if not isinstance(v, (list, tuple, dict)))
    get_run_logger().info("%s: %s", stage, fields)


# No retries: ingest is safe to re-run (unfinished batches are removed first), but not to repeat blindly.
@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(settings: IngestConfig, lake: Path, spark: SparkConfig, reingest_path: Path | None = None) -> IngestResult:
    """The raw files not yet ingested under the current mapping; with ``reingest_path``, that one file read
    again, replacing its earlier rows. A batch that is all or mostly quarantined raises ``IngestRejected``
    (its message says why, and the library logs it): the task fails, so no later stage runs."""
    session = spark_session(spark)
    result = (reingest(session, settings, Lake(lake), reingest_path) if reingest_path is not None
              else ingest(session, settings, Lake(lake)))
    _log_result("ingest", result)
    for kind in ("skipped_paths", "changed_files", "failed_files"):
        for path in getattr(result, kind):
            get_run_logger().warning("ingest: %s: %s", kind.replace("_", " "), path)
    if not result.balanced:
        raise RuntimeError(f"ingest accounting does not balance: {result}")
    return result


@task(name="plan-run", cache_policy=NO_CACHE)
def plan_task(config: PipelineConfig, ingested: IngestResult | None = None) -> RunPlan:
    plan = plan_run(config)
    get_run_logger().info("run %s: train %s..%s, test %s..%s, folder %s", plan.run_id, plan.train_from,
                          plan.train_until, plan.test_from, plan.run_date, plan.run_dir)
    return plan


def _graph_reads(inputs: dict) -> tuple[dict, list[Path]]:
    plan: RunPlan = inputs["plan"]
    settings = {"graph": inputs["settings"], **_window(plan), "validation": plan.validation,
                "sequences": inputs.get("sequences")}
    return settings, _days(plan.train_from, plan.train_until, plan.lake) + [Lake(Path(plan.lake)).items]


@task(name="graph", **_cached("graph", _graph_reads))
def graph_task(settings: GraphConfig, plan: RunPlan, spark: SparkConfig,
               sequences: SequencesConfig | None = None) -> GraphResult:
    """The item graph, the user x item matrix and (with ``sequences``: a sequence model is listed) the sessions."""
    result = build_graph(spark_session(spark), settings, Lake(Path(plan.lake)), plan.window, plan.paths.graph,
                         plan.validation, sequences)
    _log_result("graph", result)
    return result


def _validation_reads(inputs: dict) -> tuple[dict, list[Path]]:
    plan: RunPlan = inputs["plan"]
    settings = {"pairs": inputs["pairs"], "pair_rule": inputs["pair_rule"], **_window(plan), "validation": plan.validation}
    return settings, _days(plan.train_from, plan.train_until, plan.lake) + [Path(inputs["graph"].path)]


@task(name="validation", **_cached("validation", _validation_reads))
def validation_task(pairs: int, pair_rule: GraphConfig, graph: GraphResult, plan: RunPlan,
                    spark: SparkConfig) -> ValidationResult:
    """Pairs from the sessions the graph stage held out: the learning curves' data."""
    inputs = load_training_inputs(Path(graph.path))
    result = build_validation(spark_session(spark), Lake(Path(plan.lake)), plan.window, pair_rule, plan.validation,
                              pairs, inputs.catalog, Path(graph.path), plan.seed, plan.paths.validation)
    _log_result("validation", result)
    return result


def start_spark(settings: SparkConfig) -> None:
    """Create the run's Spark session ahead of the flow (the stages then find it), e.g. while Prefect's
    temporary server starts; a failure is left for the ingest stage, which creates it again and reports it."""
    try:
        spark_session(settings)
    except Exception:  # noqa: BLE001
        logging.getLogger(__name__).debug("starting Spark ahead of the flow failed", exc_info=True)


def _walks_reads(inputs: dict) -> tuple[dict, list[Path]]:
    return {"walks": inputs["settings"], "seed": inputs["plan"].seed}, [Path(inputs["graph"].path)]


@task(name="walks", **_cached("walks", _walks_reads))
def walks_task(settings: WalksConfig, graph: GraphResult, plan: RunPlan, spark: SparkConfig) -> WalksResult:
    table = TransitionTable.load(Path(graph.path))
    progress = Progress("walks", f"walks of run {plan.run_id}: Spark tasks done")
    result = generate_walks(spark_session(spark), table, settings, plan.seed, plan.paths.walks,
                            lambda done, total: progress(done / max(total, 1), f"{done}/{total}"))
    progress(1.0)
    _log_result("walks", result)
    return result


def _user_matrix(models: tuple[str, ...], users: InteractionsConfig) -> InteractionsConfig | None:
    """The user x item matrix's settings when a listed model serves user-to-item, else None (not loaded)."""
    return users if serving(USER_TO_ITEM, tuple(models)) else None


def _train_reads(inputs: dict) -> tuple[dict, list[Path]]:
    settings: TrainConfig = inputs["settings"]
    validation = inputs["validation"]
    paths = [Path(inputs["graph"].path), Path(inputs["walks"].path)] + ([Path(validation.path)] if validation else [])
    listed = {name: settings.params_for(name) for name in settings.models}  # an unlisted model's settings do not count
    fit_threads = parallelism(settings.threads, settings.parallel_models, len(settings.models)).threads
    return {"models": listed, "fit_threads": fit_threads, "device": settings.device,  # tables depend on each fit's threads only
            "users": _user_matrix(settings.models, inputs.get("users", InteractionsConfig())), "seed": inputs["plan"].seed}, paths


@task(name="train", **_cached("train", _train_reads))
def train_task(settings: TrainConfig, graph: GraphResult, walks: WalksResult, validation: ValidationResult | None,
               plan: RunPlan, users: InteractionsConfig = InteractionsConfig()) -> TrainResult:
    cores = parallelism(settings.threads, settings.parallel_models, len(settings.models))
    inputs = load_training_inputs(Path(graph.path), Path(walks.path), Path(validation.path) if validation else None,
                                  plan.seed, cores.threads, _user_matrix(settings.models, users),
                                  resolve_device(settings.device))
    progress = Progress("train", f"training of run {plan.run_id}")
    order = {name: i for i, name in enumerate(settings.models)}

    def on_epoch(model: str, done: int, total: int) -> None:
        progress((order[model] + done / max(total, 1)) / len(order), f"{model} {done}/{total}")

    get_run_logger().info("train: %d model(s) at a time, %d thread(s) each", cores.workers, cores.threads)
    result = train_models(settings.models, settings.params_for, inputs, plan.paths.model, on_epoch, cores)
    for model in result.models:
        get_run_logger().info("train: %s in %.1f s -> %s", model.name, model.seconds, model.path)
    return result


def _evaluate_reads(inputs: dict) -> tuple[dict, list[Path]]:
    plan: RunPlan = inputs["plan"]
    trained: TrainResult = inputs["trained"]
    user_models = tuple(m.name for m in trained.models if USER_TO_ITEM in m.serves)
    settings = {"evaluate": inputs["settings"], "pair_rule": inputs["pair_rule"], "metric": inputs["champion_metric"],
                "user_metric": inputs.get("user_metric", "ndcg@20"), "sequences": inputs.get("sequences"),
                "top_n": inputs.get("top_n"),
                "users": inputs.get("users", InteractionsConfig()) if user_models else None,
                "run_id": plan.run_id, "dataset": plan.dataset, **_window(plan)}
    models = [Path(m.path) for m in trained.models]
    return settings, _days(plan.test_from, plan.run_date, plan.lake) + [Path(inputs["graph"].path), *models]


@task(name="evaluate", **_cached("evaluate", _evaluate_reads))
def evaluate_task(settings: EvaluateConfig, pair_rule: GraphConfig, champion_metric: str, graph: GraphResult,
                  trained: TrainResult, plan: RunPlan, spark: SparkConfig, user_metric: str = "ndcg@20",
                  users: InteractionsConfig = InteractionsConfig(), sequences: SequencesConfig = SequencesConfig(),
                  top_n: int = 20) -> EvaluateResult:
    """Item-to-item models on the co-occurring test pairs and (with the sequence models) on next-item
    prediction of the test sessions; user-to-item models by full ranking of the test days."""
    serve_users = any(USER_TO_ITEM in m.serves for m in trained.models)
    inputs = load_training_inputs(Path(graph.path), seed=plan.seed, users=users if serve_users else None)
    session, holdout, next_rows, next_holdout = spark_session(spark), None, (), {}
    lake = Lake(Path(plan.lake))
    if any(ITEM_TO_ITEM in m.serves for m in trained.models):
        built: HoldoutResult = build_holdout(session, lake, plan.window, pair_rule, settings,
                                             inputs.catalog, plan.seed, plan.paths.holdout)
        _log_result("holdout", built)
        holdout = load_holdout(plan.paths.holdout)
        tests = next_item_sessions(session, lake, plan.window, sequences, inputs.catalog, pair_rule.max_session_length,
                                   settings.next_item_sessions, plan.seed)
        ks = tuple(sorted(set(settings.ks) | {top_n}))
        next_rows = evaluate_next_item(trained, inputs, tests, ks, settings.bootstrap, plan.seed, plan.context(),
                                       plan.paths.next_item_metrics)
        next_holdout = {"n": top_n, "sessions": len(tests), "predictions": int(tests.lengths.sum() - len(tests)), "ks": list(ks),
                        "event_types": list(sequences.event_types or ()), "collapse_repeats": sequences.collapse_repeats}
        get_run_logger().info("evaluate: next item on %d test sessions (%d predictions)", next_holdout["sessions"],
                              next_holdout["predictions"])
    result = evaluate_models(trained, inputs, holdout, settings.k, champion_metric, plan.context(), plan.paths.metrics,
                             plan.paths.plots, settings.min_positives, next_rows, top_n)
    result = dataclasses.replace(result, next_item_path=str(plan.paths.next_item_metrics) if next_rows else "",
                                 next_item_holdout=next_holdout)
    get_run_logger().info("evaluate: item-to-item champion %s; metrics %s", result.champion or "none",
                          result.metrics_path or "none")
    if serve_users:
        test_pairs = user_test_items(session, Lake(Path(plan.lake)), plan.window)
        users_eval = evaluate_user_models(trained, inputs, test_pairs, settings.ks, user_metric, settings.repeat_items,
                                          plan.context(), plan.paths.user_metrics, settings.min_users)
        result = dataclasses.replace(result, user_metrics_path=users_eval.metrics_path, user_champion=users_eval.champion,
                                     user_metric=user_metric, user_rows=users_eval.rows, user_holdout=users_eval.holdout,
                                     user_holdout_too_small=users_eval.too_small, min_users=settings.min_users)
        get_run_logger().info("evaluate: user-to-item champion %s; metrics %s", users_eval.champion or "none",
                              users_eval.metrics_path)
    return result


def _json_number(value: Any) -> Any:
    """NaN (a split without pairs) is not JSON: the artifact shows it as empty."""
    return None if isinstance(value, float) and value != value else value


def _publish_reads(inputs: dict) -> tuple[dict, list[Path]]:
    evaluation: EvaluateResult = inputs["evaluation"]
    settings = {"publish": inputs["settings"], "run_id": inputs["plan"].run_id, "run_date": inputs["plan"].run_date,
                "lake": inputs["plan"].lake, "champion": evaluation.champion, "rows": evaluation.rows}
    champion = [Path(inputs["trained"].model(evaluation.champion).path)] if evaluation.champion else []
    return settings, champion + [Path(inputs["graph"].path)]


@task(name="publish", retries=2, retry_delay_seconds=5, **_cached("publish", _publish_reads))
def publish_task(settings: PublishConfig, evaluation: EvaluateResult, trained: TrainResult, graph: GraphResult,
                 plan: RunPlan) -> PublishResult:
    champion = evaluation.champion
    if not champion and evaluation.holdout_too_small:
        return refused(Lake(Path(plan.lake)), ITEM_TO_ITEM, "", 0, evaluation.holdout_too_small, HOLDOUT_TOO_SMALL)
    if not champion:
        return refused(Lake(Path(plan.lake)), ITEM_TO_ITEM, "", 0, "no item-to-item model was evaluated", NOT_SERVED)
    inputs = load_training_inputs(Path(graph.path), seed=plan.seed)
    model = load_model(champion, Path(trained.model(champion).path), inputs)
    recs, search = searched_item_to_item_table(model, inputs.catalog, settings.top_n, plan.run_id,
                                               settings.ann_min_items, plan.seed, min_recall=settings.ann_min_recall)
    result = publish_item_to_item(Lake(Path(plan.lake)), recs, plan.run_date, plan.run_id, champion,
                                  item_headline(evaluation.row(champion)), evaluation.metric, settings.tolerance,
                                  settings.retention, evaluation.min_positives)
    result = dataclasses.replace(result, search=search.as_dict() if search else None)
    _log_result("publish", result)
    return result


def _publish_users_reads(inputs: dict) -> tuple[dict, list[Path]]:
    evaluation: EvaluateResult = inputs["evaluation"]
    settings = {"publish": inputs["settings"], "users": inputs["users"], "run_id": inputs["plan"].run_id,
                "run_date": inputs["plan"].run_date, "lake": inputs["plan"].lake, "champion": evaluation.user_champion,
                "rows": evaluation.user_rows}
    champion = [Path(inputs["trained"].model(evaluation.user_champion).path)] if evaluation.user_champion else []
    return settings, champion + [Path(inputs["graph"].path)]


@task(name="publish-user-to-item", retries=2, retry_delay_seconds=5, **_cached("publish-users", _publish_users_reads))
def publish_users_task(settings: PublishConfig, users: InteractionsConfig, evaluation: EvaluateResult,
                       trained: TrainResult, graph: GraphResult, plan: RunPlan) -> PublishResult:
    """The user-to-item champion's top-N per user, through the same gate and Delta commit as item-to-item."""
    champion, lake = evaluation.user_champion, Lake(Path(plan.lake))
    if not champion:
        return refused(lake, USER_TO_ITEM, "", 0, evaluation.user_holdout_too_small
                       or "no user-to-item model could be evaluated on the test days", HOLDOUT_TOO_SMALL)
    inputs = load_training_inputs(Path(graph.path), seed=plan.seed, users=users)
    model = load_model(champion, Path(trained.model(champion).path), inputs)
    exclude_seen = settings.exclude_seen and not getattr(model, "recommend_seen", False)
    recs, search = searched_user_to_item_table(model, inputs.user_history if exclude_seen else None,
                                               settings.user_top_n, plan.run_id, settings.ann_min_items, plan.seed,
                                               min_recall=settings.ann_min_recall)
    row = next(r for r in evaluation.user_rows if r["model"] == champion)
    result = publish_table(lake, USER_TO_ITEM, recs, plan.run_date, plan.run_id, champion, user_headline(row),
                           evaluation.user_metric, settings.tolerance, settings.retention, evaluation.min_users)
    result = dataclasses.replace(result, search=search.as_dict() if search else None)
    _log_result("publish-user-to-item", result)
    return result


class CachedStage:
    """A cached stage task that checks what its result names: a cached result whose folders or files are
    gone (an old run folder deleted by hand) is computed again instead of handed on."""

    def __init__(self, stage: Task):
        self.stage = stage

    def __call__(self, *args, **kwargs):
        state = self.stage(*args, return_state=True, **kwargs)
        result = state.result()
        missing = [p for p in _named_paths(result) if not Path(p).exists()] if state.name == "Cached" else []
        if not missing:
            return result
        get_run_logger().warning("%s: the cached result names %s, which is gone: computing it again",
                                 self.stage.name, missing[0])
        return self.stage.with_options(refresh_cache=True)(*args, **kwargs)


def _named_paths(result: object) -> list[str]:
    fields = dataclasses.asdict(result)
    paths = [v for k, v in fields.items() if k.endswith("path") and isinstance(v, str) and v]
    return paths + [m["path"] for m in fields.get("models", ())]


@dataclasses.dataclass(frozen=True)
class CachedStages:
    """The stages after ingest, each skipped when what it reads is unchanged (``tasks.cache``)."""

    graph: CachedStage = CachedStage(graph_task)
    validation: CachedStage = CachedStage(validation_task)
    walks: CachedStage = CachedStage(walks_task)
    train: CachedStage = CachedStage(train_task)
    evaluate: CachedStage = CachedStage(evaluate_task)
    publish: CachedStage = CachedStage(publish_task)
    publish_users: CachedStage = CachedStage(publish_users_task)


def publication_text(result: PublishResult, run_date: str) -> str:
    if result.published:
        anchors = "users" if result.table == USER_TO_ITEM else "items"
        return (f"Published `{result.table}` for {run_date} from **{result.model}**: {result.rows} rows for "
                f"{result.items} {anchors}, Delta version {result.version} of `{result.path}`."
                + (f" Gate: {result.comparison}." if result.comparison else "")
                + (f" {search_text(result.search)}" if result.search else ""))
    return (f"**Nothing published** to `{result.table}` for {run_date}: {result.reason}. The table still holds the previous version."
            + (f" {search_text(result.search)}" if result.search else ""))


@task(name="report", cache_policy=NO_CACHE)
def report_task(plan: RunPlan, ingested: IngestResult | None, graph: GraphResult, validation: ValidationResult | None,
                walks: WalksResult, trained: TrainResult, evaluation: EvaluateResult,
                published: PublishResult, published_users: PublishResult | None = None,
                settings: EvaluateConfig = EvaluateConfig(), top_n: int = 20,
                stage_seconds: dict[str, float] | None = None) -> ReportResult:
    """The run's report, written once from every stage's result, and shown as the run's markdown artifact;
    ``stage_seconds`` (wall seconds per stage) also goes to ``stage_seconds.json`` beside it."""
    stages = {"ingest": ingested, "graph": graph, "validation": validation, "walks": walks}
    counts = {name: _flat(result) for name, result in stages.items() if result is not None}
    if stage_seconds:
        write_text_atomic(json.dumps(stage_seconds, indent=1) + "\n", plan.paths.stage_seconds)
        counts["wall seconds"] = {name: f"{seconds:.1f}" for name, seconds in stage_seconds.items()}
    if ingested is not None:  # what ingest did not read or commit, by name: nothing is left out silently
        counts["ingest"].update({kind: "; ".join(getattr(ingested, kind)) for kind in
                                 ("skipped_paths", "changed_files", "failed_files") if getattr(ingested, kind)})
    for m in trained.models:
        for warning in m.warnings:
            get_run_logger().warning("train: %s", warning)
    counts["train"] = {m.name: f"{m.seconds:.1f} s" + (f" (warning: {'; '.join(m.warnings)})" if m.warnings else "")
                       for m in trained.models}
    metrics = pa.Table.from_pylist(list(evaluation.rows))
    item_curves = {m.name: list(m.curve) for m in trained.models if m.curve and ITEM_TO_ITEM in m.serves}
    users = None
    if published_users is not None:
        users = {"rows": evaluation.user_rows, "holdout": evaluation.user_holdout, "champion": evaluation.user_champion,
                 "metric": evaluation.user_metric, "ks": settings.ks, "repeat_items": settings.repeat_items,
                 "curves": {m.name: list(m.curve) for m in trained.models if m.curve and USER_TO_ITEM in m.serves},
                 "publication": publication_text(published_users, plan.run_date)}
    next_item = {"rows": evaluation.next_item_rows, "holdout": evaluation.next_item_holdout, "n": top_n,
                 "champion": evaluation.champion, "metric": evaluation.metric} if evaluation.next_item_rows else None
    path = write_report(plan.paths.report, metrics, plan.context(), evaluation.champion, evaluation.metric, counts,
                        item_curves, publication_text(published, plan.run_date), Path(evaluation.plots_path), users,
                        next_item)
    create_markdown_artifact(key="report", markdown=path.read_text(),
                             description=f"Report of run {plan.run_id} ({plan.dataset}), at {path}")
    window = (f"{plan.dataset}; train {plan.train_from}..{plan.train_until}, test {plan.test_from}..{plan.run_date}; "
              f"seed {plan.seed}")
    if evaluation.rows:
        columns = ["model", "next_recall", "next_mrr", "predictions", "auc", "auc_seen", "auc_cold", "hit_rate", "k",
                   "positives", "train_seconds", "dataset", "seed"]
        create_table_artifact(
            key="item-to-item-metrics", table=[{c: _json_number(row[c]) for c in columns} for row in evaluation.rows],
            description=f"Item-to-item metrics of run {plan.run_id} ({window}); champion {evaluation.champion} by "
                        f"{evaluation.metric}")
    if evaluation.next_item_rows:
        create_table_artifact(
            key="next-item-metrics",
            table=[{c: _json_number(v) for c, v in row.items()} for row in evaluation.next_item_rows],
            description=f"Next-item metrics of run {plan.run_id} ({window}) on {evaluation.next_item_holdout.get('sessions')} "
                        f"test sessions")
    create_markdown_artifact(key="published-item-to-item", markdown=publication_text(published, plan.run_date))
    if users is not None:
        create_table_artifact(
            key="user-to-item-metrics", table=[{c: _json_number(v) for c, v in row.items()} for row in evaluation.user_rows],
            description=f"User-to-item metrics of run {plan.run_id} ({window}); champion "
                        f"{evaluation.user_champion or 'none'} by {evaluation.user_metric}")
        create_markdown_artifact(key="published-user-to-item", markdown=users["publication"])
    get_run_logger().info("report: %s", path)
    return ReportResult(str(path))


def _flat(result: object) -> dict:
    return {k: v for k, v in dataclasses.asdict(result).items() if not isinstance(v, (list, tuple, dict)) and not k.endswith("path")}
