"""Training throughput of every trainable model at 1 thread vs 2 threads, and the whole train stage
serial vs models in parallel processes, side by side on the embedded sample.

The sample goes through the pipeline's own ingest, graph (with sequences), validation and walks
stages once (Spark, local) into ``--prepared`` (kept, so later runs skip it); the training inputs are
then loaded the way the train stage loads them (``recsys.train.load_training_inputs``). Each model is
fitted with the same params, seed and inputs at each thread count in ``--threads``; the table gives
seconds per fit, the rate of 2 threads against 1, and whether the model changed torch's global thread
count. ``--stage`` then times ``train_models`` for the default model list (or ``--stage-models``) with
each ``train.threads`` / ``train.parallel_models`` setting, also side by side.

    python benchmarks/threads.py --prepared /tmp/threads-sample
    python benchmarks/threads.py --prepared /tmp/threads-sample --models lightgcn word2vec --threads 1 2
    python benchmarks/threads.py --prepared /tmp/threads-sample --stage --skip-models
    python benchmarks/threads.py --prepared /tmp/threads-sample --stage --skip-models --settings parallel serial --repeat 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.config import PipelineConfig, SparkConfig, TrainConfig  # noqa: E402
from recsys.train import Parallelism, available_cores, load_training_inputs, parallelism, train_models  # noqa: E402

PYTORCH = ("skipgram", "side_info_avg", "eges", "mf_pairs", "mf_walks", "mf_bpr", "lightgcn", "ngcf", "gmf", "mlp",
           "neumf", "gru4rec", "attrec")
MODELS = ("word2vec", "popular", "item_knn", "sknn") + PYTORCH


def prepare_sample(folder: Path, seed: int = 42, spark=None) -> dict:
    """Run ingest, graph (with sequences), validation and walks on the embedded sample into ``folder``
    once (on ``spark``, else a local[2] session of its own); return the graph, walks and validation
    folders and the config (reused when already there)."""
    from recsys.graph import build_graph
    from recsys.holdout import build_validation
    from recsys.ingest import ingest
    from recsys.lake import Lake
    from recsys.spark import spark_session
    from recsys.transition import TransitionTable
    from recsys.walks import generate_walks
    from tasks.plan import plan_run

    config = PipelineConfig(lake=folder / "lake", seed=seed, train=TrainConfig(models=MODELS))
    done = folder / "prepared.txt"
    if not done.exists():
        own_session = spark is None
        spark = spark or spark_session(SparkConfig(master="local[2]", shuffle_partitions=4))
        lake = Lake(config.lake)
        ingest(spark, config.ingest, lake)
        plan = plan_run(config)
        build_graph(spark, config.graph, lake, plan.window, plan.paths.graph, plan.validation, config.sequences)
        catalog = load_training_inputs(plan.paths.graph).catalog
        build_validation(spark, lake, plan.window, config.graph, plan.validation, config.evaluate.validation_pairs,
                         catalog, plan.paths.graph, seed, plan.paths.validation)
        generate_walks(spark, TransitionTable.load(plan.paths.graph), config.walks, seed, plan.paths.walks)
        if own_session:
            spark.stop()
        done.write_text("\n".join(str(p) for p in (plan.paths.graph, plan.paths.walks, plan.paths.validation)))
    graph, walks, validation = (Path(p) for p in done.read_text().split("\n"))
    return {"graph": graph, "walks": walks, "validation": validation, "config": config}


def sample_inputs(prepared: dict, threads: int = 1):
    """The training inputs of the prepared sample, loaded as the train stage loads them."""
    config = prepared["config"]
    return load_training_inputs(prepared["graph"], prepared["walks"], prepared["validation"], config.seed, threads,
                                config.interactions, "cpu")


def fit_seconds(name: str, inputs, params, threads: int) -> tuple[float, int]:
    """Seconds of one fit at ``threads``, and torch's global thread count after it."""
    import torch

    from recsys.models import model_class

    inputs.threads = threads
    started = time.perf_counter()
    model_class(name).fit(inputs, params)
    return time.perf_counter() - started, torch.get_num_threads()


def compare_models(prepared: dict, names: tuple[str, ...], thread_counts: tuple[int, ...], params_of) -> None:
    import torch

    inputs = sample_inputs(prepared)
    before = torch.get_num_threads()
    print(f"torch {torch.__version__}, global threads {before}, interop {torch.get_num_interop_threads()}, "
          f"os.cpu_count {os.cpu_count()}")
    header = "".join(f"{str(t) + 't s':>9s}" for t in thread_counts)
    print(f"{'model':14s}{header}  rate {thread_counts[-1]}t/{thread_counts[0]}t  torch threads after")
    for name in names:
        seconds, after = [], []
        for threads in thread_counts:
            s, a = fit_seconds(name, inputs, params_of(name), threads)
            seconds.append(s)
            after.append(a)
        row = "".join(f"{s:9.2f}" for s in seconds)
        print(f"{name:14s}{row}  {seconds[0] / seconds[-1]:10.2f}x   {after}", flush=True)


def compare_stage(prepared: dict, models: tuple[str, ...], settings: list[tuple[str, Parallelism | None, int]],
                  params_of) -> None:
    """``train_models`` for ``models`` once per setting, side by side: (label, parallelism, threads of
    the in-process fits when parallelism is None, the code before train.threads existed)."""
    print(f"train stage, models {', '.join(models)}")
    base = None
    for label, parallel, threads in settings:
        inputs = sample_inputs(prepared, threads)
        with tempfile.TemporaryDirectory(prefix="threads-stage-") as scratch:
            started = time.perf_counter()
            result = train_models(models, params_of, inputs, lambda n: Path(scratch) / n, parallel=parallel)
            seconds = time.perf_counter() - started
        base = base or seconds
        fits = ", ".join(f"{m.name} {m.seconds:.1f}" for m in result.models)
        print(f"{label:44s}: {seconds:7.1f} s = {base / seconds:.2f}x the first  [fits: {fits}]", flush=True)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--prepared", type=Path, default=Path(tempfile.gettempdir()) / "recsys-threads-sample")
    cli.add_argument("--models", nargs="+", default=[m for m in MODELS if m != "popular"])
    cli.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    cli.add_argument("--epochs", type=int, default=None, help="epochs of every model (default: each model's own)")
    cli.add_argument("--skip-models", action="store_true", help="only the --stage comparison")
    cli.add_argument("--stage", action="store_true", help="also time the whole train stage per setting")
    cli.add_argument("--stage-models", nargs="+", default=list(TrainConfig().models))
    cli.add_argument("--settings", nargs="+", choices=["serial", "in-process", "workers", "parallel"],
                     default=["serial", "in-process", "workers", "parallel"], help="the --stage settings, in this order")
    cli.add_argument("--repeat", type=int, default=1, help="run the --stage settings this many times, interleaved")
    args = cli.parse_args()

    prepared = prepare_sample(args.prepared)
    train = prepared["config"].train

    def params_of(name: str):
        params = train.params_for(name)
        return params.model_copy(update={"epochs": args.epochs}) if args.epochs and "epochs" in type(params).model_fields else params

    if not args.skip_models:
        compare_models(prepared, tuple(args.models), tuple(args.threads), params_of)
    if args.stage:
        cores, n = available_cores(), len(args.stage_models)
        settings = {"serial": ("threads 1 (deterministic: true)", None, 1),
                    "in-process": (f"{cores} threads per fit, in process (old false)", None, cores),
                    "workers": (f"threads {cores}, parallel_models false", parallelism(cores, False, n), 0),
                    "parallel": (f"threads {cores}, parallel_models true (default)", parallelism(cores, True, n), 0)}
        compare_stage(prepared, tuple(args.stage_models), [settings[s] for s in args.settings] * args.repeat, params_of)


if __name__ == "__main__":
    main()
