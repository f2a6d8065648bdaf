"""The pipeline as Prefect flows: ``nightly`` runs every stage in order; ``ingest_flow`` only ingests.

``nightly`` reads as the pipeline: each stage task receives the typed results it depends on, so the
Prefect run graph draws the chain ingest -> plan -> graph -> (validation) -> walks -> train ->
evaluate -> publish (item-to-item, then user-to-item when a listed model serves it) -> report.
Every flow takes the whole ``PipelineConfig`` as its one parameter, so
Prefect validates it before anything runs and the UI renders it as a form; the disk checks the
config cannot do at validation run next, before any stage. One run at a time holds the lake.

A run that leaves a table it serves unpublished ends in a ``Completed`` state named ``NotPublished``
(nothing published) or ``PartlyPublished``, whose message says why; a scheduler sees it apart from a
plain ``Completed`` (``tasks.maintenance.final_state``; the table of outcomes is in docs/operations.md).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow
from prefect.states import State

from recsys.config import PipelineConfig
from tasks.lock import exclusive_lake
from tasks.maintenance import final_state
from tasks.observe import library_logs_to_prefect
from tasks.stages import (CachedStages, EvaluateResult, GraphResult, IngestResult, PublishResult, ReportResult, RunPlan,
                          TrainResult, ValidationResult, WalksResult, ingest_task, plan_task, report_task)


@dataclass(frozen=True)
class NightlyResult:
    plan: RunPlan
    ingest: IngestResult
    graph: GraphResult
    validation: ValidationResult | None
    walks: WalksResult
    train: TrainResult
    evaluate: EvaluateResult
    publish: PublishResult
    report: ReportResult
    publish_users: PublishResult | None = None  # the user_to_item table, when a listed model serves it


@dataclass
class StageClock:
    """Wall seconds per stage of one run (a cached stage takes about none), for the report and benchmarks/scale.py."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(time.perf_counter() - started, 3)


@flow(name="nightly", log_prints=True)
def nightly(config: PipelineConfig = PipelineConfig()) -> NightlyResult | State:
    """Ingest new logs, then graph -> walks -> train -> evaluate -> publish -> report for the run date.

    A stage whose inputs, settings and code are unchanged is skipped (Prefect state "Cached"). Returns
    the ``NightlyResult``, inside a ``NotPublished``/``PartlyPublished`` state when a table got no commit
    (calling the flow still gives the ``NightlyResult``; ``return_state=True`` gives the state).
    """
    config.check_files()
    clock = StageClock()
    with library_logs_to_prefect(), exclusive_lake(config.lake):
        with clock("ingest"):
            ingested = ingest_task(config.ingest, config.lake, config.spark)
        with clock("plan"):
            plan = plan_task(config, ingested)
        stage = CachedStages()
        with clock("graph"):
            graph = stage.graph(config.graph, plan, config.spark, config.sequences if config.sequence_models() else None)
        config.check_catalogue(graph.nodes)  # a top-N or K beyond the catalogue fails here, before training
        with clock("validation"):
            validation = (stage.validation(config.evaluate.validation_pairs, config.graph, graph, plan, config.spark)
                          if plan.validation else None)
        with clock("walks"):
            walks = stage.walks(config.walks, graph, plan, config.spark)
        with clock("train"):
            trained = stage.train(config.train, graph, walks, validation, plan, config.interactions)
        with clock("evaluate"):
            evaluated = stage.evaluate(config.evaluate, config.graph, config.publish.champion_metric, graph, trained,
                                       plan, config.spark, config.publish.user_champion_metric, config.interactions,
                                       config.sequences, config.publish.top_n)
        with clock("publish"):
            published = stage.publish(config.publish, evaluated, trained, graph, plan)
        with clock("publish-user-to-item"):
            published_users = (stage.publish_users(config.publish, config.interactions, evaluated, trained, graph, plan)
                               if config.user_models() else None)
        report = report_task(plan, ingested, graph, validation, walks, trained, evaluated, published, published_users,
                             config.evaluate, config.publish.top_n, clock.seconds)
    result = NightlyResult(plan, ingested, graph, validation, walks, trained, evaluated, published, report,
                           published_users)
    return final_state(result, published, published_users)


@flow(name="ingest")
def ingest_flow(config: PipelineConfig = PipelineConfig(), reingest: Path | None = None) -> IngestResult:
    """Ingest new raw files only (no training): e.g. as files arrive during the day. With ``reingest`` (a raw
    file), read that file again with the current mapping, replacing its earlier events and quarantine rows
    (``recsys.ingest.reingest``)."""
    config.check_files()
    with library_logs_to_prefect(), exclusive_lake(config.lake):
        return ingest_task(config.ingest, config.lake, config.spark, reingest)
