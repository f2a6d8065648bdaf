"""The pipeline's flows: one per stage, and ``nightly``, which runs them in order.

Every flow takes the whole ``PipelineConfig`` as its one parameter, so Prefect validates it before
anything runs and the UI renders it as a form. A stage flow run alone re-plans the run from the
config and the lake, and so finds the same run folder as ``nightly`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow

from recsys.config import PipelineConfig
from tasks.stages import (EvaluateResult, GraphResult, IngestResult, PublishResult, RunPlan, TrainResult,
                          WalksResult, evaluate_task, exclusive_lake, graph_task, ingest_task, plan_task, publish_task,
                          train_task, walks_task)


@dataclass(frozen=True)
class NightlyResult:
    plan: RunPlan
    ingest: IngestResult
    graph: GraphResult
    walks: WalksResult
    train: TrainResult
    evaluate: EvaluateResult
    publish: PublishResult


@flow(name="ingest")
def ingest_flow(config: PipelineConfig = PipelineConfig()) -> IngestResult:
    with exclusive_lake(config):
        return ingest_task(config)


@flow(name="graph")
def graph_flow(config: PipelineConfig = PipelineConfig()) -> GraphResult:
    with exclusive_lake(config):
        return graph_task(config, plan_task(config))


@flow(name="walks")
def walks_flow(config: PipelineConfig = PipelineConfig()) -> WalksResult:
    with exclusive_lake(config):
        return walks_task(config, plan_task(config))


@flow(name="train")
def train_flow(config: PipelineConfig = PipelineConfig()) -> TrainResult:
    with exclusive_lake(config):
        return train_task(config, plan_task(config))


@flow(name="evaluate")
def evaluate_flow(config: PipelineConfig = PipelineConfig()) -> EvaluateResult:
    with exclusive_lake(config):
        return evaluate_task(config, plan_task(config))


@flow(name="publish")
def publish_flow(config: PipelineConfig = PipelineConfig()) -> PublishResult:
    with exclusive_lake(config):
        plan = plan_task(config)
        return publish_task(config, plan, evaluate_task(config, plan))


@flow(name="nightly", log_prints=True)
def nightly(config: PipelineConfig = PipelineConfig()) -> NightlyResult:
    """Ingest new logs, then graph -> walks -> train -> evaluate -> publish for the run date.

    One run at a time per lake; a stage whose inputs, settings and code are unchanged is skipped.
    """
    with exclusive_lake(config):
        ingested = ingest_task(config)
        plan = plan_task(config, ingested)
        graph = graph_task(config, plan)
        walks = walks_task(config, plan)
        trained = train_task(config, plan)
        evaluated = evaluate_task(config, plan)
        published = publish_task(config, plan, evaluated)
    return NightlyResult(plan, ingested, graph, walks, trained, evaluated, published)
