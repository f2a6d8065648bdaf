"""The scale benchmark's 1M-event case (``benchmarks/scale.py``) runs the nightly flow end to end: both
tables are published and the ingest accounting balances. Correctness only: no time is asserted. Two
quick models keep it inside CI's budget; the benchmark itself runs the default ones."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import scale  # noqa: E402


def _report_counts(report: str, stage: str) -> dict[str, str]:
    line = next(line for line in report.splitlines() if line.startswith(f"- {stage}: "))
    return dict(re.findall(r"(\w+)=([^,]*)", line))


@pytest.mark.slow
def test_one_million_events_publish_both_tables_with_balanced_accounting(tmp_path, prefect_api_url):
    log = scale.scaled_log(1.0, tmp_path / "data")
    assert 900_000 < log.rows < 1_100_000

    result = scale.run_size(log, tmp_path / "run" / "lake", models="popular,item_knn", api_url=prefect_api_url)

    assert result.returncode == 0, result.output[-3000:]
    [report] = (tmp_path / "run" / "lake").glob("runs/*/report.md")
    ingest = _report_counts(report.read_text(), "ingest")
    read, accepted, quarantined, duplicate = (int(ingest[k]) for k in
                                              ("rows_read", "rows_accepted", "rows_quarantined", "rows_duplicate"))
    assert read == log.rows
    assert read == accepted + quarantined + duplicate
    assert accepted > 0.99 * read
    for table, anchor in (("item_to_item", "item_id"), ("user_to_item", "user_id")):
        published = DeltaTable(str(tmp_path / "run" / "lake" / "recommendations" / table)).to_pyarrow_table()
        assert published.num_rows > 0
        assert published.column(anchor).to_pylist()  # rows name their anchors
    assert set(result.stages) >= {"ingest", "graph", "walks", "train", "evaluate", "publish"}
    assert result.memory["driver"] > 0
    at_peak = result.memory_at_peak  # the roles at the instant the whole tree peaked add up to that peak
    assert at_peak["all"] == result.memory["all"] == sum(at_peak[role] for role in result.memory if role != "all")
