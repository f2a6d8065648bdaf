"""The session factory's JVM options reach the JVM that the session runs on."""

from __future__ import annotations

from recsys.config import SparkConfig


def test_the_sessions_jvm_runs_with_the_configured_java_options(spark):
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = set(runtime.getInputArguments())
    options = SparkConfig().driver_java_options.split()
    assert "-XX:G1PeriodicGCInterval=5000" in options
    assert set(options) <= arguments, arguments
