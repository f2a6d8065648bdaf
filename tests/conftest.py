"""Suite-wide fixtures: one local Spark session, one Prefect test harness, the shared datasets."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="recsys-prefect-home-")
for name, value in {
    "PREFECT_HOME": _PREFECT_HOME,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "PYSPARK_PYTHON": sys.executable,
    "PYSPARK_DRIVER_PYTHON": sys.executable,
    "SPARK_LOCAL_IP": "127.0.0.1",
}.items():
    os.environ[name] = value

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"
TAOBAO = DATASETS / "taobao" / "UserBehavior_head.csv"
SAMPLE = PROJECT_ROOT / "recsys" / "sample_data"


def dataset(path: Path) -> Path:
    """A file from ../shared/datasets, or a skip saying why it is missing."""
    if not path.exists():
        pytest.skip(f"real dataset not present: {path} (the shared/datasets folder sits beside the project)")
    return path


@pytest.fixture(scope="session")
def spark():
    from recsys.config import SparkConfig
    from recsys.spark import spark_session

    session = spark_session(SparkConfig(master="local[2]", shuffle_partitions=4))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_api_url(prefect_harness) -> str:
    """The harness's Prefect server, for ``recsys run`` processes whose test is not about the temporary
    server each run otherwise starts (tests/flows/test_adversarial.py and tests/test_wheel.py are)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


# The longest files of the suite, longest first (CI's --durations): started first, so that with two
# workers taking a file at a time no long file runs alone at the end (scripts/test.sh keeps this order).
LONGEST_FILES = ("flows/test_crash.py", "test_scale_benchmark.py", "flows/test_nightly.py", "recsys/test_stages_taobao.py",
                 "recsys/test_ann.py", "test_wheel.py", "recsys/test_cluster.py", "flows/test_deployment.py",
                 "flows/test_increments.py")


def pytest_collection_modifyitems(items):
    """The longest files first, then the other files with slow tests, then the quick ones."""
    tests = Path(__file__).resolve().parent
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item) -> int:
        name = item.path.relative_to(tests).as_posix() if item.path.is_relative_to(tests) else ""
        if name in LONGEST_FILES:
            return LONGEST_FILES.index(name)
        return len(LONGEST_FILES) + (item.path not in slow_files)

    items.sort(key=rank)  # stable: a file's tests stay together and in their order
