"""The embedded sample: deterministic, committed as generated, with the planted structure."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from recsys.sample import generate_sample, write_sample
from tests.conftest import SAMPLE


def test_committed_sample_is_what_the_generator_writes(tmp_path):
    events, items = write_sample(tmp_path)
    assert events.read_bytes() == (SAMPLE / "events.csv.gz").read_bytes()
    assert items.read_bytes() == (SAMPLE / "items.csv.gz").read_bytes()


def test_same_seed_same_tables_other_seed_other_tables():
    a, _ = generate_sample(seed=3, n_users=200, n_items=300)
    b, _ = generate_sample(seed=3, n_users=200, n_items=300)
    c, _ = generate_sample(seed=4, n_users=200, n_items=300)
    assert a.equals(b) and not a.equals(c)


def test_planted_structure_and_funnel():
    events, items = generate_sample()
    category = dict(zip(items.column("item_id").to_pylist(), items.column("category").to_pylist()))
    users = events.column("user_id").to_pylist()
    times = [t.timestamp() for t in events.column("timestamp").to_pylist()]
    item_ids, kinds = events.column("item_id").to_pylist(), events.column("event_type").to_pylist()
    sessions: dict[tuple[str, int], list[int]] = defaultdict(list)
    last: dict[str, tuple[float, int]] = {}
    for row, (user, t) in enumerate(zip(users, times)):
        prev = last.get(user)
        number = prev[1] + (t - prev[0] > 1800) if prev else 0
        last[user] = (t, number)
        sessions[(user, number)].append(row)
    dominant = [Counter(category[item_ids[r]] for r in rows).most_common(1)[0][1] / len(rows) for rows in sessions.values()]
    assert np.mean(dominant) > 0.85  # a 30-minute gap recovers sessions that stay in one category
    for rows in sessions.values():
        seen: set[tuple[str, str]] = set()
        for r in rows:
            need = {"cart": "view", "purchase": "cart"}.get(kinds[r])
            assert need is None or (item_ids[r], need) in seen
            seen.add((item_ids[r], kinds[r]))
    counts = Counter(kinds)
    assert counts["view"] > counts["cart"] > counts["purchase"] > 0
    popularity = sorted(Counter(item_ids).values(), reverse=True)
    assert popularity[0] > 20 * popularity[len(popularity) // 2]  # long tail
