"""The pipeline's configuration: one pydantic model, ``PipelineConfig``, with one nested model per stage.

It is the Prefect flow parameter (so the UI renders it as a form and ``prefect.yaml`` overrides it),
and the only way settings reach the library: each stage function receives its own part of it.
Defaults run on the embedded sample with no edits. Every field has a default and a one-line reason;
a bad value fails validation before any stage runs, and the error names the field.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from recsys.mapping import EVENT_TYPES, ColumnMapping, ItemsMapping
from recsys.models import REGISTRY, sequence_models, serving
from recsys.presets import ITEMS_PRESETS, PRESETS
from recsys.settings import Strict

DEFAULT_LAKE = Path("data") / "lake"  # relative to the folder a run starts in
USER_TO_ITEM = "user_to_item"
SAMPLE = "sample"  # the embedded sample's dataset name (and the default preset's)
DATASET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_TOP_N = 10_000  # the largest top-N or K accepted: rows per item or user, and the ranks each metric reads
# endings dropped from an input's file name to make its dataset name (compression first, then format)
_NAME_ENDINGS = (".gz", ".gzip", ".bz2", ".xz", ".zst", ".zip", ".csv", ".tsv", ".txt", ".dat", ".json", ".jsonl",
                 ".ndjson", ".parquet", ".inter", ".log")


def sample_file(name: str) -> Path:
    """A file of the embedded sample, shipped inside the package (``recsys/sample_data/``)."""
    return Path(str(resources.files("recsys") / "sample_data" / name))


def _first_line(path: Path) -> str:
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rt", encoding="utf-8-sig") if gzipped else open(path, encoding="utf-8-sig")) as handle:
        return handle.readline().strip()


class SparkConfig(Strict):
    master: str = Field("local[*]", description="Spark master URL: local[*] on one machine, spark://host:port on a cluster")
    driver_memory: str = Field("2g", pattern=r"^\d+[kmgtKMGT]?$", description="spark.driver.memory; the driver collects only edge lists, O(edges)")
    executor_memory: str = Field("2g", pattern=r"^\d+[kmgtKMGT]?$", description="spark.executor.memory on a cluster")
    shuffle_partitions: int = Field(8, ge=1, description="spark.sql.shuffle.partitions; small by default for one machine")
    driver_java_options: str = Field(
        "-XX:G1PeriodicGCInterval=5000",
        description="spark.driver.extraJavaOptions. The default has the JVM's G1 collector collect and return heap "
                    "it no longer uses after 5 seconds without a collection: the session stays open while the models "
                    "train, and after the 10M-event ingest and graph its JVM otherwise held 2.6 GiB through training "
                    "(0.8 GiB with it; benchmarks/jvm_memory.py)")
    show_progress: bool = Field(False, description="Spark's console progress bar (the CLI turns it on)")


class IngestConfig(Strict):
    input: Path | None = Field(None, description="raw log file or folder of files; None = the embedded sample (recsys/sample_data)")
    items_input: Path | None = Field(None, description="optional item side-information CSV (item_id, category, brand, price); with input None, the sample's items")
    preset: str | None = Field("sample", description="named column mapping (recsys/presets.py: sample, taobao, diginetica, diginetica_purchases, rees46, yoochoose_clicks, yoochoose_buys, gru4rec, retailrocket, ml100k, movielens_dat, movielens_csv, sequence); None uses `mapping`")
    mapping: ColumnMapping = Field(default_factory=ColumnMapping, description="column mapping used when preset is None")
    items_mapping: ItemsMapping | None = Field(None, description="columns of items_input; None = the preset's items layout, else item_id,category,brand,price")
    session_gap_minutes: int = Field(30, ge=1, description="inactivity gap that cuts a session when the log has none")
    max_future_hours: int = Field(24, ge=0, le=366 * 24, description="events later than now + this are quarantined as future-stamped")
    max_future_days: int = Field(30, ge=1, le=36_500, description="events more than this many days after the lake's newest day (in an empty lake: after the batch's median day), with no event day between, are quarantined: one wrongly stamped row cannot become the newest event")
    max_field_chars: int = Field(256, ge=8, description="ids longer than this are quarantined as absurd")
    max_late_days: int = Field(365, ge=1, le=36_500, description="events more than this many days before the newest event are quarantined: older than any training window")

    @field_validator("input", "items_input")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser().resolve()

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str | None) -> str | None:
        if name is not None and name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
        return name

    @model_validator(mode="after")
    def _mapping_needs_no_preset(self) -> "IngestConfig":
        if "mapping" in self.model_fields_set and self.preset is not None:
            raise ValueError(f"ingest.mapping is given but ingest.preset is {self.preset!r}, which would win; "
                             "set ingest.preset to null to use the mapping")
        return self

    def source(self) -> Path:
        """The raw log file or folder this run ingests."""
        return self.input if self.input is not None else sample_file("events.csv.gz")

    def items_source(self) -> Path | None:
        if self.items_input is not None or self.input is not None:
            return self.items_input
        return sample_file("items.csv.gz")

    def check_files(self) -> None:
        """The checks that read the disk, run when a run starts (never at validation): each names its field."""
        if not self.source().exists():
            raise ValueError(f"ingest.input: path does not exist: {self.source()}")
        items = self.items_source()
        if items is None:
            return
        if not items.is_file():
            raise ValueError(f"ingest.items_input: not a file: {items}")
        mapping = self.items_columns()
        header = _first_line(items)
        columns = [c.strip() for c in header.split(mapping.delimiter)]
        named = self.items_mapping.side_columns().values() if self.items_mapping else ()
        missing = [c for c in (mapping.item_id, *named) if c not in columns]
        if missing:
            raise ValueError(f"ingest.items_input: {items} has no column(s) {missing} "
                             f"(header: {header!r}, delimiter {mapping.delimiter!r}); see ingest.items_mapping")

    def items_columns(self) -> ItemsMapping:
        return self.items_mapping or ITEMS_PRESETS.get(self.preset or "", ItemsMapping())

    def column_mapping(self) -> ColumnMapping:
        return PRESETS[self.preset] if self.preset else self.mapping


class WindowConfig(Strict):
    run_date: dt.date | None = Field(None, description="the day the run is for; None picks it from the lake by run_date_rule")
    run_date_rule: Literal["last_complete_day", "last_day"] = Field(
        "last_complete_day", description="with run_date None: the newest event day unless it looks partial (last_complete_day: "
        "then the day before it), or always the newest (last_day)")
    complete_day_share: float = Field(0.5, ge=0, le=1, description="last_complete_day: the newest event day counts as complete "
                                      "when it holds at least this share of the median events per day of the 7 event days before it")
    train_days: int = Field(30, ge=1, description="days of events before the holdout used for training")
    test_days: int = Field(1, ge=1, description="the last days of the window held out for evaluation")


class GraphConfig(Strict):
    window: int = Field(3, ge=1, description="max distance between two events of a session that form an edge")
    decay: float = Field(0.7, gt=0, le=1, description="an edge at distance d counts decay**(d-1)")
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "favorite": 2.0, "cart": 3.0, "purchase": 5.0},
        description="weight of an event type; a pair counts the larger weight of its two events",
    )
    min_weight: float = Field(0.0, ge=0, description="edges with a summed weight below this are dropped")
    max_session_length: int = Field(2000, ge=2, description="sessions with more events than this (bots, crawlers) are left out of the graph and the holdout pairs, and counted in the report")

    @field_validator("event_weights")
    @classmethod
    def _weights_cover_types(cls, weights: dict[str, float]) -> dict[str, float]:
        missing = [t for t in EVENT_TYPES if t not in weights]
        if missing:
            raise ValueError(f"event_weights lacks {missing}")
        if any(w <= 0 for w in weights.values()):
            raise ValueError("event_weights must be positive")
        return weights


class WalksConfig(Strict):
    walks_per_node: int = Field(5, ge=1, description="walks started from every node that has neighbours")
    walk_length: int = Field(20, ge=2, description="nodes per walk; a dead end ends a walk early")
    partitions: int = Field(4, ge=1, description="Spark partitions the start nodes are split into")


class InteractionsConfig(Strict):
    """The user x item matrix of the training window that user-to-item models train on."""

    weighting: Literal["binary", "event_weights"] = Field("binary", description="an interaction counts 1 (implicit feedback, as the papers), or the summed graph.event_weights of the user's events on the item")
    min_user_events: int = Field(1, ge=1, description="users with fewer distinct items are left out (repeated with min_item_events until both hold: the k-core)")
    min_item_events: int = Field(1, ge=1, description="items with fewer distinct users are left out")
    validation_min_items: int = Field(3, ge=0, description="users with at least this many items give their latest one to the learning-curve validation split (held out of training); 0 turns user curves off")


class SequencesConfig(Strict):
    """The item sequences (sessions in time order) that sequence models train on and next-item evaluation tests."""

    event_types: tuple[str, ...] | None = Field(None, description="the event types a sequence keeps (e.g. [view]); None keeps all")
    collapse_repeats: bool = Field(True, description="an item repeated right after itself counts once (A A B -> A B)")

    @field_validator("event_types")
    @classmethod
    def _some_types(cls, types: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if types is not None and not types:
            raise ValueError("sequences.event_types is empty: list at least one type, or leave it out to keep all")
        unknown = sorted(set(types or ()) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"sequences.event_types: unknown event types {unknown}; known: {list(EVENT_TYPES)}")
        return types


class _TrainBase(Strict):
    models: tuple[str, ...] = Field(("word2vec", "popular", "item_knn", "lightgcn"), description="registered models to train and compare; each fills the tables it serves (recsys config lists them)")
    threads: int | Literal["auto"] = Field("auto", description="cores the train stage uses: auto = every core this process may run on; 1 = one thread, the models fitted one after another in the flow's process")
    parallel_models: bool = Field(True, description="fit the listed models in parallel worker processes, one thread each, up to `threads` at a time: the same tables as with threads 1, on any machine (each fit is single-threaded and seeded); false fits them one after another, each on `threads` threads (gensim's workers race: not reproducible above 1; PyTorch's small per-batch ops gain nothing, see docs/benchmarks.md)")
    deterministic: bool | None = Field(None, description="old setting, still accepted: true = threads 1; false = threads auto with parallel_models false. Left out: both follow threads and parallel_models")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the PyTorch user models train: auto picks cuda when a GPU is visible, else cpu")

    @field_validator("models")
    @classmethod
    def _known_models(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown models {unknown}; registered: {sorted(REGISTRY)}")
        if not names:
            raise ValueError("at least one model is needed")
        return names

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, threads: int | str) -> int | str:
        if threads != "auto" and threads < 1:
            raise ValueError(f"train.threads must be auto or at least 1, got {threads}")
        return threads

    @model_validator(mode="before")
    @classmethod
    def _old_deterministic(cls, data: Any) -> Any:
        """``deterministic`` of old configs, when ``threads`` and ``parallel_models`` are left out."""
        if isinstance(data, dict) and data.get("deterministic") is not None and not {"threads", "parallel_models"} & set(data):
            return {**data, "threads": 1 if data["deterministic"] else "auto", "parallel_models": False}
        return data

    def params_for(self, name: str) -> Any:
        """The params instance of model ``name``: its ``train.<settings>`` block, or the defaults."""
        spec = REGISTRY[name]
        block = getattr(self, spec.settings, None) if spec.settings else None
        return block if block is not None else spec.params()


def _settings_blocks() -> dict[str, Any]:
    """One ``train.<settings>`` field per settings block of the registry, typed by its params class."""
    blocks: dict[str, Any] = {}
    for spec in REGISTRY.values():
        if spec.settings and spec.settings not in blocks:
            users = ", ".join(n for n, s in REGISTRY.items() if s.settings == spec.settings)
            blocks[spec.settings] = (spec.params, Field(default_factory=spec.params, description=f"settings of {users}"))
    return blocks


TrainConfig = create_model("TrainConfig", __base__=_TrainBase, __module__=__name__, **_settings_blocks())
TrainConfig.__doc__ = "Which models to train, and each model's settings (built from the registry, recsys.models)."


class EvaluateConfig(Strict):
    k: int = Field(10, ge=1, le=MAX_TOP_N, description="K of HitRate@K")
    max_pairs: int = Field(20000, ge=10, description="held-out pairs kept (sampled with the seed) to bound evaluation time")
    validation_share: float = Field(0.1, ge=0, lt=1, description="share of the sessions of the last validation_days training days held out for learning curves (PyTorch models only); 0 turns curves off")
    validation_days: int = Field(1, ge=1, description="the last training days whose sessions may be drawn for validation (never a test day)")
    validation_pairs: int = Field(5000, ge=10, description="co-occurring validation pairs kept (with as many sampled non-pairs)")
    ks: tuple[int, ...] = Field((10, 20, 50), min_length=1, description="K of the user-to-item ranking metrics (Recall, NDCG, Precision, HitRate, MRR @K)")
    repeat_items: bool = Field(False, description="whether a test-day item the user already had in training counts as a positive (and is then ranked, not excluded)")
    min_positives: int = Field(100, ge=0, description="fewest held-out pairs (in the split of publish.champion_metric) for an item-to-item champion: below it none is picked, nothing is published and the gate's reference stays")
    min_users: int = Field(100, ge=0, description="fewest evaluated users for a user-to-item champion: below it none is picked, nothing is published and the gate's reference stays")
    next_item_sessions: int = Field(5000, ge=1, description="test sessions kept (a seeded sample) for next-item evaluation, to bound its time")
    bootstrap: int = Field(200, ge=0, description="bootstrap resamples of the test sessions behind each next-item interval; 0 reports none")

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, ks: tuple[int, ...]) -> tuple[int, ...]:
        if min(ks) < 1 or max(ks) > MAX_TOP_N:
            raise ValueError(f"every K must be between 1 and {MAX_TOP_N}, got {ks}")
        return tuple(sorted(set(ks)))


class PublishConfig(Strict):
    top_n: int = Field(20, ge=1, le=MAX_TOP_N, description="recommendations per item in the item-to-item table")
    champion_metric: Literal["next_recall", "next_mrr", "auc", "auc_seen", "auc_cold", "hit_rate"] = Field("next_recall", description="metric that picks the item-to-item model to publish: next-item Recall@top_n / MRR@top_n on the test sessions (recsys/next_item.py), or the pair AUC / HitRate@evaluate.k")
    user_top_n: int = Field(20, ge=1, le=MAX_TOP_N, description="recommendations per user in the user-to-item table")
    user_champion_metric: str = Field("ndcg@20", pattern=r"^(recall|ndcg|precision|hit|mrr)@\d+$", description="metric that picks the user-to-item model to publish; its K must be one of evaluate.ks")
    exclude_seen: bool = Field(True, description="leave out of a user's published rows the items the user interacted with in the training window (a sequence model with recommend_seen true, the default, keeps them: sessions repeat items)")
    tolerance: float = Field(0.02, ge=0, description="publish nothing if the champion's metric is this much below the last published one's")
    retention: int = Field(14, ge=1, description="run dates whose data files the published Delta tables keep (for rollback); older ones are vacuumed, never what the current snapshot needs")
    ann_min_items: int = Field(50_000, ge=0, description="an embedding or factor model with at least this many candidate items publishes its top-N by approximate nearest-neighbour search (HNSW, recsys/ann.py), with its recall against the exact top-N measured on a sample and shown in the report; below it, exact search; 0 = always exact")
    ann_min_recall: float = Field(0.95, ge=0, le=1, description="the approximate search's recall@N against the exact top-N on the run's sample of 1,000 anchors that publishing aims for: below it, ef_search doubles from 128 (up to 2,048) before the table is searched; the report gives the recall reached")


class CatalogueTooSmall(ValueError):
    """A top-N or K larger than the run's catalogue: a configuration error found once the catalogue is known."""


def dataset_name(path: Path | str) -> str:
    """The dataset name an input path gives: a file's name without its format and compression endings
    (``UserBehavior_head.csv`` -> ``UserBehavior_head``, ``clicks.csv.gz`` -> ``clicks``), or a folder's
    name, with characters the dataset pattern refuses replaced by ``_``; "" when nothing is left."""
    name = Path(str(path)).expanduser().name or Path(str(path)).expanduser().resolve().name
    while name.lower().endswith(_NAME_ENDINGS):
        name = name[:name.rfind(".")]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return re.sub(r"^[^A-Za-z0-9]+", "", name)[:64].rstrip("._-")


def infer_dataset(ingest: object) -> str:
    """The dataset name of a config that gives none: the preset's (unless it is the default ``sample``),
    else the input's name (``dataset_name``), else ``sample`` (no input: the embedded sample).

    ``ingest`` is the raw ``ingest`` value (a dict, an ``IngestConfig`` or None); nothing is read from disk.
    """
    if isinstance(ingest, IngestConfig):
        preset, source = ingest.preset, ingest.input
    elif isinstance(ingest, dict):
        preset, source = ingest.get("preset", SAMPLE), ingest.get("input")
    else:
        preset, source = SAMPLE, None
    if isinstance(preset, str) and preset != SAMPLE:
        return preset
    if source is None:
        return SAMPLE
    name = dataset_name(source)
    if not name or name == SAMPLE:
        raise ValueError(f"dataset: cannot take a dataset name from ingest.input {str(source)!r}; "
                         "name the data with --set dataset=NAME (letters, digits, '_', '.', '-')")
    return name


class PipelineConfig(Strict):
    """Everything one nightly run needs. Defaults run on the embedded sample."""

    lake: Path = Field(DEFAULT_LAKE / SAMPLE, description="lake root; left out: data/lake/<dataset> under the current folder, so datasets never share one")
    seed: int = Field(42, description="the one seed every random step derives its own from")
    dataset: str = Field(SAMPLE, pattern=DATASET_PATTERN, description="name reported with every figure; left out: the preset's "
                         "name (unless sample), else the name of ingest.input, else sample (the embedded sample)")
    spark: SparkConfig = Field(default_factory=SparkConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    graph: GraphConfig = Field(default_factory=GraphConfig)
    walks: WalksConfig = Field(default_factory=WalksConfig)
    interactions: InteractionsConfig = Field(default_factory=InteractionsConfig)
    sequences: SequencesConfig = Field(default_factory=SequencesConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    cache: bool = Field(True, description="skip a stage whose inputs, settings and code are unchanged since it last ran (Prefect caching); false recomputes everything")

    @model_validator(mode="before")
    @classmethod
    def _dataset_and_its_lake(cls, data: object) -> object:
        """A dataset left out is inferred (``infer_dataset``); a lake left out is ``data/lake/<dataset>``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("dataset") is None:
            data["dataset"] = infer_dataset(data.get("ingest"))
        if data.get("lake") is None:
            data["lake"] = DEFAULT_LAKE / str(data["dataset"])
        return data

    @model_validator(mode="before")
    @classmethod
    def _sequences_test_their_last_day(cls, data: object) -> object:
        """A sequence file's synthetic clock (``ColumnMapping.format``) puts only each user's last item on
        the newest day: a small day that is whole, so there the run date rule defaults to last_day."""
        if not isinstance(data, dict):
            return data
        try:
            ingest = IngestConfig.model_validate(data.get("ingest") or {})
        except ValidationError:
            return data  # reported, with its field, when the ingest field is validated
        window = data.get("window") or {}
        if ingest.column_mapping().format == "sequence" and isinstance(window, dict) and "run_date_rule" not in window:
            return {**data, "window": {**window, "run_date_rule": "last_day"}}
        return data

    @model_validator(mode="after")
    def _own_data_never_in_the_samples_lake(self) -> "PipelineConfig":
        if self.ingest.input is not None and self.dataset == SAMPLE:
            raise ValueError(f"dataset: {SAMPLE!r} names the embedded sample, but ingest.input is {self.ingest.input}: "
                             "name your data (--set dataset=NAME) or leave dataset out to take the input's name")
        if self.dataset != SAMPLE and self.lake == (DEFAULT_LAKE / SAMPLE).resolve():
            raise ValueError(f"lake: {self.lake} is the embedded sample's lake, but dataset is {self.dataset!r}: leave "
                             f"lake out (data/lake/{self.dataset}) or choose another folder")
        return self

    @model_validator(mode="after")
    def _late_rows_reach_the_window(self) -> "PipelineConfig":
        window_days = self.window.train_days + self.window.test_days
        if self.ingest.max_late_days < window_days:
            raise ValueError(f"ingest.max_late_days ({self.ingest.max_late_days}) is shorter than the window "
                             f"(window.train_days + window.test_days = {window_days}): rows the window needs would be quarantined")
        return self

    @model_validator(mode="after")
    def _user_metric_has_its_k(self) -> "PipelineConfig":
        k = int(self.publish.user_champion_metric.split("@")[1])
        if k not in self.evaluate.ks:
            raise ValueError(f"publish.user_champion_metric {self.publish.user_champion_metric} needs K={k} in evaluate.ks {list(self.evaluate.ks)}")
        return self

    @model_validator(mode="after")
    def _lake_apart_from_inputs(self) -> "PipelineConfig":
        for name, path in (("ingest.input", self.ingest.input), ("ingest.items_input", self.ingest.items_input)):
            if path is None:
                continue
            if path == self.lake or self.lake in path.parents:
                raise ValueError(f"{name} {path} is inside the lake {self.lake}: the lake would ingest its own files")
            if path in self.lake.parents:
                raise ValueError(f"lake {self.lake} is inside {name} {path}: ingest would read the lake as raw logs")
        return self

    @field_validator("lake", mode="before")
    @classmethod
    def _no_uri_lake(cls, value: object) -> object:
        if "://" in str(value):
            raise ValueError(f"only local (or mounted shared) paths are supported for the lake so far, not {value}")
        return value

    @field_validator("lake")
    @classmethod
    def _resolve_lake(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    def check_files(self) -> None:
        """What validation cannot check without reading the disk; a run calls it before any stage."""
        if self.lake.exists() and not self.lake.is_dir():
            raise ValueError(f"lake: not a directory: {self.lake}")
        self.ingest.check_files()

    def check_catalogue(self, items: int) -> None:
        """Once the run knows its catalogue (the graph's ``items`` nodes): no top-N or K may exceed it."""
        wanted = {"publish.top_n": self.publish.top_n, "evaluate.k": self.evaluate.k,
                  **({"publish.user_top_n": self.publish.user_top_n, "evaluate.ks": max(self.evaluate.ks)}
                     if self.user_models() else {})}
        for field, value in wanted.items():
            if value > items:
                raise CatalogueTooSmall(f"{field} ({value}) is more than the {items} items of this run's training "
                                        f"window: lower {field} to at most {items}")

    def user_models(self) -> tuple[str, ...]:
        """The listed models that fill the user-to-item table (none: the run publishes item-to-item only)."""
        return serving(USER_TO_ITEM, self.train.models)

    def sequence_models(self) -> tuple[str, ...]:
        """The listed next-item models (they read the training window's sequences, stored beside the graph)."""
        return sequence_models(self.train.models)

    def next_item_ks(self) -> tuple[int, ...]:
        """The K of the next-item metrics: evaluate.ks and publish.top_n (the item-to-item champion's N)."""
        return tuple(sorted(set(self.evaluate.ks) | {self.publish.top_n}))

    def curves_wanted(self) -> bool:
        """Whether a listed model records learning curves (and so validation sessions are held out)."""
        return self.evaluate.validation_share > 0 and any(REGISTRY[m].curves for m in self.train.models)
