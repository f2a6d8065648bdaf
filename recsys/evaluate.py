"""The evaluate stage: every model scored on the same holdout, written to ``metrics.parquet``.

The item-to-item champion is picked by next-item Recall@N (``recsys.next_item``, N = ``publish.top_n``:
whether the published neighbour list of the item a visitor is on holds the item they opened next),
each model's row carrying those figures beside the pair metrics below.

Pair protocol (DESIGN.md, "Evaluation protocol"): AUC-ROC of the held-out co-occurring pairs
against as many sampled non-pairs, overall, on the "seen" split (both items seen in training) and on
the "cold" split (both items in the catalogue, at least one known only by its side information);
HitRate@K of the held-out neighbour, each positive pair counted in both directions. An item a model
has no vector for scores the fallback 0.0 (AUC) and, as anchor or target, counts as a miss (HitRate):
so an id-only model scores exactly 0.5 on the cold split, where side-information models can do better.

Each figure comes with its standard error, so a report and the publication gate can say how far a
figure can be trusted: an AUC's by Hanley & McNeil (1982), "The meaning and use of the area under a
receiver operating characteristic (ROC) curve", Radiology 143(1), 29-36; HitRate's as a binomial
proportion over its anchor lookups. A champion is picked only when the split its metric is computed
on holds at least ``evaluate.min_positives`` held-out pairs: below that, the figures are written and
reported, but nothing is picked (and so nothing published).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from recsys.lake import write_parquet_atomic
from recsys.metrics import auc_roc, hit_rate, precision_recall
from recsys.models.base import ITEM_TO_ITEM, ItemModel, TrainingInputs
from recsys.next_item import headline_columns
from recsys.publish import holdout_size_key
from recsys.report import plot_precision_recall
from recsys.train import TrainResult, load_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelScores:
    name: str
    auc: float
    auc_seen: float
    auc_cold: float
    hit_rate: float
    precision: np.ndarray
    recall: np.ndarray
    se: dict[str, float] = field(default_factory=dict)  # standard error of each metric, "auc" -> SE


@dataclass(frozen=True)
class EvaluateResult:
    metrics_path: str
    champion: str
    metric: str
    rows: tuple[dict, ...]  # one per model: the metrics table's rows
    plots_path: str = ""  # the folder of the precision-recall plots, pr_<model>.png
    # the user-to-item evaluation (recsys.evaluate_users), when a listed model serves that table
    user_metrics_path: str = ""
    user_champion: str = ""
    user_metric: str = ""
    user_rows: tuple[dict, ...] = ()
    user_holdout: dict = field(default_factory=dict)
    # why no champion was picked although models were scored (a holdout below the minimum), or ""
    holdout_too_small: str = ""
    user_holdout_too_small: str = ""
    min_positives: int = 0  # the minimums used; the gate compares with a published run only above them
    min_users: int = 0
    # the next-item evaluation (recsys.next_item): one row per model that could answer, its metrics' file
    next_item_rows: tuple[dict, ...] = ()
    next_item_path: str = ""
    next_item_holdout: dict = field(default_factory=dict)  # test sessions and predictions

    def row(self, model: str) -> dict:
        return next(r for r in self.rows if r["model"] == model)


def score_model(model: ItemModel, holdout: pa.Table, k: int) -> ModelScores:
    a, b = holdout.column("a").to_numpy(), holdout.column("b").to_numpy()
    label = holdout.column("label").to_numpy().astype(bool)
    scores = model.pair_scores(a, b)
    split = holdout.column("split").to_numpy(zero_copy_only=False)
    seen, cold = split == "seen", split == "cold"
    precision, recall = precision_recall(scores[label], scores[~label])
    aucs = {name: (auc_roc(scores[label & part], scores[~label & part]), int((label & part).sum()),
                   int((~label & part).sum()))
            for name, part in (("auc", np.ones(len(label), bool)), ("auc_seen", seen), ("auc_cold", cold))}
    hits = _hit_rate(model, a[label], b[label], k)
    se = {name: auc_standard_error(*figures) for name, figures in aucs.items()}
    se["hit_rate"] = proportion_standard_error(hits, 2 * int(label.sum()))  # each pair looked up both ways
    return ModelScores(
        name=model.name,
        auc=aucs["auc"][0],
        auc_seen=aucs["auc_seen"][0],
        auc_cold=aucs["auc_cold"][0],
        hit_rate=hits,
        precision=precision,
        recall=recall,
        se=se,
    )


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): the standard error of an AUC from ``positives`` and ``negatives`` scores,
    ``sqrt((A(1-A) + (n1-1)(Q1-A^2) + (n2-1)(Q2-A^2)) / (n1 n2))`` with ``Q1 = A/(2-A)``, ``Q2 = 2A^2/(1+A)``.
    NaN without both kinds of scores."""
    if not positives or not negatives or auc is None or math.isnan(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) \
        / (positives * negatives)
    return float(math.sqrt(max(variance, 0.0)))


def proportion_standard_error(share: float, trials: int) -> float:
    """``sqrt(p (1 - p) / n)``: the standard error of a share of ``trials`` independent lookups."""
    if not trials or share is None or math.isnan(share):
        return float("nan")
    return float(math.sqrt(share * (1 - share) / trials))


def _hit_rate(model: ItemModel, a: np.ndarray, b: np.ndarray, k: int) -> float:
    anchors, targets = np.r_[a, b], np.r_[b, a]
    recommended = np.full((len(anchors), k), -1, dtype=np.int64)
    known = anchors >= 0
    if known.any():
        unique, inverse = np.unique(anchors[known], return_inverse=True)
        neighbours, _ = model.similar(unique, k)
        recommended[known] = neighbours[inverse]
    return hit_rate(recommended, targets)


def metrics_table(scores: list[ModelScores], holdout: pa.Table, context: dict, k: int, train_seconds: dict[str, float],
                  next_item: dict[str, dict] | None = None) -> pa.Table:
    """One row per model: the pair metrics and, from ``next_item`` (model -> ``recsys.next_item.headline_columns``),
    its next-item Recall/MRR at N with their standard errors and intervals."""
    label = holdout.column("label").to_numpy().astype(bool)
    split = holdout.column("split").to_numpy(zero_copy_only=False)
    no_next = headline_columns({}, 0)
    rows = [{
        "model": s.name, "auc": s.auc, "auc_seen": s.auc_seen, "auc_cold": s.auc_cold, "hit_rate": s.hit_rate, "k": k,
        "positives": int(label.sum()), "positives_seen": int((label & (split == "seen")).sum()),
        "positives_cold": int((label & (split == "cold")).sum()),
        **{f"{m}_se": float(s.se.get(m, float("nan"))) for m in ("auc", "auc_seen", "auc_cold", "hit_rate")},
        **(next_item or {}).get(s.name, no_next),
        "train_seconds": float(train_seconds.get(s.name, float("nan"))), **context,
    } for s in scores]
    return pa.Table.from_pylist(rows)


def too_small(row: dict, metric: str, minimum: int) -> str:
    """Why ``row``'s holdout cannot pick a champion by ``metric`` (fewer held-out pairs than ``minimum``
    in the split the metric is computed on), or "" when it can."""
    key = holdout_size_key(metric)
    size = int(row.get(key) or 0)
    if size >= minimum:
        return ""
    what = "next-item predictions" if key == "predictions" else "held-out pairs"
    return (f"holdout too small: {size} {what} ({key}, what {metric} is computed on) < evaluate.min_positives "
            f"{minimum}, so no champion was picked and the gate's reference stays; widen window.test_days or "
            "choose another window.run_date")


def pick_champion(table: pa.Table, metric: str) -> str:
    """Best model by ``metric``; NaN loses, ties go to the model listed first in the config."""
    values = [(-np.nan_to_num(v, nan=-np.inf), i, m) for i, (m, v) in
              enumerate(zip(table.column("model").to_pylist(), table.column(metric).to_pylist()))]
    return min(values)[2]


def write_metrics(table: pa.Table, path: Path) -> Path:
    return write_parquet_atomic(table, path)


def evaluate_models(trained: TrainResult, inputs: TrainingInputs, holdout: pa.Table, k: int, champion_metric: str,
                    context: dict, metrics_path: Path, plots: Path, min_positives: int = 0,
                    next_item_rows: tuple[dict, ...] = (), top_n: int = 20) -> EvaluateResult:
    """Score every trained item-to-item model on ``holdout``; write the metrics table (with each model's
    next-item figures at N = ``top_n`` from ``next_item_rows``, ``recsys.next_item``) and one precision-recall
    plot per model. Without any such model the result has no rows and no champion; with fewer than
    ``min_positives`` held-out pairs (or next-item predictions) behind the champion metric it has rows but
    no champion, and ``holdout_too_small`` says why."""
    scores = []
    item_models = [m for m in trained.models if ITEM_TO_ITEM in m.serves]
    if not item_models:
        return EvaluateResult("", "", champion_metric, (), min_positives=min_positives)
    for trained_model in item_models:
        model = load_model(trained_model.name, Path(trained_model.path), inputs)
        scores.append(score_model(model, holdout, k))
        log.info("evaluate: %s AUC %.4f (seen %.4f, cold %.4f), HitRate@%d %.4f", model.name, scores[-1].auc,
                 scores[-1].auc_seen, scores[-1].auc_cold, k, scores[-1].hit_rate)
    seconds = {m.name: m.seconds for m in trained.models}
    next_item = {row["model"]: headline_columns(row, top_n) for row in next_item_rows}
    metrics = metrics_table(scores, holdout, context, k, seconds, next_item)
    write_metrics(metrics, metrics_path)
    title = f"{context['dataset']}, seed {context['seed']}\ntrain {context['train_from']}..{context['train_until']}, " \
            f"test {context['test_from']}..{context['test_until']}"
    for s in scores:
        plot_precision_recall(s, title, plots / f"pr_{s.name}.png")
    rows = tuple(metrics.to_pylist())
    small = too_small(rows[0], champion_metric, min_positives)
    if small:
        log.warning("evaluate: item-to-item %s", small)
        champion = ""
    else:
        champion = pick_champion(metrics, champion_metric)
        log.info("evaluate: champion by %s is %s; metrics at %s", champion_metric, champion, metrics_path)
    return EvaluateResult(str(metrics_path), champion, champion_metric, rows, str(plots), holdout_too_small=small,
                          min_positives=min_positives, next_item_rows=next_item_rows)
