"""`bilstm-run` / `bilstm run|info|eval` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bilstm.runtime.cli import _make_apps

runner = CliRunner()
UMBRELLA, SINGLE = _make_apps()


def run(*args: str, input: str | bytes | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(SINGLE, [*args], input=input)


def records(text: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in text.splitlines()]


def test_one_record_per_line_in_order_with_empty_lines(exported: Path, tmp_path: Path) -> None:
    lines = ["A great and lovely film.", "", "Dull, boring, awful plot", "   ", "fun"] * 30
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # small batches and chunks so that bucketing reorders inside and across chunks
    result = run(str(exported), str(src), "--batch-size", "4", "--chunk-size", "7", "--quiet")
    assert result.exit_code == 0, result.output
    out = records(result.stdout)
    assert [r["line"] for r in out] == list(range(1, len(lines) + 1))
    for text, rec in zip(lines, out, strict=True):
        if text.strip():
            assert rec["label"] in ("neg", "pos")
            assert sum(rec["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        else:
            assert rec["label"] is None and rec["probabilities"] is None
    assert out[0]["label"] == "pos" and out[2]["label"] == "neg"


def test_results_match_python_api(exported: Path) -> None:
    from bilstm.runtime import BiLSTM

    texts = ["lovely warm story", "weak cold cast and bad plot", "the film"]
    model = BiLSTM.load(exported, device="cpu", threads=1)
    expected = model.predict(texts)
    result = run(str(exported), "-", "--quiet", input="\n".join(texts))
    assert result.exit_code == 0
    for exp, rec in zip(expected, records(result.stdout), strict=True):
        assert rec["label"] == exp.label
        assert exp.probabilities is not None
        for lab, p in exp.probabilities.items():
            assert rec["probabilities"][lab] == pytest.approx(p, abs=1e-6)


def test_stdin_crlf_bom_and_bad_utf8(exported: Path) -> None:
    data = b"\xef\xbb\xbfgreat fun\r\nbad \xff\xfe bytes\r\nawful"
    result = run(str(exported), "-", "--quiet", input=data)
    assert result.exit_code == 1  # some records failed
    out = records(result.stdout)
    assert [r["line"] for r in out] == [1, 2, 3]
    assert out[0]["label"] == "pos" and "error" not in out[0]
    assert "not valid UTF-8" in out[1]["error"]
    assert out[2]["label"] == "neg"


def test_on_error_stop(exported: Path) -> None:
    result = run(str(exported), "-", "--on-error", "stop", input=b"fine\n\xff\n")
    assert result.exit_code == 2
    assert "line" not in result.stdout or result.stdout == ""
    assert ":2: not valid UTF-8" in result.stderr


def test_tsv_format_and_atomic_output(exported: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("great\n\nbad\n", encoding="utf-8")
    out = tmp_path / "out.tsv"
    result = run(str(exported), str(src), "--format", "tsv", "--output", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[0] == "line\tlabel\tp_neg\tp_pos\ttruncated\terror"
    assert rows[1].startswith("1\tpos\t") and rows[2].startswith("2\t\t")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failed_run_keeps_previous_output(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    result = run(str(exported), str(tmp_path / "missing.txt"), "--output", str(out))
    assert result.exit_code == 2
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nope.onnx", "no such model file"),
        (lambda d: _write(d / "empty.onnx", b""), "empty"),
        (lambda d: _write(d / "text.onnx", b"hello"), "cannot load"),
        (lambda d: d, "is a directory"),
    ],
)
def test_bad_model_is_one_line_exit_2(make, message: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "in.txt"
    src.write_text("x\n")
    model = make(tmp_path)
    result = run(str(model), str(src))
    assert result.exit_code == 2
    assert message in result.stderr
    assert str(model) in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_model_without_metadata(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "plain.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    result = run(str(path), "-", input="x")
    assert result.exit_code == 2
    assert "has no bilstm metadata" in result.stderr and str(path) in result.stderr


def test_missing_input_file_and_debug_traceback(exported: Path, tmp_path: Path) -> None:
    result = run(str(exported), str(tmp_path / "absent.txt"))
    assert result.exit_code == 2
    assert "no such input file" in result.stderr and "absent.txt" in result.stderr
    debug = run(str(exported), str(tmp_path / "absent.txt"), "--debug")
    assert debug.exit_code != 0
    assert debug.exception is not None  # the traceback is shown instead of the one-liner


def test_unknown_builtin_name() -> None:
    result = run("no-such-model", "-", input="x")
    assert result.exit_code == 2
    assert "not the name of a built-in model" in result.stderr


def test_info_and_eval(exported: Path, data_dir: Path) -> None:
    info = runner.invoke(UMBRELLA, ["info", str(exported), "--json"])
    assert info.exit_code == 0, info.output
    doc = json.loads(info.stdout)
    assert doc["task"] == "classify" and doc["labels"] == ["neg", "pos"]
    assert doc["inputs"]["input_ids"][1] == ["batch", "time"]
    assert doc["export"]["parity"]["max_abs"] <= 1e-5
    ev = runner.invoke(UMBRELLA, ["eval", str(exported), str(data_dir / "dev.tsv")])
    assert ev.exit_code == 0, ev.output
    metrics = json.loads(ev.stdout)
    assert metrics["count"] == 60
    assert metrics["accuracy"] > 0.8  # the tiny model learns the synthetic rule


def test_table_format_profile_and_warmup(tmp_path: Path) -> None:
    prefix = tmp_path / "prof"
    opt = tmp_path / "opt.onnx"
    result = run(
        "sentiment",
        "-",
        "--format",
        "table",
        "--warmup",
        "2",
        "--profile",
        str(prefix),
        "--optimized-model",
        str(opt),
        input="great fun\n\nbad\n",
    )
    assert result.exit_code == 0, result.output
    assert "p_positive" in result.stdout and "positive" in result.stdout
    assert "profile written to" in result.stderr
    profiles = list(tmp_path.glob("prof*.json"))
    assert len(profiles) == 1 and json.loads(profiles[0].read_text())
    assert opt.stat().st_size > 0
