"""benchmarks/reproduce_graph_cf.py on the real LastFM split of the LightGCN code: 5 epochs of MF-BPR and
LightGCN with the pipeline's models and ranking metrics, LightGCN ahead and above a measured floor."""

from __future__ import annotations

from pathlib import Path

import pytest

LASTFM = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "lastfm"

# Measured (seed 2020, 5 epochs, 1 thread): LightGCN Recall@20 0.1293, NDCG@20 0.0878; MF-BPR 0.0053 / 0.0037
# (5 epochs of Adam at lr 0.001 barely move MF's N(0, 0.1^2) start). The floors are about half of
# LightGCN's figures: far from flaky, but a broken propagation, loss or ranking falls below them.
RECALL_FLOOR, NDCG_FLOOR = 0.06, 0.04


@pytest.mark.slow
def test_lightgcn_beats_mf_bpr_on_lastfm_split():
    if not (LASTFM / "data1.txt").is_file() or not (LASTFM / "test1.txt").is_file():
        pytest.skip(f"real dataset not present: {LASTFM} (the shared/datasets folder sits beside the project)")
    from benchmarks.reproduce_graph_cf import main

    results = main(["--dataset", "lastfm", "--epochs", "5", "--seed", "2020", "--threads", "1",
                    "--assert-lightgcn-beats-mf"])

    assert results["dataset"] == "lastfm" and results["split"] == ["data1.txt", "test1.txt"]
    mf, gcn = results["models"]["mf_bpr"], results["models"]["lightgcn"]
    for row in (mf, gcn):
        assert row["epochs"] == 5 and len(row["curve"]) == 5
        assert row["users_evaluated"] > 1800  # 1,858 users with test items the training saw
    assert gcn["ndcg"] > mf["ndcg"] and gcn["recall"] > mf["recall"]
    assert gcn["recall"] > RECALL_FLOOR, gcn["recall"]
    assert gcn["ndcg"] > NDCG_FLOOR, gcn["ndcg"]
    assert gcn["curve"][-1]["loss"] < gcn["curve"][0]["loss"]  # training moved
    ngcf = results["models"]["ngcf"]  # measured 0.0479 / 0.0306: behind LightGCN after 5 epochs, ahead of MF
    assert gcn["ndcg"] > ngcf["ndcg"] > mf["ndcg"]
