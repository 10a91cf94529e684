"""Generic mode: ONNX models without bilstm metadata run with tensors in, tensors out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bilstm.runtime.cli import _make_apps

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

UMBRELLA, SINGLE = _make_apps()
runner = CliRunner()


@pytest.fixture(scope="module")
def foreign_lstm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LSTM model as another converter would write it: X[batch, time, 3] -> last state."""
    rng = np.random.default_rng(0)
    hidden = 4
    w = rng.normal(size=(1, 4 * hidden, 3)).astype(np.float32)
    r = rng.normal(size=(1, 4 * hidden, hidden)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "W", "R"], ["", "h"], hidden_size=hidden),
        helper.make_node("Squeeze", ["h", "axes"], ["state"]),
    ]
    graph = helper.make_graph(
        nodes,
        "keras_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", 3])],
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, ["batch", hidden])],
        [
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(r, "R"),
            numpy_helper.from_array(np.array([0], np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("foreign") / "foreign.onnx"
    onnx.save_model(model, str(path))
    return path


def _reference(path: Path, x: np.ndarray) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(str(path)).run(None, {"x": x})[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".json"])
def test_tensors_in_tensors_out(foreign_lstm: Path, tmp_path: Path, suffix: str) -> None:
    x = np.random.default_rng(1).normal(size=(2, 5, 3)).astype(np.float32)
    src = tmp_path / f"in{suffix}"
    if suffix == ".npz":
        np.savez(src, x=x)
    elif suffix == ".npy":
        np.save(src, x)
    else:
        src.write_text(json.dumps({"x": x.tolist()}))
    result = runner.invoke(SINGLE, [str(foreign_lstm), str(src)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)["state"]
    assert out["shape"] == [2, 4] and out["dtype"] == "float32"
    # ONNX's own reference evaluator is an independent oracle for the LSTM kernel
    np.testing.assert_allclose(np.array(out["data"]), _reference(foreign_lstm, x), atol=1e-5)


def test_npz_output_and_info(foreign_lstm: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.npz"
    np.savez(src, x=np.ones((1, 2, 3), np.float32))
    dst = tmp_path / "out.npz"
    result = runner.invoke(SINGLE, [str(foreign_lstm), str(src), "--output", str(dst)])
    assert result.exit_code == 0, result.output
    with np.load(dst) as data:
        assert data["state"].shape == (1, 4)
    info = runner.invoke(UMBRELLA, ["info", str(foreign_lstm), "--json"])
    assert info.exit_code == 0
    doc = json.loads(info.stdout)
    assert doc["task"] is None and doc["inputs"]["x"]["shape"] == ["batch", "time", 3]


def test_generic_errors(foreign_lstm: Path, tmp_path: Path) -> None:
    bad = tmp_path / "in.npz"
    np.savez(bad, y=np.ones((1, 2, 3), np.float32))
    result = runner.invoke(SINGLE, [str(foreign_lstm), str(bad)])
    assert result.exit_code == 2 and "missing ['x']" in result.stderr
    np.savez(bad, x=np.ones((1, 2, 5), np.float32))
    result = runner.invoke(SINGLE, [str(foreign_lstm), str(bad)])
    assert result.exit_code == 2 and "expects ['batch', 'time', 3]" in result.stderr
    text = tmp_path / "in.txt"
    text.write_text("hello\n")
    result = runner.invoke(SINGLE, [str(foreign_lstm), str(text)])
    assert result.exit_code == 2 and "generic mode" in result.stderr
