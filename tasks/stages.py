"""One Prefect task per stage. Retries only where a failure can be transient and a retry is safe
(writing the published table).

Caching: graph, walks, train, evaluate and publish are skipped (state "Cached") when their cache
key is unchanged: the code, the settings, the run plan and the names, sizes and modification times
of the files the stage reads (``recsys.pipeline.stage_cache_key``). Their small results persist as
JSON, not pickle. Ingest is never cached: its manifest already makes a re-run read no file twice,
and it must look for new files every night. ``config.cache: false`` turns caching off.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from recsys import pipeline
from recsys.config import PipelineConfig
from recsys.evaluate import EvaluateResult
from recsys.graph import GraphResult
from recsys.ingest import IngestResult
from recsys.pipeline import RunPlan
from recsys.lake import Lake
from recsys.publish import PublishResult, rollback
from recsys.train import TrainResult
from recsys.walks import WalksResult


def _log_result(stage: str, result: object) -> None:
    fields = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(result).items() if not isinstance(v, (list, tuple, dict)))
    get_run_logger().info("%s: %s", stage, fields)


def _stage_key(stage: str):
    def key(context: TaskRunContext, inputs: dict[str, Any]) -> str | None:
        return pipeline.stage_cache_key(inputs["config"], inputs["plan"], stage)
    return key


def _cached(stage: str) -> dict[str, Any]:
    return {"cache_key_fn": _stage_key(stage), "persist_result": True, "result_serializer": "json"}


@contextlib.contextmanager
def exclusive_lake(config: PipelineConfig):
    """The run lock for the whole flow; also removes what an interrupted run left in the lake."""
    with pipeline.exclusive_lake(config):
        yield


# No retries: ingest is safe to re-run (unfinished batches are removed first), but not to repeat blindly.
@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(config: PipelineConfig) -> IngestResult:
    result = pipeline.run_ingest(config)
    _log_result("ingest", result)
    if not result.balanced:
        raise RuntimeError(f"ingest accounting does not balance: {result}")
    return result


@task(name="plan-run", cache_policy=NO_CACHE)
def plan_task(config: PipelineConfig, ingested: IngestResult | None = None) -> RunPlan:
    plan = pipeline.plan_run(config)
    if ingested is not None:
        pipeline.record_ingest(plan, ingested)
    get_run_logger().info("run %s: train %s..%s, test %s..%s, folder %s", plan.run_id, plan.train_from,
                          plan.train_until, plan.test_from, plan.run_date, plan.run_dir)
    return plan


@task(name="graph", **_cached("graph"))
def graph_task(config: PipelineConfig, plan: RunPlan) -> GraphResult:
    result = pipeline.run_graph(config, plan)
    _log_result("graph", result)
    return result


@task(name="walks", **_cached("walks"))
def walks_task(config: PipelineConfig, plan: RunPlan) -> WalksResult:
    result = pipeline.run_walks(config, plan)
    _log_result("walks", result)
    return result


@task(name="train", **_cached("train"))
def train_task(config: PipelineConfig, plan: RunPlan) -> TrainResult:
    result = pipeline.run_train(config, plan)
    for model in result.models:
        get_run_logger().info("train: %s in %.1f s -> %s", model.name, model.seconds, model.path)
    return result


def _json_number(value: Any) -> Any:
    """NaN (a split without pairs) is not JSON: the artifact shows it as empty."""
    return None if isinstance(value, float) and value != value else value


@task(name="evaluate", **_cached("evaluate"))
def evaluate_task(config: PipelineConfig, plan: RunPlan) -> EvaluateResult:
    result = pipeline.run_evaluate(config, plan)
    columns = ["model", "auc", "auc_seen", "auc_cold", "hit_rate", "k", "positives", "train_seconds", "dataset", "seed"]
    create_table_artifact(
        key="item-to-item-metrics", table=[{c: _json_number(row[c]) for c in columns} for row in result.rows],
        description=f"Item-to-item metrics of run {plan.run_id} ({config.dataset}; train {plan.train_from}.."
                    f"{plan.train_until}, test {plan.test_from}..{plan.run_date}; seed {config.seed}); "
                    f"champion {result.champion}")
    get_run_logger().info("evaluate: champion %s; metrics %s; report %s", result.champion, result.metrics_path,
                          result.report_path)
    return result


@task(name="publish", retries=2, retry_delay_seconds=5, **_cached("publish"))
def publish_task(config: PipelineConfig, plan: RunPlan, evaluation: EvaluateResult) -> PublishResult:
    result = pipeline.run_publish(config, plan, evaluation)
    _log_result("publish", result)
    markdown = (f"Published `{result.table}` for {plan.run_date} from **{result.model}**: {result.rows} rows "
                f"for {result.items} items at `{result.path}`." if result.published else
                f"**Nothing published** for {plan.run_date}: {result.reason}. `_LATEST` is unchanged.")
    create_markdown_artifact(key="published-item-to-item", markdown=markdown)
    return result


def rollback_latest(lake_root: Path, run_date: str) -> dict:
    """Point ``_LATEST`` back at the version of ``run_date`` (the CLI's ``recsys rollback``)."""
    return rollback(Lake(lake_root), run_date)
