"""The run report: a Markdown page with the metrics tables (item-to-item, next-item, user-to-item), the
window and seed, the stages' counts,
one precision-recall plot per model, the PyTorch models' learning curves (validation AUC-ROC per
epoch) and what publishing did (with an approximate top-N search's recall and time saved,
``search_text``), so every figure says which data, split and seed produced it.
It is written once, at the end of a run, from the stages' results."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow as pa  # noqa: E402


from recsys.lake import write_text_atomic  # noqa: E402
from recsys.models import baselines  # noqa: E402


def plot_precision_recall(scores, title: str, path: Path) -> Path:
    """``scores`` has ``name``, ``precision`` and ``recall`` (``recsys.evaluate.ModelScores``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 3.5), dpi=100)
    ax.plot(scores.recall, scores.precision, lw=1.5)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"{scores.name}\n{title}")
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_learning_curves(curves: dict[str, list[dict]], title: str, path: Path, key: str = "validation_auc",
                         label: str = "validation AUC-ROC") -> Path:
    """A validation metric (``key``; AUC-ROC by default) and the training loss after each epoch, one line per model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (auc_ax, loss_ax) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=100)
    any_auc = False
    for name, curve in curves.items():
        epochs = [r["epoch"] for r in curve]
        aucs = [r.get(key) for r in curve]
        if any(a is not None for a in aucs):
            any_auc = True
            auc_ax.plot(epochs, [math.nan if a is None else a for a in aucs], marker="o", lw=1.5, label=name)
        loss_ax.plot(epochs, [r["loss"] for r in curve], marker="o", lw=1.5, label=name)
    if not any_auc:
        auc_ax.text(0.5, 0.5, "no validation data", ha="center", va="center", transform=auc_ax.transAxes)
    longest = max((len(c) for c in curves.values()), default=1)
    for ax, ylabel in ((auc_ax, label), (loss_ax, "training loss")):
        ax.set(xlabel="epoch", ylabel=ylabel)
        if longest <= 30:
            ax.set_xticks(range(1, longest + 1))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a model without validation data draws only its loss
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def curves_markdown(curves: dict[str, list[dict]], key: str = "validation_auc") -> list[str]:
    lines = ["| model | " + " | ".join(f"epoch {r['epoch']}" for r in max(curves.values(), key=len)) + " |",
             "|---|" + "---:|" * max(len(c) for c in curves.values())]
    for name, curve in curves.items():
        lines.append(f"| {name} | " + " | ".join(f"{_fmt(r.get(key))} (loss {r['loss']:.3f})" for r in curve) + " |")
    return lines


def user_curves_summary(curves: dict[str, list[dict]], key: str = "validation_ndcg@20") -> list[str]:
    """One line per user model: epochs run, the best epoch and its validation value (long curves stay readable)."""
    lines = ["| model | epochs | best epoch | " + key.removeprefix("validation_") + " at best | first | last |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, curve in curves.items():
        best = next((r for r in curve if r.get("best")), curve[-1])
        lines.append(f"| {name} | {len(curve)} | {best['epoch']} | {_fmt(best.get(key))} | {_fmt(curve[0].get(key))} "
                     f"| {_fmt(curve[-1].get(key))} |")
    return lines


def search_text(search: dict | None) -> str:
    """How a published table's top-N was searched, for its publication paragraph: "" for the exact search;
    for an approximate one (``recsys.ann.SearchSummary.as_dict``) its recall against the exact top-N on
    a sample and the time it saved."""
    if not search:
        return ""
    anchors = "users" if search["table"] == "user_to_item" else "items"
    params = search.get("params") or {}
    return (f"Top-{search['n']} by approximate nearest-neighbour search (HNSW, {search['library']}, M {params.get('M')}, "
            f"ef_search {params.get('ef_search')}) over {search['candidates']} items: **recall@{search['n']} "
            f"{search['recall']:.3f}** against the exact top-{search['n']} on {search['sample']} sampled {anchors}; "
            f"index built in {search['build_seconds']:.1f} s and searched in {search['search_seconds']:.1f} s, against "
            f"{search['exact_seconds']:.1f} s estimated for the exact search ({_saved(search['saved_seconds'])}).")


def _saved(seconds: float) -> str:
    return f"saved {seconds:.1f} s" if seconds >= 0 else f"{-seconds:.1f} s slower than exact at this size"


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def user_metrics_markdown(rows: list[dict], ks: list[int]) -> str:
    """The user-to-item table: Recall, NDCG, HitRate and MRR at each K, coverage and training time."""
    k_max = max(ks)
    head = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")] + [f"hit@{k_max}", f"mrr@{k_max}", f"precision@{k_max}"]
    lines = ["| model | " + " | ".join(head) + f" | coverage@{k_max} | users served | train s |",
             "|---|" + "---:|" * (len(head) + 3)]
    for row in rows:
        lines.append(f"| {row['model']} | " + " | ".join(_fmt(row.get(h)) for h in head)
                     + f" | {_fmt(row.get(f'coverage@{k_max}'))} | {_fmt(row.get('users_served'))} | {row['train_seconds']:.1f} |")
    return "\n".join(lines)


def user_comparison_lines(rows: list[dict], metric: str) -> list[str]:
    """How each non-baseline user model stands against each baseline on the champion metric."""
    by_model = {r["model"]: r for r in rows}
    lines = []
    for name, row in by_model.items():
        for base in (b for b in baselines() if b in by_model and b != name):
            if name in baselines():
                continue
            mine, theirs = row.get(metric), by_model[base].get(metric)
            if any(v is None or math.isnan(v) for v in (mine, theirs)):
                continue
            verdict = "beats" if mine > theirs else ("ties" if mine == theirs else "trails")
            lines.append(f"- {name} {verdict} {base} on {metric}: {mine:.4f} vs {theirs:.4f} ({mine - theirs:+.4f}).")
    return lines


def user_section(users: dict | None, context: dict, plots: Path) -> list[str]:
    """The report's user-to-item part: holdout sizes, metrics, champion, learning curves, publication.

    ``users`` holds ``rows``, ``holdout``, ``champion``, ``metric``, ``ks``, ``curves``, ``publication``."""
    if not users:
        return []
    holdout, metric = users["holdout"], users["metric"]
    cold = {k.removeprefix("cold_"): v for k, v in holdout.items() if k.startswith("cold_") and "@" in k}
    lines = ["## User-to-item metrics", "",
             f"- holdout: {holdout.get('users_evaluated', 0)} users with test-day items and training history "
             f"({holdout.get('test_pairs', 0)} test pairs; {holdout.get('repeat_pairs', 0)} pairs of items the user already "
             f"had {'kept' if users.get('repeat_items') else 'left out'}; {holdout.get('unknown_item_pairs', 0)} pairs of items "
             "never seen in training left out); every item ranked, the user's training items excluded",
             f"- users without training history: {holdout.get('cold_users', 0)}, served by the popularity fallback"
             + (f" ({metric} {_fmt(cold.get(metric))})" if cold else ""),
             f"- champion by `{metric}`: **{users['champion'] or 'none'}**", "",
             user_metrics_markdown(list(users["rows"]), list(users["ks"])), "",
             *user_comparison_lines(list(users["rows"]), metric), ""]
    curves = users.get("curves") or {}
    if curves:
        title = f"{context['dataset']}, seed {context['seed']}; validation: each user's latest training item"
        png = plot_learning_curves(curves, title, plots / "user_learning_curves.png", "validation_ndcg@20",
                                   "validation NDCG@20")
        lines += ["### Learning curves", "", "Validation NDCG@20 after each epoch: each user's latest item of the training "
                  "window held out of training (never a test day); the kept epoch is the best one.", "",
                  *user_curves_summary(curves), "", f"![user learning curves](plots/{png.name})", ""]
    lines += ["### Publication", "", users.get("publication") or "Not published in this run.", ""]
    return lines


def metrics_markdown(metrics: pa.Table, n: int | None = None) -> str:
    """The item-to-item table: next-item Recall@N / MRR@N (when measured, N = publish.top_n), then the pair metrics."""
    k = metrics.column("k")[0].as_py()
    rows = metrics.to_pylist()
    with_next = n is not None and any(_finite(r.get("next_recall")) for r in rows)
    head = (f"| model | next Recall@{n} (95% CI) | next MRR@{n} | " if with_next else "| model | ") + \
        f"AUC-ROC (all) | AUC-ROC (seen) | AUC-ROC (cold) | HitRate@{k} | train s |"
    lines = [head, "|---|" + "---:|" * (7 if with_next else 5)]
    for row in rows:
        first = (f"{_with_interval(row, 'next_recall')} | {_fmt(row.get('next_mrr'))} | " if with_next else "")
        lines.append(f"| {row['model']} | {first}{_fmt(row['auc'])} | {_fmt(row['auc_seen'])} | {_fmt(row['auc_cold'])} "
                     f"| {_fmt(row['hit_rate'])} | {row['train_seconds']:.1f} |")
    return "\n".join(lines)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def _with_interval(row: dict, metric: str) -> str:
    """``0.4123 (0.40..0.42)``: a figure and its bootstrap interval, when there is one."""
    lo, hi = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    interval = f" ({lo:.4f}..{hi:.4f})" if _finite(lo) and _finite(hi) else ""
    return _fmt(row.get(metric)) + interval


def next_item_markdown(rows: list[dict], ks: list[int], n: int | None = None) -> str:
    """The next-item table: Recall@K and MRR@K for each K, those at ``n`` (else the largest K) with their 95%
    bootstrap intervals."""
    k_max = n if n in ks else max(ks)
    head = [f"next_recall@{k}" for k in ks] + [f"next_mrr@{k}" for k in ks]
    lines = ["| model | " + " | ".join(h.replace("next_", "") for h in head) + " | predictions | sessions |",
             "|---|" + "---:|" * (len(head) + 2)]
    for row in rows:
        cells = [_with_interval(row, h) if h.endswith(f"@{k_max}") else _fmt(row.get(h)) for h in head]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + f" | {row['predictions']} | {row['sessions']} |")
    return "\n".join(lines)


def next_item_section(next_item: dict | None) -> list[str]:
    """The report's next-item part: ``next_item`` holds ``rows``, ``holdout``, ``champion``, ``metric``, ``n``."""
    if not next_item or not next_item.get("rows"):
        return []
    holdout, ks = next_item["holdout"], list(next_item["holdout"].get("ks") or [])
    types = ", ".join(holdout.get("event_types") or []) or "all event types"
    lines = ["## Next-item metrics", "",
             f"- {holdout.get('predictions', 0)} predictions from {holdout.get('sessions', 0)} test-day sessions ({types}; "
             f"repeats {'collapsed' if holdout.get('collapse_repeats') else 'kept'}; items unseen in training dropped, "
             "then sessions under 2 items): at every position after the first, the next item looked up in the model's "
             "top K. Sequence models answer from the session so far, item-to-item models from its last item "
             "(their published neighbour list); intervals: 95% bootstrap over test sessions.",
             f"- the item-to-item champion is picked by `{next_item['metric']}` "
             f"(next-item figures at N = publish.top_n = {next_item['n']}): **{next_item['champion'] or 'none'}**",
             "", next_item_markdown(list(next_item["rows"]), ks, next_item["n"]), ""]
    return lines


def comparison_lines(metrics: pa.Table) -> list[str]:
    """Plain sentences on how each non-baseline model stands against each baseline."""
    rows = {r["model"]: r for r in metrics.to_pylist()}
    lines = []
    for name, row in rows.items():
        if name in baselines():
            continue
        for base in baselines():
            if base not in rows:
                continue
            for metric, label in (("auc", "AUC-ROC"), ("auc_seen", "AUC-ROC (seen)"), ("auc_cold", "AUC-ROC (cold)"),
                                  ("hit_rate", "HitRate")):
                mine, theirs = row[metric], rows[base][metric]
                if any(v is None or math.isnan(v) for v in (mine, theirs)):
                    continue
                verdict = "beats" if mine > theirs else ("ties" if mine == theirs else "trails")
                lines.append(f"- {name} {verdict} {base} on {label}: {mine:.4f} vs {theirs:.4f} ({mine - theirs:+.4f}).")
    return lines


def write_report(path: Path, metrics: pa.Table, context: dict, champion: str, metric: str,
                 stage_counts: dict[str, dict], curves: dict[str, list[dict]] | None = None,
                 publication: str = "", pr_plots: Path | None = None, users: dict | None = None,
                 next_item: dict | None = None) -> Path:
    """The report of one run; the precision-recall plots are the evaluate stage's ``pr_<model>.png`` in
    ``pr_plots`` (default: ``plots/`` beside the report; a cached evaluation's are in its own run's folder)."""
    pr_plots = pr_plots or path.parent / "plots"
    split = (f"train {context['train_from']}..{context['train_until']}, "
             f"test {context['test_from']}..{context['test_until']}")
    lines = [
        f"# Nightly run {context['run_id']}",
        "",
        f"- dataset: **{context['dataset']}**; split: {split} (UTC event days); seed: {context['seed']}",
        *(_item_lines(metrics, context, champion, metric, curves, publication, pr_plots, path,
                      (next_item or {}).get("n")) if metrics.num_rows else
          ["", "## Item-to-item", "", "No item-to-item model in `train.models`: nothing evaluated or published.", ""]),
        *next_item_section(next_item),
        *user_section(users, context, path.parent / "plots"),
        "## Stages",
        "",
        *[f"- {stage}: " + ", ".join(f"{k}={v}" for k, v in counts.items()) for stage, counts in stage_counts.items()],
    ]
    return write_text_atomic("\n".join(lines) + "\n", path)


def _item_lines(metrics: pa.Table, context: dict, champion: str, metric: str, curves: dict | None, publication: str,
                pr_plots: Path, path: Path, n: int | None = None) -> list[str]:
    return [
        f"- holdout: {metrics.column('positives')[0].as_py()} co-occurring test-day pairs "
        f"({metrics.column('positives_seen')[0].as_py()} with both items seen in training, "
        f"{metrics.column('positives_cold')[0].as_py()} cold: an item known only by its side information) "
        "and as many sampled non-pairs",
        f"- champion by `{metric}`: **{champion or 'none'}**",
        "",
        "## Item-to-item metrics",
        "",
        metrics_markdown(metrics, n),
        "",
        *comparison_lines(metrics),
        "",
        "An item a model has no vector for scores 0.0 (AUC) and counts as a miss (HitRate); "
        "so id-only models score 0.5 on the cold split.",
        "",
        *_learning_curves_section(curves or {}, context, path.parent / "plots"),
        "## Publication",
        "",
        publication or "Not published in this run.",
        "",
        "## Precision-recall",
        "",
        *[f"![precision-recall {name}]({os.path.relpath(pr_plots / f'pr_{name}.png', path.parent)})"
          for name in metrics.column("model").to_pylist() if (pr_plots / f"pr_{name}.png").exists()],
        "",
    ]


def _learning_curves_section(curves: dict[str, list[dict]], context: dict, plots: Path) -> list[str]:
    if not curves:
        return []
    title = (f"{context['dataset']}, seed {context['seed']}; validation: held-out sessions of the last training days "
             f"(train {context['train_from']}..{context['train_until']})")
    png = plot_learning_curves(curves, title, plots / "learning_curves.png")
    return ["## Learning curves", "",
            "Validation AUC-ROC after each epoch, on pairs from whole sessions held out of the training days "
            "(never a test day), and the epoch's mean training loss.", "",
            *curves_markdown(curves), "", f"![learning curves](plots/{png.name})", ""]
