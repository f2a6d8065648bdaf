"""The run report: a Markdown page with the metrics table, the window and seed, the stages' counts,
one precision-recall plot per model, the PyTorch models' learning curves (validation AUC-ROC per
epoch) and what publishing did, so every figure says which data, split and seed produced it.
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


def plot_learning_curves(curves: dict[str, list[dict]], title: str, path: Path) -> Path:
    """Validation AUC-ROC (and training loss) after each epoch, one line per model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (auc_ax, loss_ax) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=100)
    any_auc = False
    for name, curve in curves.items():
        epochs = [r["epoch"] for r in curve]
        aucs = [r["validation_auc"] for r in curve]
        if any(a is not None for a in aucs):
            any_auc = True
            auc_ax.plot(epochs, [math.nan if a is None else a for a in aucs], marker="o", lw=1.5, label=name)
        loss_ax.plot(epochs, [r["loss"] for r in curve], marker="o", lw=1.5, label=name)
    if not any_auc:
        auc_ax.text(0.5, 0.5, "no validation pairs", ha="center", va="center", transform=auc_ax.transAxes)
    longest = max((len(c) for c in curves.values()), default=1)
    for ax, label in ((auc_ax, "validation AUC-ROC"), (loss_ax, "training loss")):
        ax.set(xlabel="epoch", ylabel=label)
        ax.set_xticks(range(1, longest + 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def curves_markdown(curves: dict[str, list[dict]]) -> list[str]:
    lines = ["| model | " + " | ".join(f"epoch {r['epoch']}" for r in max(curves.values(), key=len)) + " |",
             "|---|" + "---:|" * max(len(c) for c in curves.values())]
    for name, curve in curves.items():
        lines.append(f"| {name} | " + " | ".join(f"{_fmt(r['validation_auc'])} (loss {r['loss']:.3f})" for r in curve) + " |")
    return lines


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def metrics_markdown(metrics: pa.Table) -> str:
    k = metrics.column("k")[0].as_py()
    lines = [f"| model | AUC-ROC (all) | AUC-ROC (seen) | AUC-ROC (cold) | HitRate@{k} | train s |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in metrics.to_pylist():
        lines.append(f"| {row['model']} | {_fmt(row['auc'])} | {_fmt(row['auc_seen'])} | {_fmt(row['auc_cold'])} "
                     f"| {_fmt(row['hit_rate'])} | {row['train_seconds']:.1f} |")
    return "\n".join(lines)


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
                 publication: str = "", pr_plots: Path | None = None) -> Path:
    """The report of one run; the precision-recall plots are the evaluate stage's ``pr_<model>.png`` in
    ``pr_plots`` (default: ``plots/`` beside the report; a cached evaluation's are in its own run's folder)."""
    pr_plots = pr_plots or path.parent / "plots"
    split = (f"train {context['train_from']}..{context['train_until']}, "
             f"test {context['test_from']}..{context['test_until']}")
    lines = [
        f"# Nightly run {context['run_id']}",
        "",
        f"- dataset: **{context['dataset']}**; split: {split} (UTC event days); seed: {context['seed']}",
        f"- holdout: {metrics.column('positives')[0].as_py()} co-occurring test-day pairs "
        f"({metrics.column('positives_seen')[0].as_py()} with both items seen in training, "
        f"{metrics.column('positives_cold')[0].as_py()} cold: an item known only by its side information) "
        "and as many sampled non-pairs",
        f"- champion by `{metric}`: **{champion}**",
        "",
        "## Item-to-item metrics",
        "",
        metrics_markdown(metrics),
        "",
        *comparison_lines(metrics),
        "",
        "An item a model has no vector for scores 0.0 (AUC) and counts as a miss (HitRate); "
        "so id-only models score 0.5 on the cold split.",
        "",
        "## Stages",
        "",
        *[f"- {stage}: " + ", ".join(f"{k}={v}" for k, v in counts.items()) for stage, counts in stage_counts.items()],
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
    ]
    return write_text_atomic("\n".join(lines) + "\n", path)


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
