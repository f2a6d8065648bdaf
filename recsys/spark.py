"""The one Spark session factory. Nothing else in the project creates a SparkSession.

It reads the master URL and memory settings from ``SparkConfig``: ``local[*]`` on one machine, a
``spark://`` URL on a cluster. Executors run the interpreter that runs the driver, so the compiled
walk kernel and the project's modules import the same way on both sides.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable

from pyspark.sql import SparkSession

from recsys.config import SparkConfig


def spark_session(config: SparkConfig, app_name: str = "recsys-nightly") -> SparkSession:
    """Return the active session, creating it from ``config`` the first time."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if config.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.appName(app_name)
        .master(config.master)
        .config("spark.driver.memory", config.driver_memory)
        .config("spark.executor.memory", config.executor_memory)
        .config("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
        .config("spark.driver.extraJavaOptions", config.driver_java_options)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", str(config.show_progress).lower())
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.driver.host", os.environ.get("SPARK_DRIVER_HOST", "127.0.0.1"))
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextlib.contextmanager
def job_progress(spark: SparkSession, report: Callable[[int, int], None] | None, every_seconds: float = 1.0):
    """Call ``report(tasks done, tasks in all)`` for the running Spark stages until the block ends (a
    daemon thread reading Spark's status tracker; only for progress bars, never for control)."""
    if report is None:
        yield
        return
    tracker, stop = spark.sparkContext.statusTracker(), threading.Event()

    def poll() -> None:
        while not stop.wait(every_seconds):
            stages = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
            stages = [s for s in stages if s is not None]
            if stages:
                report(sum(s.numCompletedTasks for s in stages), sum(s.numTasks for s in stages))

    thread = threading.Thread(target=poll, name="spark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
