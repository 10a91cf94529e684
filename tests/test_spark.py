"""The README's Spark recipe (`mapInPandas` with `shared_predictor`) gives what `bilstm-run` gives.

Skipped without pyspark (and a Java runtime); a local[2] session takes about a minute here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.data import review_lines
from typer.testing import CliRunner

from bilstm.runtime.cli import _make_apps

pytestmark = [
    pytest.mark.slow,  # a local Spark session: about a minute
    pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    sql = pytest.importorskip("pyspark.sql")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("pyspark needs a Java runtime")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        sql.SparkSession.builder.master("local[2]")
        .appName("bilstm-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        # a short-lived test JVM: C1 only starts faster than tiered JIT
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


def cli_records(path: Path) -> list[dict[str, Any]]:
    single = _make_apps()[1]
    result = CliRunner().invoke(single, ["sentiment", str(path), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_spark_map_in_pandas_equals_bilstm_run(spark: Any, tmp_path: Path) -> None:
    texts = review_lines(600, seed=23)
    src = tmp_path / "reviews.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    expected = cli_records(src)

    def score(batches: Iterator[Any]) -> Iterator[Any]:
        # defined here, not at module level: Spark's workers cannot import this test module
        from bilstm.runtime.frames import shared_predictor

        predictor = shared_predictor("sentiment", "text", concurrency=2, layout="json")
        for frame in batches:
            yield predictor(frame)

    df = spark.createDataFrame(list(enumerate(texts, 1)), "line long, text string")
    schema = "line long, text string, label string, probabilities string, error string"
    # sorted here, not with orderBy: a range sort is two more Spark jobs (sample, shuffle)
    scored = df.repartition(2).mapInPandas(score, schema).collect()
    rows = sorted(scored, key=lambda r: r["line"])
    assert [r["line"] for r in rows] == [r["line"] for r in expected]
    for row, rec in zip(rows, expected, strict=True):
        assert row["label"] == rec["label"]
        got = None if row["probabilities"] is None else json.loads(row["probabilities"])
        assert got == rec["probabilities"]
        assert row["error"] is None
