"""One local Spark session for the whole test run (starting one takes 10–20 s): two cores, few shuffle
partitions, no web UI, no console progress bar, Spark's logs at WARN (they carry no patient data).

Without PySpark (the `spark` extra) or Java the Spark tests skip and say why, except in CI (CI=true), where
they fail: CI installs the extra (`make install-test`)."""

from __future__ import annotations

import os
import shutil
from importlib.util import find_spec
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The master of the tests: two worker threads, so that a shuffle has two sides even on one core.
TEST_MASTER = "local[2]"
TEST_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "1g",
}


def spark_missing() -> str | None:
    """Why Spark cannot run here, or None."""
    if find_spec("pyspark") is None:
        return "PySpark is not installed (pip install -e '.[spark]', or make install-test)"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java (Spark needs Java 17 or later)"
    return None


def require_spark() -> None:
    """Skip the calling test module without Spark, or fail it in CI."""
    reason = spark_missing()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the Spark tests must run in CI: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def local_spark_session() -> SparkSession:
    from cds.prescreen.engine_spark import spark_session

    return spark_session(TEST_MASTER, TEST_CONF)
