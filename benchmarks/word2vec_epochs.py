"""word2vec's epochs and learning rate against its quality, on a finished run's walks and test day.

The default (5 epochs, alpha 0.025) is the peer: each other setting trains gensim's word2vec on the same
walks with one thread and the run's seed, and is scored on the same next-item test sessions and co-occurring
test pairs as the evaluate stage. Prints train seconds, next Recall@20 / MRR@20, AUC-ROC and HitRate@10,
and each setting's ratio to the default. It measures what ``train.word2vec.max_trained_words`` trades
(fewer epochs at large catalogues) and whether a larger ``alpha`` buys some of it back.

    python benchmarks/scale.py --sizes 10M --data /tmp/recsys-scale      # a 10M-event lake and run
    python benchmarks/word2vec_epochs.py --lake /tmp/recsys-scale/scale-10M-<id>/lake --settings 5:0.025 2:0.025 2:0.05

``--settings`` lists ``epochs:alpha`` pairs; the first is the reference of the ratios. With ``--reuse``, a
setting equal to the run's own word2vec settings loads the run's model instead of training it again (one
thread and the same seed give the same vectors); its time is then the run's, measured beside the other
fits of the night, and marked ``*``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.config import PipelineConfig  # noqa: E402
from recsys.evaluate import score_model  # noqa: E402
from recsys.holdout import load_holdout, next_item_sessions  # noqa: E402
from recsys.lake import Lake  # noqa: E402
from recsys.models.params import Word2VecParams  # noqa: E402
from recsys.models.word2vec import Word2VecModel, corpus_words  # noqa: E402
from recsys.next_item import score_next_items  # noqa: E402
from recsys.spark import spark_session  # noqa: E402
from recsys.timewindow import resolve_window  # noqa: E402
from recsys.train import load_training_inputs  # noqa: E402


def parse_setting(text: str) -> tuple[int, float]:
    epochs, _, alpha = text.partition(":")
    return int(epochs), float(alpha or 0.025)


def run_params(run: Path) -> dict:
    """The settings the run trained its word2vec with."""
    return json.loads((run / "models" / "word2vec" / "model.json").read_text())["params"]


def run_seconds(run: Path) -> float:
    metrics = pq.read_table(run / "metrics.parquet").to_pylist()
    return next(row["train_seconds"] for row in metrics if row["model"] == "word2vec")


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--lake", type=Path, required=True, help="a lake with one finished nightly run (its graph, walks, holdout)")
    cli.add_argument("--settings", nargs="+", default=["5:0.025", "2:0.025", "2:0.05"], help="epochs:alpha, the first is the reference")
    cli.add_argument("--seed", type=int, default=42, help="the run's seed (benchmarks/scale.py runs with 42)")
    cli.add_argument("--reuse", action="store_true", help="load the run's word2vec for the setting it was trained with")
    args = cli.parse_args()

    config = PipelineConfig()
    lake = Lake(args.lake)
    run = sorted((args.lake / "runs").iterdir())[-1]
    inputs = load_training_inputs(run / "graph", run / "walks", seed=args.seed, threads=1)
    window = resolve_window(config.window, lake)
    spark = spark_session(config.spark)
    tests = next_item_sessions(spark, lake, window, config.sequences, inputs.catalog, config.graph.max_session_length,
                               config.evaluate.next_item_sessions, args.seed)
    spark.stop()
    holdout = load_holdout(run / "holdout")
    print(f"run {run.name}: {window.describe()}; {corpus_words(inputs.walks):,} words (walk nodes), {inputs.table.n_nodes:,} nodes; "
          f"{len(tests):,} test sessions, {holdout.num_rows:,} test pairs; seed {args.seed}; one thread", flush=True)

    rows = []
    for setting in args.settings:
        epochs, alpha = parse_setting(setting)
        params = Word2VecParams(epochs=epochs, alpha=alpha)
        if args.reuse and run_params(run) == params.model_dump():
            model, seconds = Word2VecModel.load(run / "models" / "word2vec", inputs), f"{run_seconds(run):.1f}*"
        else:
            started = time.perf_counter()
            model = Word2VecModel.fit(inputs, params)
            seconds = f"{time.perf_counter() - started:.1f}"
        following = score_next_items(model, tests, (20,), 0, args.seed)
        pairs = score_model(model, holdout, 10)
        rows.append((epochs, alpha, seconds, following["next_recall@20"], following["next_mrr@20"], pairs.auc, pairs.hit_rate))
        print(f"  done: {epochs} epochs, alpha {alpha}: {seconds} s", flush=True)

    reference = rows[0]
    print("\n| epochs | alpha | train s | next Recall@20 | next MRR@20 | AUC-ROC | HitRate@10 | time vs first | Recall vs first |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for epochs, alpha, seconds, recall, mrr, auc, hit in rows:
        ratio = float(seconds.rstrip("*")) / float(reference[2].rstrip("*"))
        print(f"| {epochs} | {alpha} | {seconds} | {recall:.4f} | {mrr:.4f} | {auc:.4f} | {hit:.4f} | "
              f"{ratio:.2f}x | {recall / reference[3]:.3f}x |")


if __name__ == "__main__":
    main()
