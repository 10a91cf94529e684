"""Smoke run of every benchmark script on a tiny model built here (real runs are no tests).

Each script runs in-process with `--smoke` (tiny sizes, one round) on a 2-layer model trained
one epoch on synthetic data, must write its result JSON, and `benchmarks.render` must turn the
results into a Markdown report. Nothing here reads ../shared or the shipped model.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("torch")
pytestmark = pytest.mark.train

SCRIPTS = {
    "throughput": ["files", "sweep", "roofline", "dev_accuracy"],
    "roofline": ["gemm", "profile", "limit_items_per_s"],
    "profile_cli": ["stages", "top_functions", "samples"],
    "latency": ["cases", "ratio_p50"],
    "coldstart": ["wall_s", "ratio"],
    "kernels": ["gemm", "configs"],
    "memory": ["runs", "rss_growth"],
    "int8": ["models", "method", "accuracy_delta"],
    "padding": ["padding_fraction", "cases"],
    "overlap": ["by_threads"],
    "export_time": ["in_process_s"],
    "hotpath": ["share", "workers"],
    "gpu": [],
}
NEEDS_ASSETS = {
    "throughput",
    "profile_cli",
    "roofline",
    "latency",
    "coldstart",
    "memory",
    "int8",
    "padding",
    "overlap",
    "export_time",
    "hotpath",
}


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Any:
    common = importlib.import_module("benchmarks._common")
    return common.make_tiny_assets(tmp_path_factory.mktemp("bench"), layers=2)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_script_runs_on_a_tiny_model(name: str, assets: Any, results_dir: Path) -> None:
    out = results_dir / f"{name}.json"
    argv = ["--smoke", "--threads", "1", "--out", str(out)]
    if name in NEEDS_ASSETS:
        argv += [
            "--model",
            str(assets.model),
            "--checkpoint",
            str(assets.checkpoint),
            "--data",
            str(assets.data),
        ]
    if name == "profile_cli" and shutil.which("py-spy") is None:
        pytest.skip("py-spy is not installed (pip install py-spy)")
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.main(argv) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["benchmark"] == name and doc["smoke"] is True and doc["threads"] == 1
    machine = doc["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["date"]
    assert machine["versions"]["onnxruntime"] and len(machine["loadavg_start"]) == 3
    assert doc["command"].startswith(f"python -m benchmarks.{name} --smoke")
    if name == "gpu" and "skipped" in doc:
        assert doc["skipped"]
        return
    for key in SCRIPTS[name]:
        assert key in doc, f"{name}: no {key!r} in the result"


def test_outputs_agree_and_render(results_dir: Path) -> None:
    """The two sides scored the same lines the same way; the report renders every section."""
    if not (results_dir / "throughput.json").exists():
        pytest.skip("the script smoke runs did not run")
    throughput = json.loads((results_dir / "throughput.json").read_text())
    first = f"runtime:{next(iter(throughput['models']))}"
    for f in throughput["files"].values():
        assert {first, "torch:grouped", "torch:packed"} <= set(f["rows"])
        for pair in (f"{first} vs torch:grouped", "torch:packed vs torch:grouped"):
            same = f["outputs"][pair]
            assert same["same_label"] == same["lines"] == f["lines"], pair
            assert same["max_prob_diff"] < 1e-4, pair
        fair = f["rows"]["torch:grouped"]
        assert fair["ratio_e2e"] == 1.0 and 0 < fair["roofline_share_scoring"]
    render = importlib.import_module("benchmarks.render")
    report = results_dir / "RESULTS.md"
    assert render.main(["--results", str(results_dir), "--out", str(report)]) == 0
    text = report.read_text(encoding="utf-8")
    assert "## Summary" in text and "**Machine**" in text
    for name, (title, _) in render.SECTIONS.items():
        # Every script that wrote results gets its section (GPU never runs here; the py-spy
        # profile is skipped where py-spy is not on PATH).
        if (results_dir / f"{name}.json").exists():
            assert f"## {title}" in text, name
    assert (results_dir / "throughput.json").exists() and (results_dir / "kernels.json").exists()


def test_results_name_no_machine_paths() -> None:
    common = importlib.import_module("benchmarks._common")
    repo = str(common.REPO)
    doc = {
        "cmd": f"python {repo}/x.py --out {repo}",
        repo + "/key": (f"{repo}/a",),
        "near": f"{repo}2/y",
        "python": common.sys.prefix + "/bin/python",
    }
    scrubbed = common.scrub_paths(doc)
    near = scrubbed.pop("near")  # another folder that only starts like the repo
    assert "<repo>" not in near and near.endswith("2/y")
    assert scrubbed == {
        "cmd": "python <repo>/x.py --out <repo>",
        "<repo>/key": ["<repo>/a"],
        "python": "<python>/bin/python",
    }


def test_roofline_flops_formula() -> None:
    """The shipped sentiment model's dimensions give the documented count."""
    roofline = importlib.import_module("benchmarks.roofline")
    dims = {
        "embedding_dim": 128,
        "hidden_size": 128,
        "num_layers": 1,
        "cell": "lstm",
        "merge": "concat",
        "num_labels": 2,
    }
    # 2 directions x 2 FLOPs x 4 gates x 128 x (128 + 128)
    assert roofline.flops_per_token(dims) == 2 * 2 * 4 * 128 * 256
    two = {**dims, "num_layers": 2, "merge": "sum", "cell": "gru"}
    assert roofline.flops_per_token(two) == 2 * 2 * 3 * 128 * (256 + 256)
    item = roofline.flops_per_item(dims, tokens_avg=10.0)
    assert item["flops_per_item"] == 10.0 * 524288 + 2 * 256 * 2
    assert roofline.limit_items_per_s(100.0, 1e6) == 1e5


def test_suite_speed_matches_test_functions_and_reads_pytest_counts() -> None:
    """benchmarks/suite_speed.py (not smoke-run here: it runs pytest twice) pairs test
    functions across checkouts by name, parametrisation dropped, and reads pytest's summary."""
    m = importlib.import_module("benchmarks.suite_speed")
    ids = ["tests/a.py::t[1-x]", "tests/a.py::t[2]", "tests/b.py::u", "5 tests collected in 1s"]
    assert m.functions(ids) == ["tests/a.py::t", "tests/b.py::u"]
    line = "1 failed, 256 passed, 22 skipped, 1 error, 22 warnings in 57.17s (0:00:57)"
    assert m.counts(line) == {"failed": 1, "passed": 256, "skipped": 22, "error": 1}
