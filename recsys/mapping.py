"""How a raw log's columns map onto the canonical events (``ColumnMapping``) and an items file's
columns onto the side-information fields (``ItemsMapping``). Presets (``recsys.presets``) are
instances of these; the pipeline config (``recsys.config``) holds one of each.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from recsys.settings import Strict

EVENT_TYPES = ("view", "cart", "favorite", "purchase")
EventType = Literal["view", "cart", "favorite", "purchase"]

# Names a delimiter may be given by where the character itself is awkward: a literal tab cannot pass
# `--set key=value` (YAML rejects it) and a lone space reads as null.
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "space": " "}
DELIMITER_HELP = ("field separator: one character, or several split literally without quoting (MovieLens "
                  "ratings.dat's '::'); 'tab' or '\\t' mean a tab, 'space' a space")

# format "sequence": one line per user, `user item item ...` (LightGCN, SASRec). The files carry no
# time, so each item gets a synthetic one that keeps its position and makes the daily temporal split
# leave-last-out: the user's items but the last on 2000-01-01 (00:00:00 + position seconds, one
# session), the last item at 2000-01-02 23:59:59 UTC. Run with window.test_days 1 (the default): the
# test day holds every user's last item, the training day the rest. See recsys.raw_files.
SEQUENCE_DEFAULTS: dict[str, Any] = {"delimiter": " ", "header": False, "time_format": "unix_s", "event_type": None}


def normalize_delimiter(value: object) -> object:
    """A delimiter given by name ('tab', '\\t', 'space', ...) as the character itself."""
    if isinstance(value, str) and value.strip().lower() in DELIMITER_NAMES:
        return DELIMITER_NAMES[value.strip().lower()]
    if isinstance(value, str) and any(c in value for c in "\"\r\n"):
        raise ValueError(f"a delimiter cannot hold a quote or a line break: {value!r}")
    return value


def _named_side_columns(mapping: "ColumnMapping | ItemsMapping") -> dict[str, str]:
    """Side-information field -> the raw column a mapping names for it, for the fields it names."""
    pairs = {"category": mapping.category, "brand": mapping.brand, "price": mapping.price}
    return {field: raw for field, raw in pairs.items() if raw}


class ColumnMapping(Strict):
    """How a raw log's columns map onto the canonical events schema."""

    format: Literal["csv", "jsonl", "parquet", "sequence"] = Field(
        "csv", description="raw file format (gzip allowed for csv/jsonl/sequence); sequence: one line per user, "
        "`user item item ...` ordered by position (LightGCN/SASRec files), each item an event with a synthetic "
        "time: all but the last item on 2000-01-01 one second apart, the last at 2000-01-02 23:59:59 UTC, so "
        "the daily temporal split (window.test_days 1) is leave-last-out; it defaults delimiter to space "
        "(any run of spaces or tabs), header false, time_format unix_s, event_type null",
    )
    delimiter: str = Field(",", min_length=1, description=DELIMITER_HELP)
    header: bool = Field(True, description="whether CSV files start with a header line")
    columns: tuple[str, ...] = Field((), description="CSV column names when the file has no header")
    user_id: str = Field("user_id", description="raw column holding the user id")
    item_id: str = Field("item_id", description="raw column holding the item id")
    event_time: str = Field("timestamp", description="raw column holding the event time")
    time_format: Literal["iso", "unix_s", "unix_ms", "date_plus_offset_ms"] = Field(
        "iso", description="how event_time is written; unix_s/unix_ms may carry decimals (1396860669.277), kept "
        "to the microsecond; date_plus_offset_ms adds time_offset_column (ms) to a date",
    )
    time_offset_column: str | None = Field(None, description="ms offset column for date_plus_offset_ms")
    event_type: str | None = Field(
        "event_type", description="raw column holding the event type; None means every event is fixed_event_type")
    fixed_event_type: EventType = Field(
        "view", description="the type of every event when event_type is None (purchase for a log of purchases only)")
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

    @model_validator(mode="before")
    @classmethod
    def _sequence_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("format") == "sequence":
            return {**SEQUENCE_DEFAULTS, **data}
        return data

    @field_validator("delimiter", mode="before")
    @classmethod
    def _delimiter_by_name(cls, value: object) -> object:
        return normalize_delimiter(value)

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
        if self.event_type is not None and not self.event_type_values:
            raise ValueError(f"event_type_values is empty, so every row of column {self.event_type!r} would be "
                             f"quarantined: map the raw values to {EVENT_TYPES}, or set event_type to null")
        unknown = sorted(set(self.event_type_values.values()) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"event_type_values maps to unknown canonical types {unknown}; allowed: {EVENT_TYPES}")
        if self.event_type is not None and self.fixed_event_type != "view":
            raise ValueError(f"fixed_event_type {self.fixed_event_type!r} applies only when event_type is null "
                             f"(it is {self.event_type!r})")
        if self.format == "sequence":
            self._check_sequence()
        return self

    def _check_sequence(self) -> None:
        """A sequence file has a user and items only: the time is synthetic, nothing else is read."""
        if self.time_format != "unix_s":
            raise ValueError(f"format 'sequence' writes synthetic unix seconds: time_format must be unix_s, "
                             f"not {self.time_format!r}")
        named = {"event_type": self.event_type, "session_id": self.session_id,
                 "time_offset_column": self.time_offset_column, **self.side_columns()}
        extra = sorted(name for name, column in named.items() if column)
        if extra:
            raise ValueError(f"format 'sequence' lines hold a user and items only; set {extra} to null")

    def side_columns(self) -> dict[str, str]:
        """Canonical side-information field -> raw column, for the fields this log has."""
        return _named_side_columns(self)


class ItemsMapping(Strict):
    """How an items file's columns map onto the side-information fields (item_id, category, brand, price)."""

    delimiter: str = Field(",", min_length=1, description=f"{DELIMITER_HELP} (of the items file)")
    item_id: str = Field("item_id", description="column holding the item id")
    category: str | None = Field("category", description="column holding the category (absent columns are skipped)")
    brand: str | None = Field("brand", description="column holding the brand")
    price: str | None = Field("price", description="column holding the price")

    @field_validator("delimiter", mode="before")
    @classmethod
    def _delimiter_by_name(cls, value: object) -> object:
        return normalize_delimiter(value)

    def side_columns(self) -> dict[str, str]:
        return _named_side_columns(self)
