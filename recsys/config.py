"""The pipeline's configuration: one pydantic model, ``PipelineConfig``, with one nested model per stage.

It is the Prefect flow parameter (so the UI renders it as a form and ``prefect.yaml`` overrides it),
and the only way settings reach the library: each stage function receives its own part of it.
Defaults run on the embedded sample with no edits. Every field has a default and a one-line reason;
a bad value fails validation before any stage runs, and the error names the field.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"
DEFAULT_LAKE = PROJECT_ROOT / "data" / "lake"

EVENT_TYPES = ("view", "cart", "favorite", "purchase")


def _first_line(path: Path) -> str:
    import gzip

    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rt", encoding="utf-8-sig") if gzipped else open(path, encoding="utf-8-sig")) as handle:
        return handle.readline().strip()


def _named_side_columns(mapping: "ColumnMapping | ItemsMapping") -> dict[str, str]:
    """Side-information field -> the raw column a mapping names for it, for the fields it names."""
    pairs = {"category": mapping.category, "brand": mapping.brand, "price": mapping.price}
    return {field: raw for field, raw in pairs.items() if raw}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkConfig(_Strict):
    master: str = Field("local[*]", description="Spark master URL: local[*] on one machine, spark://host:port on a cluster")
    driver_memory: str = Field("2g", pattern=r"^\d+[kmgtKMGT]?$", description="spark.driver.memory; the driver collects only edge lists, O(edges)")
    executor_memory: str = Field("2g", pattern=r"^\d+[kmgtKMGT]?$", description="spark.executor.memory on a cluster")
    shuffle_partitions: int = Field(8, ge=1, description="spark.sql.shuffle.partitions; small by default for one machine")
    show_progress: bool = Field(False, description="Spark's console progress bar (the CLI turns it on)")


class ColumnMapping(_Strict):
    """How a raw log's columns map onto the canonical events schema."""

    format: Literal["csv", "jsonl", "parquet"] = Field("csv", description="raw file format (gzip allowed for csv/jsonl)")
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field separator")
    header: bool = Field(True, description="whether CSV files start with a header line")
    columns: tuple[str, ...] = Field((), description="CSV column names when the file has no header")
    user_id: str = Field("user_id", description="raw column holding the user id")
    item_id: str = Field("item_id", description="raw column holding the item id")
    event_time: str = Field("timestamp", description="raw column holding the event time")
    time_format: Literal["iso", "unix_s", "unix_ms", "date_plus_offset_ms"] = Field(
        "iso", description="how event_time is written; date_plus_offset_ms adds time_offset_column (ms) to a date"
    )
    time_offset_column: str | None = Field(None, description="ms offset column for date_plus_offset_ms")
    event_type: str | None = Field("event_type", description="raw column holding the event type; None means all views")
    event_type_values: dict[str, str] = Field(
        default_factory=lambda: {t: t for t in EVENT_TYPES},
        description="raw event type value -> canonical type; other values are quarantined",
    )
    session_id: str | None = Field(None, description="raw session column; None means sessions are cut at the gap")
    null_markers: tuple[str, ...] = Field(("", "NA", "null", "NULL", "None"), description="raw values read as null")
    category: str | None = Field(None, description="raw column with the item category (side information)")
    brand: str | None = Field(None, description="raw column with the item brand (side information)")
    price: str | None = Field(None, description="raw column with the item price (side information)")
    valid_from: dt.datetime | None = Field(None, description="events before this instant are quarantined (the log's documented start)")
    valid_until: dt.datetime | None = Field(None, description="events at or after this instant are quarantined (the log's documented end)")

    @model_validator(mode="after")
    def _offset_needs_column(self) -> "ColumnMapping":
        if self.time_format == "date_plus_offset_ms" and not self.time_offset_column:
            raise ValueError("time_format 'date_plus_offset_ms' needs time_offset_column")
        if not self.header and self.format == "csv" and not self.columns:
            raise ValueError("a CSV without header needs 'columns'")
        for name in ("valid_from", "valid_until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a time zone, e.g. 2017-11-25T00:00:00+08:00")
        unknown = sorted(set(self.event_type_values.values()) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"event_type_values maps to unknown canonical types {unknown}; allowed: {EVENT_TYPES}")
        return self

    def side_columns(self) -> dict[str, str]:
        """Canonical side-information field -> raw column, for the fields this log has."""
        return _named_side_columns(self)


class ItemsMapping(_Strict):
    """How an items file's columns map onto the side-information fields (item_id, category, brand, price)."""

    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field separator of the items file")
    item_id: str = Field("item_id", description="column holding the item id")
    category: str | None = Field("category", description="column holding the category (absent columns are skipped)")
    brand: str | None = Field("brand", description="column holding the brand")
    price: str | None = Field("price", description="column holding the price")

    def side_columns(self) -> dict[str, str]:
        return _named_side_columns(self)


class IngestConfig(_Strict):
    input: Path = Field(SAMPLE_DIR / "events.csv.gz", description="raw log file or folder of files")
    items_input: Path | None = Field(SAMPLE_DIR / "items.csv.gz", description="optional item side-information CSV (item_id, category, brand, price)")
    preset: str | None = Field("sample", description="named column mapping (sample, taobao, diginetica, rees46); None uses `mapping`")
    mapping: ColumnMapping = Field(default_factory=ColumnMapping, description="column mapping used when preset is None")
    items_mapping: ItemsMapping | None = Field(None, description="columns of items_input; None = the preset's items layout, else item_id,category,brand,price")
    session_gap_minutes: int = Field(30, ge=1, description="inactivity gap that cuts a session when the log has none")
    max_future_hours: int = Field(24, ge=0, description="events later than now + this are quarantined as future-stamped")
    max_field_chars: int = Field(256, ge=8, description="ids longer than this are quarantined as absurd")
    max_late_days: int = Field(365, ge=1, description="events more than this many days before the newest event are quarantined: older than any training window")

    @field_validator("input")
    @classmethod
    def _input_exists(cls, path: Path) -> Path:
        path = path.expanduser().resolve()
        if not path.exists():
            raise ValueError(f"input path does not exist: {path}")
        return path

    @field_validator("items_input")
    @classmethod
    def _items_exists(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        path = path.expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"items_input is not a file: {path}")
        return path

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str | None) -> str | None:
        from recsys.presets import PRESETS

        if name is not None and name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
        return name

    @model_validator(mode="after")
    def _mapping_needs_no_preset(self) -> "IngestConfig":
        if "mapping" in self.model_fields_set and self.preset is not None:
            raise ValueError(f"ingest.mapping is given but ingest.preset is {self.preset!r}, which would win; "
                             "set ingest.preset to null to use the mapping")
        if self.items_input is not None:
            mapping = self.items_columns()
            header = _first_line(self.items_input)
            columns = [c.strip() for c in header.split(mapping.delimiter)]
            named = self.items_mapping.side_columns().values() if self.items_mapping else ()
            missing = [c for c in (mapping.item_id, *named) if c not in columns]
            if missing:
                raise ValueError(f"items_input {self.items_input} has no column(s) {missing} "
                                 f"(header: {header!r}, delimiter {mapping.delimiter!r}); see ingest.items_mapping")
        return self

    def items_columns(self) -> ItemsMapping:
        from recsys.presets import ITEMS_PRESETS

        return self.items_mapping or ITEMS_PRESETS.get(self.preset or "", ItemsMapping())

    def column_mapping(self) -> ColumnMapping:
        from recsys.presets import PRESETS

        return PRESETS[self.preset] if self.preset else self.mapping


class WindowConfig(_Strict):
    run_date: dt.date | None = Field(None, description="the day the run is for; None means the latest event date in the lake")
    train_days: int = Field(30, ge=1, description="days of events before the holdout used for training")
    test_days: int = Field(1, ge=1, description="the last days of the window held out for evaluation")


class GraphConfig(_Strict):
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


class WalksConfig(_Strict):
    walks_per_node: int = Field(5, ge=1, description="walks started from every node that has neighbours")
    walk_length: int = Field(20, ge=2, description="nodes per walk; a dead end ends a walk early")
    partitions: int = Field(4, ge=1, description="Spark partitions the start nodes are split into")


class _SkipGramSettings(_Strict):
    """Skip-gram with negative sampling settings, the same for gensim and the PyTorch models."""

    vector_size: int = Field(64, ge=2, description="embedding dimension")
    window: int = Field(5, ge=1, description="context window over a walk (dynamic, as word2vec's)")
    negative: int = Field(5, ge=1, description="negatives per positive pair, from the unigram^0.75 distribution")
    epochs: int = Field(5, ge=1, description="passes over the pairs")
    alpha: float = Field(0.025, gt=0, description="initial learning rate, decayed linearly over the whole run to min_alpha")
    min_alpha: float = Field(0.0001, gt=0, description="final learning rate")
    sample: float = Field(1e-3, ge=0, description="subsampling threshold for frequent items (word2vec's formula); 0 keeps all")


class Word2VecParams(_SkipGramSettings):
    input_mode: Literal["corpus_file", "iterator"] = Field(
        "corpus_file", description="feed gensim from a text corpus file (faster, see docs/benchmarks.md) or a Python iterator"
    )


class _NegativeSampling(_SkipGramSettings):
    """Settings of the PyTorch models trained with negative sampling (``recsys.models.negative_sampling``);
    a validation AUC is recorded after each epoch."""

    batch_size: int = Field(2048, ge=1, description="pairs per SGD step (capped at the number of items that train)")
    negatives_shared_by: int = Field(8, ge=1, description="consecutive pairs that share one draw of negatives (1 = word2vec's own draw per pair)")

    @model_validator(mode="after")
    def _batch_holds_groups(self):
        if self.batch_size % self.negatives_shared_by:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of negatives_shared_by ({self.negatives_shared_by})")
        return self


class SkipGramParams(_NegativeSampling):
    """PyTorch skip-gram on the walks (``recsys.models.skipgram``)."""


class SideInfoParams(_NegativeSampling):
    """Skip-gram with side information, averaged or EGES-weighted (``recsys.models.side_info``)."""

    price_buckets: int = Field(10, ge=1, description="price is side information as one of this many quantile buckets")


class MFParams(_NegativeSampling):
    """Matrix factorisation with biases (``recsys.models.mf``) on graph pairs (mf_pairs) or walk windows (mf_walks)."""

    alpha: float = Field(0.05, gt=0, description="initial learning rate, decayed linearly over the whole run")
    sample: float = Field(0.0, ge=0, description="subsampling threshold for mf_walks' walk tokens; 0 keeps all")
    init_scale: float = Field(0.1, gt=0, description="both factor matrices start uniform in +-init_scale")
    pairs_per_epoch: int | None = Field(None, ge=1, description="mf_pairs: edges drawn per epoch; None = as many pairs as an epoch of mf_walks")


class TrainConfig(_Strict):
    models: tuple[str, ...] = Field(("word2vec", "popular", "item_knn"), description="registered models to train and compare")
    deterministic: bool = Field(True, description="one training thread so the same seed gives identical tables; False uses all cores")
    word2vec: Word2VecParams = Field(default_factory=Word2VecParams, description="gensim word2vec parameters")
    skipgram: SkipGramParams = Field(default_factory=SkipGramParams, description="PyTorch skip-gram parameters")
    side_info: SideInfoParams = Field(default_factory=SideInfoParams, description="side_info_avg and eges parameters")
    mf: MFParams = Field(default_factory=MFParams, description="mf_pairs and mf_walks parameters")

    @field_validator("models")
    @classmethod
    def _known_models(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from recsys.models import REGISTRY

        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown models {unknown}; registered: {sorted(REGISTRY)}")
        if not names:
            raise ValueError("at least one model is needed")
        return names


class EvaluateConfig(_Strict):
    k: int = Field(10, ge=1, description="K of HitRate@K")
    max_pairs: int = Field(20000, ge=10, description="held-out pairs kept (sampled with the seed) to bound evaluation time")
    validation_share: float = Field(0.1, ge=0, lt=1, description="share of the sessions of the last validation_days training days held out for learning curves (PyTorch models only); 0 turns curves off")
    validation_days: int = Field(1, ge=1, description="the last training days whose sessions may be drawn for validation (never a test day)")
    validation_pairs: int = Field(5000, ge=10, description="co-occurring validation pairs kept (with as many sampled non-pairs)")


class PublishConfig(_Strict):
    top_n: int = Field(20, ge=1, description="recommendations per item in the item-to-item table")
    champion_metric: Literal["auc", "auc_seen", "auc_cold", "hit_rate"] = Field("auc", description="metric that picks the model to publish")
    tolerance: float = Field(0.02, ge=0, description="publish nothing if the champion's metric is this much below the last published one's")
    retention: int = Field(14, ge=1, description="published versions kept; older ones are removed, never the one _LATEST names")


class PipelineConfig(_Strict):
    """Everything one nightly run needs. Defaults run on the embedded sample."""

    lake: Path = Field(DEFAULT_LAKE / "sample", description="lake root; default data/lake/<dataset>, so datasets never share one")
    seed: int = Field(42, description="the one seed every random step derives its own from")
    dataset: str = Field("sample", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="name reported with every figure")
    spark: SparkConfig = Field(default_factory=SparkConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    graph: GraphConfig = Field(default_factory=GraphConfig)
    walks: WalksConfig = Field(default_factory=WalksConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    cache: bool = Field(True, description="skip a stage whose inputs, settings and code are unchanged since it last ran (Prefect caching); false recomputes everything")

    @model_validator(mode="before")
    @classmethod
    def _lake_per_dataset(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("lake") is None:
            data = {**data, "lake": DEFAULT_LAKE / str(data.get("dataset", "sample"))}
        return data

    @model_validator(mode="after")
    def _late_rows_reach_the_window(self) -> "PipelineConfig":
        window_days = self.window.train_days + self.window.test_days
        if self.ingest.max_late_days < window_days:
            raise ValueError(f"ingest.max_late_days ({self.ingest.max_late_days}) is shorter than the window "
                             f"(window.train_days + window.test_days = {window_days}): rows the window needs would be quarantined")
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
        path = path.expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise ValueError(f"lake is not a directory: {path}")
        return path
