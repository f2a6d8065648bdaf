"""The ``recsys`` command: run the nightly flow locally, show the latest pointer, roll the published table back, print the config.

``recsys run`` needs no server: Prefect starts a temporary local one for the run. The config is
validated before any stage runs; an invalid one exits with status 2 and names the field.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

for _name, _value in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                      "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}.items():
    os.environ.setdefault(_name, _value)

import yaml  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from recsys.config import PipelineConfig  # noqa: E402

console = Console(stderr=False)


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = value


def build_config(args: argparse.Namespace) -> PipelineConfig:
    """Config file (YAML or JSON) < flags < ``--set key.path=value`` overrides."""
    raw: dict[str, Any] = {}
    if args.config:
        raw = yaml.safe_load(Path(args.config).read_text()) or {}
        raw = raw.get("config", raw)  # accept a prefect.yaml-style {"config": {...}} too
    if args.preset:
        _set_path(raw, "ingest.preset", args.preset)
        raw.setdefault("dataset", args.preset)
        if args.preset != "sample" and not args.items:
            _set_path(raw, "ingest.items_input", None)
    if args.input:
        _set_path(raw, "ingest.input", args.input)
        if not args.items:  # the sample's items file says nothing about somebody else's log
            _set_path(raw, "ingest.items_input", None)
    if args.items:
        _set_path(raw, "ingest.items_input", args.items)
    if args.lake:
        raw["lake"] = args.lake
    for assignment in args.set or []:
        key, _, value = assignment.partition("=")
        _set_path(raw, key, yaml.safe_load(value))
    config = PipelineConfig.model_validate(raw)
    config.check_files()
    return config


def _number(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _metrics_table(rows: tuple[dict, ...], champion: str) -> Table:
    k = rows[0]["k"] if rows else 10
    table = Table(title="item-to-item metrics")
    for column in ("model", "AUC-ROC", "AUC-ROC seen", "AUC-ROC cold", f"HitRate@{k}", "train s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        name = f"{row['model']} *" if row["model"] == champion else row["model"]
        table.add_row(name, *(_number(row[m]) for m in ("auc", "auc_seen", "auc_cold", "hit_rate")),
                      f"{row['train_seconds']:.1f}")
    return table


def _user_metrics_table(rows: tuple[dict, ...], champion: str, metric: str) -> Table:
    k = metric.split("@")[1]
    columns = [f"recall@{k}", f"ndcg@{k}", f"hit@{k}", f"mrr@{k}"]
    table = Table(title=f"user-to-item metrics (champion by {metric})")
    for column in ("model", *columns, "users", "train s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        name = f"{row['model']} *" if row["model"] == champion else row["model"]
        table.add_row(name, *(_number(row.get(c)) for c in columns), str(row["users_evaluated"]),
                      f"{row['train_seconds']:.1f}")
    return table


def _publication_line(published) -> str:
    anchors = "users" if published.table == "user_to_item" else "items"
    if published.published:
        return (f"published {published.table}: {published.path}  (Delta version {published.version}: "
                f"{published.rows} rows, {published.items} {anchors}, model {published.model})")
    return f"[yellow]nothing published to {published.table}:[/yellow] {published.reason}"


class _StageStatus(logging.Handler):
    """Shows the library's latest log line under a spinner while the flow runs."""

    def __init__(self, status):
        super().__init__(logging.INFO)
        self.status = status

    def emit(self, record: logging.LogRecord) -> None:
        self.status.update(f"[bold]{record.getMessage()[:150]}")


def cmd_run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except (ValidationError, ValueError, OSError, yaml.YAMLError) as exc:
        console.print(f"[red]invalid configuration:[/red]\n{exc}")
        return 2
    interactive = sys.stdout.isatty()
    if interactive:
        config = config.model_copy(update={"spark": config.spark.model_copy(update={"show_progress": True})})
    from flows.nightly import nightly

    watched = [logging.getLogger(name) for name in ("recsys", "prefect.task_runs")]
    logging.getLogger("recsys").setLevel(logging.INFO)
    with console.status("[bold]starting the nightly flow", spinner="dots") as status:
        handler = _StageStatus(status)
        for logger in watched:
            logger.addHandler(handler)
        try:
            result = nightly(config=config)
        finally:
            for logger in watched:
                logger.removeHandler(handler)
    _print_summary(result)
    return 0


def _print_summary(result) -> None:
    ingest, plan, evaluation, published = result.ingest, result.plan, result.evaluate, result.publish
    console.print(f"ingest: read {ingest.rows_read} rows = {ingest.rows_accepted} accepted + "
                  f"{ingest.rows_quarantined} quarantined + {ingest.rows_duplicate} duplicates "
                  f"({ingest.files_ingested} new file(s), {ingest.files_skipped} already ingested)")
    console.print(f"run {plan.run_id}: train {plan.train_from}..{plan.train_until}, test {plan.test_from}.."
                  f"{plan.run_date}")
    if evaluation.rows:
        console.print(_metrics_table(evaluation.rows, evaluation.champion))
    if result.publish_users is not None:
        console.print(_user_metrics_table(evaluation.user_rows, evaluation.user_champion, evaluation.user_metric))
    console.print(f"run_date {plan.run_date}")
    for table in (published, result.publish_users):
        if table is not None:
            console.print(_publication_line(table))
    console.print(f"latest pointer:  {published.latest}")
    console.print(f"report:          {result.report.path}")
    for label, path in (("metrics", evaluation.metrics_path), ("user metrics", evaluation.user_metrics_path)):
        if path:
            console.print(f"{label + ':':<16} {path}")


def cmd_latest(args: argparse.Namespace) -> int:
    from tasks.maintenance import latest_pointer

    pointer = latest_pointer(Path(args.lake or PipelineConfig().lake))
    if not pointer.exists():
        console.print(f"[red]nothing published yet:[/red] {pointer} does not exist")
        return 1
    console.print_json(pointer.read_text())
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from tasks.maintenance import rollback_latest

    try:
        restored = rollback_latest(Path(args.lake or PipelineConfig().lake).resolve(), args.to, args.table)
    except FileNotFoundError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    for table, pointer in restored.items():
        console.print(f"{table} is restored to {pointer['run_date']} (run {pointer['run_id']}); _LATEST names it")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(json.loads(PipelineConfig().model_dump_json()), sort_keys=False))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="recsys", description="Nightly recommendation pipeline.")
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the nightly flow now, locally")
    run.add_argument("--config", help="YAML or JSON file with PipelineConfig fields")
    run.add_argument("--preset", help="column mapping preset: sample, taobao, diginetica, rees46, ml100k")
    run.add_argument("--input", help="raw log file or folder")
    run.add_argument("--items", help="item side-information CSV (item_id, category, brand, price)")
    run.add_argument("--lake", help="lake root folder (default data/lake/<dataset>)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. walks.walk_length=20")
    run.set_defaults(func=cmd_run)
    latest = commands.add_parser("latest", help="print the _LATEST pointer of the published tables")
    latest.add_argument("--lake", help="lake root folder (default data/lake/sample)")
    latest.set_defaults(func=cmd_latest)
    back = commands.add_parser("rollback", help="restore the published tables to an earlier run date's commit (Delta restore)")
    back.add_argument("--to", required=True, metavar="RUN_DATE", help="the run date (YYYY-MM-DD) of the version")
    back.add_argument("--lake", help="lake root folder (default data/lake/sample)")
    back.add_argument("--table", choices=("item_to_item", "user_to_item"),
                      help="restore only this table (default: every table with a commit of that run date)")
    back.set_defaults(func=cmd_rollback)
    show = commands.add_parser("config", help="print the default configuration as YAML")
    show.set_defaults(func=cmd_config)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
