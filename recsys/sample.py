"""The embedded sample: a deterministic synthetic e-commerce log with planted structure.

``python -m recsys.sample --out recsys/sample_data --seed 7`` writes the files committed under ``recsys/sample_data/`` (package data: the wheel ships them):

- ``events.csv.gz``: ``timestamp,user_id,item_id,event_type``; ISO 8601 UTC seconds
  (``2024-03-01T08:15:03Z``), types ``view``/``cart``/``purchase``, rows sorted by all four columns;
- ``items.csv.gz``: ``item_id,category,brand,price`` (price with 2 decimals).

Both are gzip with mtime 0, so the same seed writes byte-identical files. With the defaults (seed 7,
3,000 users ``u00001``.., 2,000 items ``i0001``.., 20 categories ``c01``..``c20``, 14 days from
2024-03-01) that is about 112k events.

What is planted, so tests and models can check that it is recovered:

- **categories and product lines**: every item is in one category (~100 items each); each category is
  split into *product lines* of 8-9 items, the fine structure. Each item has a brand (5 per category,
  ``b001``..``b100``) and a log-normal price whose level depends on the category;
- **long-tail popularity**: inside a category, item popularity is Zipf-like (rank ** -0.9);
- **users**: each has tastes over 1-3 categories (Dirichlet weights) and a long-tailed number of
  sessions (1 + Zipf(2), at most 25) spread over the days;
- **sessions**: a session picks one of its user's categories by taste, then a product line in it (the
  line of a popularity-weighted item), and has 3-15 views: 4% on a random catalogue item (noise), of
  the rest 75% on popularity-weighted items of the line and 25% elsewhere in the category;
- **funnel**: every event is a view; a viewed item is carted with probability 0.08 at the same step or
  a later one of its session, and a carted item is purchased with probability 0.35 at or after its cart,
  so in every session a purchase follows a cart of the item and a cart follows a view of it;
- **time**: events of a session are 5-239 seconds apart; a session starts between 07:00 and 23:00 UTC
  and at least 2 hours after the user's previous session ended, so cutting each user's events at a
  30-minute gap recovers the sessions exactly (a late session may run a little past midnight).

The ground truth is in memory only: ``generate_sample`` returns the items table with a
``product_line`` column (int32, numbered across the whole catalogue), which the CSV does not have.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

LINE_SIZE = 8  # a category of n items has n // LINE_SIZE product lines
BRANDS_PER_CATEGORY = 5
NOISE = 0.04  # share of a session's views on a random catalogue item
IN_LINE = 0.75  # share of the other views inside the session's product line
CART_RATE, PURCHASE_RATE = 0.08, 0.35
VIEWS_PER_SESSION = (3, 15)  # inclusive
EVENT_GAP_SECONDS = (5, 240)  # between consecutive events of a session, upper bound exclusive
SESSION_START_HOURS = (7, 23)  # a session starts in this window of its day (UTC)
SESSION_SPACING_SECONDS = 2 * 3600  # at least this between one session's end and the next one's start
MAX_SESSIONS = 25

EVENT_COLUMNS = ("timestamp", "user_id", "item_id", "event_type")
ITEM_COLUMNS = ("item_id", "category", "brand", "price")
KINDS = ("cart", "purchase", "view")  # the event types, in sort order


@dataclass(frozen=True)
class _Weighted:
    """Weighted draws from a fixed set of members: ``rng.choice(members, p=weights)`` with its CDF kept.

    It draws exactly what ``rng.choice`` would (same uniform, same CDF arithmetic), without
    re-validating and re-summing the weights on every call.
    """

    members: np.ndarray
    cdf: np.ndarray

    @classmethod
    def of(cls, members: np.ndarray, weights: np.ndarray) -> "_Weighted":
        cdf = np.asarray(weights, dtype=np.float64).cumsum()
        cdf /= cdf[-1]
        return cls(members, cdf)

    @classmethod
    def by_popularity(cls, members: np.ndarray, popularity: np.ndarray) -> "_Weighted":
        p = popularity[members]
        return cls.of(members, p / p.sum())

    def draw(self, rng: np.random.Generator) -> int:
        return int(self.members[self.cdf.searchsorted(rng.random(), side="right")])


@dataclass(frozen=True)
class _Catalogue:
    category: np.ndarray  # int, 0-based, items sorted by category
    line: np.ndarray  # int, 0-based product line, numbered across the catalogue
    popularity: np.ndarray  # float, Zipf-like inside each category
    brand: np.ndarray  # int, 0-based
    price: np.ndarray  # float, rounded to cents
    in_category: list[_Weighted]  # popularity-weighted draws per category
    in_line: dict[int, _Weighted]  # popularity-weighted draws per product line


@dataclass(frozen=True)
class _Users:
    tastes: list[_Weighted]  # per user: draws of a category by taste
    n_sessions: np.ndarray  # per user: sessions attempted over the days


def _catalogue(rng: np.random.Generator, n_items: int, n_categories: int) -> _Catalogue:
    category = np.sort(rng.integers(0, n_categories, n_items))
    line = np.zeros(n_items, dtype=np.int64)
    popularity = np.zeros(n_items)
    next_line = 0
    for c in range(n_categories):
        members = np.flatnonzero(category == c)
        n_lines = max(1, len(members) // LINE_SIZE)
        line[members] = next_line + np.arange(len(members)) % n_lines
        next_line += n_lines
        popularity[members] = 1.0 / (1 + rng.permutation(len(members))) ** 0.9
    brand = category * BRANDS_PER_CATEGORY + rng.integers(0, BRANDS_PER_CATEGORY, n_items)
    price = np.round(np.exp(rng.normal(2.5 + 0.15 * (category % 10), 0.5)), 2)
    in_category = [_Weighted.by_popularity(np.flatnonzero(category == c), popularity) for c in range(n_categories)]
    in_line = {int(l): _Weighted.by_popularity(np.flatnonzero(line == l), popularity) for l in np.unique(line)}
    return _Catalogue(category, line, popularity, brand, price, in_category, in_line)


def _users(rng: np.random.Generator, n_users: int, n_categories: int) -> _Users:
    tastes = []
    for _ in range(n_users):
        k = rng.integers(1, 4)
        categories = rng.choice(n_categories, k, replace=False)
        tastes.append(_Weighted.of(categories, rng.dirichlet(np.ones(k))))
    n_sessions = np.minimum(1 + rng.zipf(2.0, n_users), MAX_SESSIONS)
    return _Users(tastes, n_sessions)


def _session_views(rng: np.random.Generator, catalogue: _Catalogue, category: int) -> list[int]:
    """The items a session views, in order: mostly one product line of the category."""
    in_category = catalogue.in_category[category]
    in_line = catalogue.in_line[int(catalogue.line[in_category.draw(rng)])]
    views = []
    for _ in range(rng.integers(VIEWS_PER_SESSION[0], VIEWS_PER_SESSION[1] + 1)):
        roll = rng.random()
        if roll < NOISE:
            views.append(int(rng.integers(0, len(catalogue.line))))
        elif roll < NOISE + (1 - NOISE) * IN_LINE:
            views.append(in_line.draw(rng))
        else:
            views.append(in_category.draw(rng))
    return views


def _funnel(rng: np.random.Generator, views: list[int]) -> list[tuple[int, str]]:
    """Views in order; a carted item's cart comes after its view, a purchase after its cart."""
    after: list[list[tuple[int, str]]] = [[] for _ in views]
    for step, item in enumerate(views):
        if rng.random() < CART_RATE:
            cart_step = int(rng.integers(step, len(views)))
            after[cart_step].append((item, "cart"))
            if rng.random() < PURCHASE_RATE:
                after[int(rng.integers(cart_step, len(views)))].append((item, "purchase"))
    events = []
    for item, scheduled in zip(views, after):
        events.append((item, "view"))
        events.extend(scheduled)
    return events


def _user_events(rng: np.random.Generator, catalogue: _Catalogue, taste: _Weighted, n_sessions: int,
                 days: int, origin: int) -> list[tuple[int, int, str]]:
    """One user's events as (unix seconds, item index, type), session after session."""
    first, last = SESSION_START_HOURS[0] * 3600, SESSION_START_HOURS[1] * 3600
    events: list[tuple[int, int, str]] = []
    clock = 0
    for day in np.sort(rng.integers(0, days, n_sessions)):
        day_start = origin + int(day) * 86400
        begin = max(day_start + int(rng.integers(first, last)), clock + SESSION_SPACING_SECONDS)
        if begin > day_start + last:
            continue  # no room left that day: the user skips it
        t = begin
        for item, kind in _funnel(rng, _session_views(rng, catalogue, taste.draw(rng))):
            events.append((t, item, kind))
            t += int(rng.integers(*EVENT_GAP_SECONDS))
        clock = t
    return events


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """``prefix`` + 1-based number, zero-padded so that string order is number order."""
    width = max(width, len(str(n)))
    return pa.array([f"{prefix}{i + 1:0{width}d}" for i in range(n)], pa.string())


def generate_sample(seed: int = 7, n_users: int = 3000, n_items: int = 2000, n_categories: int = 20, days: int = 14,
                    start: dt.date = dt.date(2024, 3, 1)) -> tuple[pa.Table, pa.Table]:
    """The sample as tables: events and items, the same for the same arguments.

    events: ``timestamp`` (timestamp[us, UTC]), ``user_id``, ``item_id``, ``event_type`` (strings),
    sorted by all four. items: ``item_id``, ``category``, ``brand`` (strings), ``price`` (float64),
    and the planted ``product_line`` (int32), which the written CSV leaves out.
    """
    rng = np.random.default_rng(seed)
    catalogue = _catalogue(rng, n_items, n_categories)
    users = _users(rng, n_users, n_categories)
    origin = int(dt.datetime.combine(start, dt.time(), dt.timezone.utc).timestamp())
    times, user_index, item_index, kinds = [], [], [], []
    for user in range(n_users):
        n_sessions = int(users.n_sessions[user])
        for t, item, kind in _user_events(rng, catalogue, users.tastes[user], n_sessions, days, origin):
            times.append(t)
            user_index.append(user)
            item_index.append(item)
            kinds.append(KINDS.index(kind))
    times_, users_, items_, kinds_ = (np.array(v, dtype=np.int64) for v in (times, user_index, item_index, kinds))
    order = np.lexsort((kinds_, items_, users_, times_))  # ids are zero-padded: index order is string order
    events = pa.table({
        "timestamp": pa.array(times_[order] * 1_000_000, pa.timestamp("us", tz="UTC")),
        "user_id": _ids("u", n_users, 5).take(pa.array(users_[order])),
        "item_id": _ids("i", n_items, 4).take(pa.array(items_[order])),
        "event_type": pa.array(KINDS, pa.string()).take(pa.array(kinds_[order])),
    })
    items = pa.table({
        "item_id": _ids("i", n_items, 4),
        "category": _ids("c", n_categories, 2).take(pa.array(catalogue.category)),
        "brand": _ids("b", n_categories * BRANDS_PER_CATEGORY, 3).take(pa.array(catalogue.brand)),
        "price": pa.array(catalogue.price, pa.float64()),
        "product_line": pa.array(catalogue.line.astype(np.int32)),
    })
    return events, items


def product_line_of(items: pa.Table) -> dict[str, int]:
    """item_id -> planted product line, from the items table ``generate_sample`` returns."""
    return dict(zip(items.column("item_id").to_pylist(), items.column("product_line").to_pylist()))


def iso_timestamps(column: pa.ChunkedArray | pa.Array) -> list[str]:
    """Timestamps as ISO 8601 UTC seconds, ``2024-03-01T08:15:03Z``."""
    seconds = column.to_numpy().astype("datetime64[s]")
    return [text + "Z" for text in np.datetime_as_string(seconds, unit="s").tolist()]


def _gzip_csv(path: Path, header: tuple[str, ...], columns: list[list[str]]) -> Path:
    """A gzip CSV with mtime 0 and no file name in its header, so the bytes depend on the rows alone."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*columns))
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as handle:
        handle.write(text.getvalue().encode())
    return path


def write_sample(out_dir: Path, seed: int = 7, n_users: int = 3000, n_items: int = 2000,
                 n_categories: int = 20) -> tuple[Path, Path]:
    """Write ``events.csv.gz`` and ``items.csv.gz`` into ``out_dir``; the same seed gives byte-identical files.
    More users and items scale the log up with the same planted structure (about 37 events per user;
    ``benchmarks/scale.py`` keeps 150 users per item and 100 items per category)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    events, items = generate_sample(seed, n_users, n_items, n_categories)
    event_columns = [iso_timestamps(events.column("timestamp"))]
    event_columns += [events.column(name).to_pylist() for name in EVENT_COLUMNS[1:]]
    item_columns = [items.column(name).to_pylist() for name in ITEM_COLUMNS[:3]]
    item_columns.append([f"{price:.2f}" for price in items.column("price").to_pylist()])
    return (_gzip_csv(out_dir / "events.csv.gz", EVENT_COLUMNS, event_columns),
            _gzip_csv(out_dir / "items.csv.gz", ITEM_COLUMNS, item_columns))


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description="Write the embedded sample log (events.csv.gz, items.csv.gz).")
    cli.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "sample_data")
    cli.add_argument("--seed", type=int, default=7)
    cli.add_argument("--users", type=int, default=3000, help="users (about 37 events each)")
    cli.add_argument("--items", type=int, default=2000)
    cli.add_argument("--categories", type=int, default=20)
    arguments = cli.parse_args(argv)
    for written in write_sample(arguments.out, arguments.seed, arguments.users, arguments.items, arguments.categories):
        print(written, written.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
