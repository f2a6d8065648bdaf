"""How a run ends (issue 13, item 5e; docs/operations.md, "What a run ends in"): a run that leaves a
table unpublished ends in a Completed state named NotPublished or PartlyPublished, and ``recsys run``
exits 4 when the cause is too little data, 3 when the input was rejected, 0 when the gate refused a
worse model. Real Prefect flows, with the stages' results made by hand (the whole pipeline on too
little data is run in tests/flows/test_own_logs.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prefect import flow

import flows.nightly
from flows.cli import main
from recsys.ingest import IngestRejected
from recsys.publish import HOLDOUT_TOO_SMALL, NOT_SERVED, REFUSED_BY_GATE, PublishResult
from recsys.timewindow import InsufficientData
from tasks.maintenance import exit_code, final_state


@dataclass(frozen=True)
class Result:  # what the CLI reads of a NightlyResult
    publish: PublishResult
    publish_users: PublishResult | None = None


def _table(table: str, cause: str = "", reason: str = "") -> PublishResult:
    return PublishResult(table, f"/lake/{table}", 0 if cause else 10, 0 if cause else 5, "m", "/lake/LATEST.json",
                         published=not cause, reason=reason, cause=cause)


PUBLISHED, USERS_PUBLISHED = _table("item_to_item"), _table("user_to_item")
SMALL = _table("item_to_item", HOLDOUT_TOO_SMALL, "holdout too small: 9 held-out pairs")
WORSE = _table("user_to_item", REFUSED_BY_GATE, "ndcg@20 0.1 is worse")
NO_ITEM_MODEL = _table("item_to_item", NOT_SERVED, "no item-to-item model was evaluated")


@flow(name="ends-like-nightly")
def ends_like_nightly(case: str):
    items, users = {"all": (PUBLISHED, USERS_PUBLISHED), "small": (SMALL, WORSE), "worse": (PUBLISHED, WORSE),
                    "users only": (NO_ITEM_MODEL, USERS_PUBLISHED)}[case]
    return final_state(Result(items, users), items, users)


@flow(name="fails-like-nightly")
def fails_like_nightly(error: str):
    raise {"rejected": IngestRejected("all 83846 rows quarantined: unparseable timestamp (83846)"),
           "short": InsufficientData("no training days in the lake between ..."),
           "bug": RuntimeError("a bug")}[error]


@pytest.mark.parametrize("case, state, code", [
    ("all", "Completed", 0),
    ("users only", "Completed", 0),  # a table no listed model serves does not count
    ("worse", "PartlyPublished", 0),  # the gate did its job: the table keeps the better model
    ("small", "NotPublished", 4),  # too little data: somebody has to act
])
def test_a_run_that_leaves_a_table_unpublished_ends_in_a_state_of_its_own(prefect_harness, case, state, code):
    final = ends_like_nightly(case, return_state=True)
    assert final.is_completed() and final.name == state
    assert isinstance(final.result(), Result)  # the caller still gets the run's results
    assert exit_code(final)[0] == code
    if state != "Completed":
        assert "nothing published to" in final.message and final.message == exit_code(final)[1]


@pytest.mark.parametrize("error, code, says", [
    ("rejected", 3, "83846 rows quarantined"), ("short", 4, "no training days"), ("bug", 1, "RuntimeError: a bug")])
def test_a_failed_run_exits_with_the_code_of_its_cause(prefect_harness, error, code, says):
    final = fails_like_nightly(error, return_state=True)
    assert final.is_failed()
    assert exit_code(final)[0] == code and says in exit_code(final)[1]


def test_recsys_run_exits_with_the_code_and_says_why(prefect_harness, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(flows.nightly, "nightly", lambda config, return_state: fails_like_nightly("rejected", return_state=True))
    assert main(["run", "--lake", str(tmp_path / "lake")]) == 3
    assert "run failed (exit 3)" in capsys.readouterr().out
