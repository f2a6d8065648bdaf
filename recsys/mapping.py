"""How a raw log's columns map onto the canonical events (``ColumnMapping``) and an items file's
columns onto the side-information fields (``ItemsMapping``). Presets (``recsys.presets``) are
instances of these; the pipeline config (``recsys.config``) holds one of each.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from recsys.settings import Strict

EVENT_TYPES = ("view", "cart", "favorite", "purchase")


def _named_side_columns(mapping: "ColumnMapping | ItemsMapping") -> dict[str, str]:
    """Side-information field -> the raw column a mapping names for it, for the fields it names."""
    pairs = {"category": mapping.category, "brand": mapping.brand, "price": mapping.price}
    return {field: raw for field, raw in pairs.items() if raw}


class ColumnMapping(Strict):
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


class ItemsMapping(Strict):
    """How an items file's columns map onto the side-information fields (item_id, category, brand, price)."""

    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field separator of the items file")
    item_id: str = Field("item_id", description="column holding the item id")
    category: str | None = Field("category", description="column holding the category (absent columns are skipped)")
    brand: str | None = Field("brand", description="column holding the brand")
    price: str | None = Field("price", description="column holding the price")

    def side_columns(self) -> dict[str, str]:
        return _named_side_columns(self)
