"""The ``recsys`` command: run the nightly flow locally, show the latest pointer, roll the published table back, print the config.

``recsys run`` needs no server: Prefect starts a temporary local one for the run. The config is
validated before any stage runs; an invalid one exits with status 2 and names the field. Its exit
status says how the run ended (``tasks.maintenance.exit_code``; docs/operations.md): 0 every table
published, or a worse champion refused by the gate; 1 an error; 2 a bad configuration; 3 the input
rejected (all or mostly quarantined); 4 too little data (a holdout below the minimum, no training day);
5 the lake is held by another live run (checked before Prefect or Spark start).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import contextlib
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

for _name, _value in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                      "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}.items():
    os.environ.setdefault(_name, _value)

import yaml  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from recsys.config import DATASET_PATTERN, PipelineConfig  # noqa: E402

console = Console(stderr=False)


class _YamlLoader(yaml.SafeLoader):
    """YAML without its implicit dates: ``2024-02-30`` stays text, so the config refuses it naming the field."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rule) for tag, rule in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for depth, key in enumerate(parents):
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ValueError(f"{'.'.join(parents[:depth + 1])}: is {target!r}, not a section with fields, "
                             f"so {dotted} cannot be set")
    target[leaf] = value


def _config_file(path: str) -> dict[str, Any]:
    """The fields of a YAML or JSON config file (a mapping; ``{"config": {...}}`` as in prefect.yaml too)."""
    raw = _yaml(Path(path).read_text()) or {}
    if isinstance(raw, dict) and "config" in raw:
        raw = raw["config"]  # accept a prefect.yaml-style {"config": {...}} too
    if not isinstance(raw, dict):
        raise ValueError(f"--config {path}: the file holds a {type(raw).__name__}, not a mapping of fields "
                         "(e.g. seed: 7)")
    return raw


def build_config(args: argparse.Namespace) -> PipelineConfig:
    """Config file (YAML or JSON) < flags < ``--set key.path=value`` overrides."""
    raw: dict[str, Any] = {}
    if args.config:
        raw = _config_file(args.config)
    if args.preset:  # the dataset, when not given, is the preset's name or the input's (PipelineConfig)
        _set_path(raw, "ingest.preset", args.preset)
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
        _set_path(raw, key, _set_value(value))
    config = PipelineConfig.model_validate(raw)
    config.check_files()
    return config


def _set_value(text: str) -> Any:
    """A ``--set`` value as YAML (numbers, null, lists), else the text itself: a value YAML cannot read
    (a literal tab) or reads as nothing (a lone space) is meant literally, and a wrong one is then
    refused by the config with its field's name instead of a bare YAML error."""
    if text and not text.strip():
        return text
    try:
        return _yaml(text)
    except yaml.YAMLError:
        return text


def _number(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _metrics_table(rows: tuple[dict, ...], champion: str, metric: str = "", n: int = 20) -> Table:
    k = rows[0]["k"] if rows else 10
    table = Table(title=f"item-to-item metrics (champion by {metric})" if metric else "item-to-item metrics")
    metrics = ("next_recall", "next_mrr", "auc", "auc_seen", "hit_rate")
    for column in ("model", f"next Recall@{n}", f"next MRR@{n}", "AUC-ROC", "AUC-ROC seen", f"HitRate@{k}", "train s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        name = f"{row['model']} *" if row["model"] == champion else row["model"]
        table.add_row(name, *(_number(row.get(m)) for m in metrics), f"{row['train_seconds']:.1f}")
    return table


def _next_item_table(rows: tuple[dict, ...], ks: list[int]) -> Table:
    """Every model that answered next-item prediction (sequence models too), at each K."""
    table = Table(title="next-item metrics (test sessions)")
    columns = [f"next_recall@{k}" for k in ks] + [f"next_mrr@{k}" for k in ks]
    for column in ("model", *(c.removeprefix("next_") for c in columns), "predictions"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(row["model"], *(_number(row.get(c)) for c in columns), str(row["predictions"]))
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
        gate = f"\n  gate: {published.comparison}" if published.comparison else ""
        search = getattr(published, "search", None)
        if search:
            gate += (f"\n  top-{search['n']} by approximate search: recall@{search['n']} {search['recall']:.3f} on "
                     f"{search['sample']} sampled {anchors}, {search['saved_seconds']:.0f} s saved against exact search")
        return (f"published {published.table}: {published.path}  (Delta version {published.version}: "
                f"{published.rows} rows, {published.items} {anchors}, model {published.model}){gate}")
    return f"[yellow]nothing published to {published.table}:[/yellow] {published.reason}"


def _holdout_lines(evaluation) -> list[str]:
    """The size of every split the run was judged on."""
    lines = []
    if evaluation.rows:
        row = evaluation.rows[0]
        lines.append(f"item-to-item holdout: {row['positives']} held-out pairs ({row['positives_seen']} seen in "
                     f"training, {row['positives_cold']} cold) and as many sampled non-pairs")
    if evaluation.next_item_holdout:
        held = evaluation.next_item_holdout
        lines.append(f"next-item holdout: {held.get('predictions', 0)} predictions from {held.get('sessions', 0)} "
                     "test sessions")
    if evaluation.user_rows or evaluation.user_holdout:
        held = evaluation.user_holdout
        lines.append(f"user-to-item holdout: {held.get('users_evaluated', 0)} users evaluated "
                     f"({held.get('test_pairs', 0)} test pairs; {held.get('cold_users', 0)} test users without "
                     "training history, served by the popularity fallback)")
    return lines


class _StageStatus(logging.Handler):
    """Shows the library's latest log line under a spinner while the flow runs."""

    def __init__(self, status):
        super().__init__(logging.INFO)
        self.status = status

    def emit(self, record: logging.LogRecord) -> None:
        self.status.update(f"[bold]{record.getMessage()[:150]}")


def _checked_config(args: argparse.Namespace) -> PipelineConfig | None:
    """The run's config, or None after printing why it is invalid (the caller exits 2)."""
    try:
        return build_config(args)
    except (ValidationError, ValueError, OSError, yaml.YAMLError) as exc:
        console.print(f"[red]invalid configuration:[/red]\n{exc}")
        return None


def _lake_busy(lake: Path) -> bool:
    """Whether a live run holds the lake's lock: said in one line before Prefect or Spark start."""
    from tasks.lock import LakeLock

    holder = LakeLock(lake).holder()
    if holder is not None:
        console.print(f"[red]the lake is busy:[/red] another run (host {holder.get('host')}, pid {holder.get('pid')}, "
                      f"since {holder.get('since')}) holds {LakeLock(lake).path}; wait for it to finish")
    return holder is not None


@contextlib.contextmanager
def _stopped_by_signals():
    """SIGTERM ends the run like Ctrl-C: the lake lock and the temporary Prefect server are released on the way out."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_run(args: argparse.Namespace) -> int:
    config = _checked_config(args)
    if config is None:
        return 2
    from tasks.maintenance import EXIT_LAKE_BUSY
    if _lake_busy(config.lake):
        return EXIT_LAKE_BUSY
    with _stopped_by_signals():
        return _run(config)


def _run(config: PipelineConfig) -> int:
    from tasks.maintenance import exit_code
    from tasks.server_watch import start_temporary_server

    interactive = sys.stdout.isatty()
    if interactive:
        config = config.model_copy(update={"spark": config.spark.model_copy(update={"show_progress": True})})
    from flows.nightly import nightly

    watched = [logging.getLogger(name) for name in ("recsys", "prefect.task_runs")]
    logging.getLogger("recsys").setLevel(logging.INFO)
    from tasks.stages import start_spark
    spark_starting = threading.Thread(target=start_spark, args=(config.spark,), daemon=True)
    spark_starting.start()  # the JVM starts while Prefect's temporary server does: their start-ups overlap
    start_temporary_server()
    spark_starting.join()
    with console.status("[bold]starting the nightly flow", spinner="dots") as status:
        handler = _StageStatus(status)
        for logger in watched:
            logger.addHandler(handler)
        try:
            state = nightly(config=config, return_state=True)
        finally:
            for logger in watched:
                logger.removeHandler(handler)
    code, why = exit_code(state)
    if state.is_completed():
        _print_summary(state.result())
        if state.name != "Completed":
            console.print(f"[yellow]run ended {state.name}[/yellow] (exit {code}): {why}")
    else:
        console.print(f"[red]run failed[/red] (exit {code}):\n{why}")
    return code


def _print_summary(result) -> None:
    ingest, plan, evaluation, published = result.ingest, result.plan, result.evaluate, result.publish
    console.print(f"ingest: read {ingest.rows_read} rows = {ingest.rows_accepted} accepted + "
                  f"{ingest.rows_quarantined} quarantined + {ingest.rows_duplicate} duplicates "
                  f"({ingest.files_ingested} new file(s), {ingest.files_skipped} already ingested)")
    for kind, label in (("skipped_paths", "not read"), ("changed_files", "changed while read, left for the next run"),
                        ("failed_files", "could not be read to the end")):
        for path in getattr(ingest, kind, ()):
            console.print(f"[yellow]ingest: {label}:[/yellow] {path}")
    console.print(f"run {plan.run_id} (dataset {plan.dataset}): train {plan.train_from}..{plan.train_until}, "
                  f"test {plan.test_from}..{plan.run_date}")
    if plan.run_date_note:
        console.print(f"[yellow]run date:[/yellow] {plan.run_date_note}")
    for model in result.train.models:
        for warning in model.warnings:
            console.print(f"[yellow]warning ({model.name}):[/yellow] {warning}")
    for line in _holdout_lines(evaluation):
        console.print(line)
    n = evaluation.next_item_holdout.get("n", 20)
    if evaluation.rows:
        console.print(_metrics_table(evaluation.rows, evaluation.champion, evaluation.metric, n))
    if evaluation.next_item_rows:
        console.print(_next_item_table(evaluation.next_item_rows, list(evaluation.next_item_holdout["ks"])))
    if result.publish_users is not None:
        console.print(_user_metrics_table(evaluation.user_rows, evaluation.user_champion, evaluation.user_metric))
    console.print(f"run_date {plan.run_date}")
    for table in (published, result.publish_users):
        if table is not None:
            console.print(_publication_line(table))
    console.print(f"latest pointer:  {published.latest}")
    console.print(f"report:          {result.report.path}")
    for label, path in (("metrics", evaluation.metrics_path), ("next-item", evaluation.next_item_path),
                        ("user metrics", evaluation.user_metrics_path)):
        if path:
            console.print(f"{label + ':':<16} {path}")


def _dataset(name: str) -> str:
    if not re.match(DATASET_PATTERN, name):
        raise argparse.ArgumentTypeError(f"not a dataset name: {name!r} (letters, digits, '_', '.', '-')")
    return name


def _lake_of(args: argparse.Namespace) -> Path:
    """``--lake``, else the default lake of ``--dataset`` (data/lake/<dataset>)."""
    if args.lake:
        return Path(args.lake).resolve()
    return PipelineConfig.model_validate({"dataset": args.dataset}).lake


def cmd_latest(args: argparse.Namespace) -> int:
    from tasks.maintenance import latest_pointer

    pointer = latest_pointer(_lake_of(args))
    if not pointer.exists():
        console.print(f"[red]nothing published yet:[/red] {pointer} does not exist")
        return 1
    console.print_json(pointer.read_text())
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from tasks.lock import LakeBusyError
    from tasks.maintenance import EXIT_LAKE_BUSY, rollback_latest

    try:
        restored = rollback_latest(_lake_of(args), args.to, args.table)
    except FileNotFoundError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    except LakeBusyError as exc:
        console.print(f"[red]the lake is busy:[/red] {exc}")
        return EXIT_LAKE_BUSY
    for table, pointer in restored.items():
        console.print(f"{table} is restored to {pointer['run_date']} (run {pointer['run_id']}); LATEST.json names it")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(json.loads(PipelineConfig().model_dump_json()), sort_keys=False))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    config = _checked_config(args)
    if config is None:
        return 2
    from tasks.maintenance import EXIT_LAKE_BUSY
    if _lake_busy(config.lake):
        return EXIT_LAKE_BUSY
    reingest = Path(args.reingest).expanduser().resolve() if args.reingest else None
    if reingest is not None and not reingest.is_file():
        console.print(f"[red]--reingest: not a file:[/red] {reingest}")
        return 2
    from flows.nightly import ingest_flow
    from tasks.maintenance import exit_code

    logging.getLogger("recsys").setLevel(logging.INFO)
    state = ingest_flow(config=config, reingest=reingest, return_state=True)
    if not state.is_completed():
        code, why = exit_code(state)
        console.print(f"[red]ingest failed[/red] (exit {code}):\n{why}")
        return code
    result = state.result()
    console.print(f"ingest: read {result.rows_read} rows = {result.rows_accepted} accepted + {result.rows_quarantined} "
                  f"quarantined + {result.rows_duplicate} duplicates ({result.files_ingested} file(s) read, "
                  f"{result.files_skipped} already ingested; {result.rows_replaced} earlier event(s) replaced)")
    for path in result.quarantined_files:
        console.print(f"[yellow]mostly quarantined, read again at the next ingest:[/yellow] {path}")
    return 0


def _input_arguments(command: argparse.ArgumentParser) -> None:
    """The flags that say what to read and where: shared by ``run`` and ``ingest``."""
    command.add_argument("--config", help="YAML or JSON file with PipelineConfig fields")
    command.add_argument("--preset", help="column mapping preset (recsys/presets.py): sample, taobao, diginetica, "
                         "diginetica_purchases, rees46, yoochoose_clicks, yoochoose_buys, gru4rec, retailrocket, ml100k, "
                         "movielens_dat, movielens_csv, sequence")
    command.add_argument("--input", help="raw log file or folder")
    command.add_argument("--items", help="item side-information CSV (item_id, category, brand, price)")
    command.add_argument("--lake", help="lake root folder (default data/lake/<dataset>; the dataset is --set dataset=NAME, "
                                        "else the preset's name, else the input's file or folder name)")
    command.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. walks.walk_length=20")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="recsys", description="Nightly recommendation pipeline.")
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the nightly flow now, locally")
    _input_arguments(run)
    run.set_defaults(func=cmd_run)
    ingest = commands.add_parser("ingest", help="ingest new raw files only, or read one file again (--reingest)")
    _input_arguments(ingest)
    ingest.add_argument("--reingest", metavar="PATH", help="read this raw file again with the current mapping, "
                        "replacing the events and quarantine rows of its earlier reads")
    ingest.set_defaults(func=cmd_ingest)
    latest = commands.add_parser("latest", help="print the LATEST.json pointer of the published tables")
    latest.add_argument("--lake", help="lake root folder (default data/lake/<dataset>)")
    latest.add_argument("--dataset", default="sample", type=_dataset, help="the dataset whose default lake to read (default sample)")
    latest.set_defaults(func=cmd_latest)
    back = commands.add_parser("rollback", help="restore the published tables to an earlier run date's commit (Delta restore)")
    back.add_argument("--to", required=True, metavar="RUN_DATE", help="the run date (YYYY-MM-DD) of the version")
    back.add_argument("--lake", help="lake root folder (default data/lake/<dataset>)")
    back.add_argument("--dataset", default="sample", type=_dataset, help="the dataset whose default lake to use (default sample)")
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
