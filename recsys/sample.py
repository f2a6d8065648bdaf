"""The embedded sample: a deterministic synthetic e-commerce log with planted structure.

What is planted, so tests can check that a model recovers it:
- a catalogue of items in categories, each category split into *product lines* of ~8 items (the fine
  structure); each item has a brand (a few per category) and a price (log-normal, level by category);
- long-tail popularity inside every category (Zipf);
- users with tastes over 1-3 categories and a long-tailed number of sessions over the days;
- sessions that pick one of the user's categories, then one product line, and browse mostly inside
  that line, sometimes elsewhere in the category, rarely anywhere (noise);
- a funnel: every event is a view; a viewed item may be carted later in the session, a carted one
  purchased.
Events of a session are seconds to minutes apart; a user's sessions are hours apart, so cutting at a
30-minute gap recovers them. ``generate_sample`` returns the tables (items with their ``product_line``);
``write_sample`` writes the CSV files committed under ``data/sample/`` (without ``product_line``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import io
from pathlib import Path

import numpy as np
import pyarrow as pa

LINE_SIZE = 8
NOISE = 0.04  # share of a session's views on a random catalogue item
IN_LINE = 0.75  # share of the other views inside the session's product line
CART_RATE, PURCHASE_RATE = 0.08, 0.35


def _catalogue(rng: np.random.Generator, n_items: int, n_categories: int) -> dict[str, np.ndarray]:
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
    brand = category * 5 + rng.integers(0, 5, n_items)
    price = np.round(np.exp(rng.normal(2.5 + 0.15 * (category % 10), 0.5)), 2)
    return {"category": category, "line": line, "popularity": popularity, "brand": brand, "price": price}


def _users(rng: np.random.Generator, n_users: int, n_categories: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    tastes, weights = [], []
    for _ in range(n_users):
        k = rng.integers(1, 4)
        tastes.append(rng.choice(n_categories, k, replace=False))
        weights.append(rng.dirichlet(np.ones(k)))
    sessions = np.minimum(1 + rng.zipf(2.0, n_users), 25)
    return tastes, weights, sessions


def _pick(rng: np.random.Generator, members: np.ndarray, popularity: np.ndarray) -> int:
    p = popularity[members]
    return int(members[rng.choice(len(members), p=p / p.sum())])


def _session_views(rng: np.random.Generator, cat: dict[str, np.ndarray], category: int,
                   by_category: list[np.ndarray], by_line: dict[int, np.ndarray]) -> list[int]:
    in_category = by_category[category]
    line = cat["line"][_pick(rng, in_category, cat["popularity"])]
    views = []
    for _ in range(rng.integers(3, 16)):
        roll = rng.random()
        if roll < NOISE:
            views.append(int(rng.integers(0, len(cat["line"]))))
        elif roll < NOISE + (1 - NOISE) * IN_LINE:
            views.append(_pick(rng, by_line[line], cat["popularity"]))
        else:
            views.append(_pick(rng, in_category, cat["popularity"]))
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


def generate_sample(seed: int = 7, n_users: int = 3000, n_items: int = 2000, n_categories: int = 20, days: int = 14,
                    start: dt.date = dt.date(2024, 3, 1)) -> tuple[pa.Table, pa.Table]:
    """Events (timestamp, user_id, item_id, event_type) and items (with ``product_line``)."""
    rng = np.random.default_rng(seed)
    cat = _catalogue(rng, n_items, n_categories)
    by_category = [np.flatnonzero(cat["category"] == c) for c in range(n_categories)]
    by_line = {int(l): np.flatnonzero(cat["line"] == l) for l in np.unique(cat["line"])}
    tastes, weights, n_sessions = _users(rng, n_users, n_categories)
    origin = int(dt.datetime.combine(start, dt.time(), dt.timezone.utc).timestamp())
    rows: list[tuple[int, str, str, str]] = []
    for user in range(n_users):
        session_days = np.sort(rng.integers(0, days, n_sessions[user]))
        clock = 0
        for day in session_days:
            # a session starts between 07:00 and 23:00, at least 2 hours after the previous one ended
            begin = max(origin + int(day) * 86400 + int(rng.integers(7 * 3600, 23 * 3600)), clock + 7200)
            if begin > origin + int(day) * 86400 + 23 * 3600:
                continue  # no room left that day: the user skips it, so every session ends on its own day
            category = int(tastes[user][rng.choice(len(tastes[user]), p=weights[user])])
            t = begin
            for item, kind in _funnel(rng, _session_views(rng, cat, category, by_category, by_line)):
                rows.append((t, f"u{user + 1:05d}", f"i{item + 1:04d}", kind))
                t += int(rng.integers(5, 240))
            clock = t
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
    events = pa.table({
        "timestamp": pa.array([r[0] * 1_000_000 for r in rows], pa.timestamp("us", tz="UTC")),
        "user_id": [r[1] for r in rows], "item_id": [r[2] for r in rows], "event_type": [r[3] for r in rows],
    })
    items = pa.table({
        "item_id": [f"i{i + 1:04d}" for i in range(n_items)],
        "category": [f"c{c + 1:02d}" for c in cat["category"]],
        "brand": [f"b{b + 1:03d}" for b in cat["brand"]],
        "price": cat["price"],
        "product_line": cat["line"].astype(np.int32),
    })
    return events, items


def _gzip_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as handle:
        handle.write(text.getvalue().encode())
    return path


def write_sample(out_dir: Path, seed: int = 7) -> tuple[Path, Path]:
    """Write ``events.csv.gz`` and ``items.csv.gz``; the same seed gives byte-identical files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    events, items = generate_sample(seed)
    stamps = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in events.column("timestamp").to_pylist()]
    event_rows = [list(r) for r in zip(stamps, *(events.column(c).to_pylist() for c in ("user_id", "item_id", "event_type")))]
    item_rows = [[i, c, b, f"{p:.2f}"] for i, c, b, p in zip(*(items.column(c).to_pylist() for c in ("item_id", "category", "brand", "price")))]
    return (_gzip_csv(out_dir / "events.csv.gz", ["timestamp", "user_id", "item_id", "event_type"], event_rows),
            _gzip_csv(out_dir / "items.csv.gz", ["item_id", "category", "brand", "price"], item_rows))


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="Write the embedded sample log.")
    cli.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "sample")
    cli.add_argument("--seed", type=int, default=7)
    arguments = cli.parse_args()
    for written in write_sample(arguments.out, arguments.seed):
        print(written, written.stat().st_size, "bytes")
