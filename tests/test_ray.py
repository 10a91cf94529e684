"""`bilstm.runtime.frames.BiLSTMPredictor`: on a local Ray cluster it gives what `bilstm-run` gives.

The Ray tests start a 2-CPU local cluster once for the module and are skipped without the
`ray` extra (`pip install 'bilstm[ray]'`); the predictor's own tests need only numpy.
"""

from __future__ import annotations

import csv
import json
import math
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.data import review_lines
from typer.testing import CliRunner

from bilstm.runtime.cli import _make_apps
from bilstm.runtime.frames import BiLSTMPredictor, default_threads, score_dataset

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()
_, SINGLE = _make_apps()


def cli_records(path: Path, *args: str) -> list[dict[str, Any]]:
    result = runner.invoke(SINGLE, [*args[:1], str(path), *args[1:], "--quiet"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


# -- the predictor alone (no Ray) ----------------------------------------------------------------


def test_predictor_matches_cli_and_reports_bad_values(tmp_path: Path) -> None:
    texts = review_lines(50, seed=3, mangle=True)
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    expected = cli_records(src, "sentiment", "--device", "cpu")

    predictor = BiLSTMPredictor("sentiment", threads=1)
    values = np.empty(len(texts) + 4, dtype=object)
    values[:] = [*texts, None, b"bad \xff", 7, "é" * 600_000]
    out = predictor({"text": values, "k": values})
    assert list(out) == ["text", "k", *predictor.output_columns]
    assert predictor.output_columns == ["label", "p_negative", "p_positive", "error"]
    for i, rec in enumerate(expected):
        assert out["label"][i] == rec["label"] and out["error"][i] is None
        probs = rec["probabilities"] or {"negative": math.nan, "positive": math.nan}
        assert out["p_negative"][i] == pytest.approx(probs["negative"], abs=1e-6, nan_ok=True)
        assert out["p_positive"][i] == pytest.approx(probs["positive"], abs=1e-6, nan_ok=True)
    errors = list(out["error"][len(texts) :])
    assert errors[0] == "no text (the value is null)"
    assert errors[1].startswith("not valid UTF-8")
    assert errors[2] == "expected a string, got int"
    assert "over max_text_bytes" in errors[3]
    assert all(v is None for v in out["label"][len(texts) :])

    as_json = BiLSTMPredictor("sentiment", threads=1, layout="json", prefix="pred_")
    js = as_json({"text": values[:3]})
    assert as_json.output_columns == ["pred_label", "pred_probabilities", "pred_error"]
    for i in range(3):
        got = js["pred_probabilities"][i]
        assert (None if got is None else json.loads(got)) == expected[i]["probabilities"]


def test_predictor_pickles_as_its_settings_and_sizes_threads() -> None:
    predictor = BiLSTMPredictor("sentiment", column="review", concurrency=2)
    assert predictor.threads == default_threads(2) >= 1
    clone = pickle.loads(pickle.dumps(predictor))
    assert clone.column == "review" and clone.threads == predictor.threads
    assert clone.model is not predictor.model
    assert BiLSTMPredictor("sentiment", threads=3).threads == 3
    assert default_threads(10_000) == 1


def test_forecast_windows_match_cli_rolling() -> None:
    demand = REPO / "examples" / "demand.csv"
    expected = cli_records(demand, "elecdemand-h1", "--rolling", "--device", "cpu")
    predictor = BiLSTMPredictor("elecdemand-h1", column="window", threads=1)
    with demand.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    series = np.array([[float(r[c]) for c in predictor.model.columns] for r in rows], np.float32)
    window = predictor.model.window
    windows = [series[s : s + window] for s in range(len(series) - window + 1)]
    column = np.empty(len(windows) + 3, dtype=object)
    column[:] = [*windows, None, [[1.0, 2.0]], series[:5]]
    out = predictor({"window": column})
    assert len(expected) == len(windows)
    for rec, got in zip(expected, out["forecast"], strict=False):
        assert got == pytest.approx(rec["forecast"], abs=1e-5)
    assert out["error"][-3] == "no window (the value is null)"
    assert "expected a window" in out["error"][-2]
    assert f"time >= {window}" in out["error"][-1]  # shorter than the model's window: one row


def test_importing_the_runtime_leaves_ray_out() -> None:
    code = "import sys, bilstm.runtime, bilstm.runtime.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- on a local Ray cluster -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    pytest.importorskip("pandas")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow  # a local Ray cluster: ~30 s here
def test_ray_map_batches_equals_bilstm_run(ray_cluster: Any, tmp_path: Path) -> None:
    ray = ray_cluster
    texts = review_lines(800, seed=11, mangle=True)
    src = tmp_path / "reviews.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    expected = cli_records(src, "sentiment", "--device", "cpu")
    assert len(expected) == len(texts)

    ds = ray.data.from_items([{"line": i, "text": t} for i, t in enumerate(texts, 1)])
    scored = ds.map_batches(
        BiLSTMPredictor,
        fn_constructor_kwargs={
            "model": "sentiment",
            "column": "text",
            "concurrency": 2,
            "layout": "json",
        },
        compute=ray.data.ActorPoolStrategy(size=2),
        batch_size=150,
        batch_format="pandas",
    )
    rows = sorted(scored.take_all(), key=lambda r: r["line"])
    assert [r["line"] for r in rows] == [r["line"] for r in expected]
    for row, rec in zip(rows, expected, strict=True):
        assert row["label"] == rec["label"], (row, rec)
        got = None if row["probabilities"] is None else json.loads(row["probabilities"])
        assert got == rec["probabilities"], (row, rec)
        assert row["error"] is None

    # numpy batches, per-label columns, through the helper
    columns = score_dataset(
        ds, "sentiment", concurrency=2, rows_per_batch=250, batch_format="numpy"
    )
    rows = sorted(columns.take_all(), key=lambda r: r["line"])
    for row, rec in zip(rows, expected, strict=True):
        assert row["label"] == rec["label"]
        probs = rec["probabilities"] or {"negative": math.nan, "positive": math.nan}
        assert row["p_negative"] == pytest.approx(probs["negative"], abs=0, nan_ok=True)
        assert row["p_positive"] == pytest.approx(probs["positive"], abs=0, nan_ok=True)


def test_first_module_name_still_imports() -> None:
    from bilstm.runtime import ray as first_name

    assert first_name.BiLSTMPredictor is BiLSTMPredictor
