"""`bilstm-run`/`bilstm eval` refuse, before any work, what would lose data or be ignored.

In-process through Typer's CliRunner: these are argument checks, not process behaviour.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bilstm.runtime import cli
from bilstm.runtime.cli import _make_apps

runner = CliRunner()
UMBRELLA, SINGLE = _make_apps()
TEXT = "A gorgeous, witty movie.\nDull and lifeless.\n"


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(SINGLE, [*args])


@pytest.fixture()
def reviews(tmp_path: Path) -> Path:
    path = tmp_path / "r.txt"
    path.write_text(TEXT)
    return path


def assert_refused(result, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.output.lower()
    for word in words:
        assert word.lower() in message, result.output


def test_output_equal_to_input_is_refused_and_input_kept(reviews: Path) -> None:
    assert_refused(run("sentiment", str(reviews), "-o", str(reviews)), "is the input file")
    assert reviews.read_text() == TEXT


def test_output_linked_to_input_is_refused(reviews: Path, tmp_path: Path) -> None:
    symlink = tmp_path / "link.txt"
    symlink.symlink_to(reviews)
    hardlink = tmp_path / "hard.txt"
    os.link(reviews, hardlink)
    assert_refused(run("sentiment", str(reviews), "-o", str(symlink)), "is the input file")
    assert_refused(run("sentiment", str(hardlink), "-o", str(reviews)), "is the input file")
    assert reviews.read_text() == TEXT


def test_output_over_the_model_file_is_refused(tmp_path: Path, reviews: Path) -> None:
    from bilstm.runtime.builtin import resolve_model

    model = tmp_path / "m.onnx"
    model.write_bytes(resolve_model("sentiment").read_bytes())
    assert_refused(run(str(model), str(reviews), "-o", str(model)), "is the input file")


def test_output_folder_is_refused_before_scoring(reviews: Path, tmp_path: Path) -> None:
    folder = tmp_path / "outdir"
    folder.mkdir()
    assert_refused(run("sentiment", str(reviews), "-o", str(folder)), "is a folder")
    assert list(folder.iterdir()) == []


def test_output_in_missing_folder_is_refused(reviews: Path, tmp_path: Path) -> None:
    assert_refused(
        run("sentiment", str(reviews), "-o", str(tmp_path / "no" / "x.jsonl")), "does not exist"
    )


def test_existing_result_file_is_replaced(reviews: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    result = run("sentiment", str(reviews), "-o", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert out.read_text().count("\n") == 2 and "old" not in out.read_text()


def test_optimized_model_in_missing_folder_names_that_path(reviews: Path) -> None:
    result = run("sentiment", str(reviews), "--optimized-model", "/nonexistent/x.onnx")
    assert_refused(result, "/nonexistent/x.onnx", "does not exist")
    assert "sentiment" not in result.output.split("error:")[1].split(":")[0]


def test_profile_prefix_in_missing_folder_is_refused(reviews: Path) -> None:
    assert_refused(run("sentiment", str(reviews), "--profile", "/nonexistent/p"), "--profile")


def test_profile_reports_the_file_it_wrote(reviews: Path, tmp_path: Path) -> None:
    result = run("sentiment", str(reviews), "--profile", str(tmp_path / "prof"))
    assert result.exit_code == 0, result.output
    written = result.stderr.split("profile written to ")[1].split("\n")[0].strip()
    assert Path(written).is_file()


@pytest.mark.parametrize(
    "model, option",
    [
        ("sentiment", ["--anomalies"]),
        ("sentiment", ["--rolling"]),
        ("sentiment", ["--top-k", "3"]),
        ("sentiment", ["--threshold", "2"]),
        ("pos-en", ["--top-k", "3"]),
        ("cloze-en", ["--no-probabilities"]),
        ("elecdemand-h1", ["--top-k", "3"]),
        ("elecdemand-h1", ["--chunk-size", "10"]),
        ("elecdemand-h1", ["--anomalies"]),  # needs --rolling
        ("elecdemand-h1", ["--rolling", "--threshold", "2"]),  # needs --anomalies
        ("sentiment", ["--device", "cpu", "--device-id", "5"]),
    ],
)
def test_options_that_would_be_ignored_are_refused(
    model: str, option: list[str], reviews: Path
) -> None:
    result = run(model, str(reviews), *option)
    assert_refused(result, option[0] if option[0] != "--rolling" else "--")


def test_applicable_options_still_work() -> None:
    demand = Path(__file__).parents[1] / "examples" / "demand.csv"
    result = run("elecdemand-h1", str(demand), "--rolling", "--anomalies", "--threshold", "2")
    assert result.exit_code == 0, result.output


def test_tensor_input_refuses_record_options(tmp_path: Path) -> None:
    import numpy as np

    feeds = tmp_path / "in.npz"
    np.savez(feeds, input_ids=np.array([[5, 6]], np.int64), lengths=np.array([2], np.int64))
    assert_refused(run("sentiment", str(feeds), "--format", "tsv"), "--format", "tensor input")


def test_eval_checkpoint_without_training_extra_says_how_to_install(tmp_path: Path) -> None:
    """The runtime-only install: no exporter at all, or one whose imports fail."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    data = tmp_path / "dev.tsv"
    data.write_text("pos\tgood\n")

    def exporter(checkpoint: Path, out: Path) -> None:
        raise ModuleNotFoundError("No module named 'onnx'")

    for app in (cli.umbrella_app(), cli.umbrella_app(checkpoint_exporter=exporter)):
        result = runner.invoke(app, ["eval", str(ckpt), str(data)])
        assert_refused(result, "pip install", "bilstm[train]")


def test_eval_refuses_gold_tags_the_model_does_not_know(tmp_path: Path) -> None:
    conllu = tmp_path / "dev.conllu"
    conllu.write_text(
        "1\tThe\tthe\tDET\tDT\t_\t_\t_\t_\t_\n2\tcat\tcat\tNOUN\tNN\t_\t_\t_\t_\t_\n\n"
    )
    ok = runner.invoke(UMBRELLA, ["eval", "pos-en", str(conllu)])
    assert ok.exit_code == 0, ok.output
    assert_refused(
        runner.invoke(UMBRELLA, ["eval", "pos-en", str(conllu), "--tag-column", "xpos"]),
        "not among the model's",
        "'NN'",
    )


def test_help_keeps_bracketed_words() -> None:
    result = runner.invoke(UMBRELLA, ["--help"])
    assert "bilstm[train]" in result.output
    single = runner.invoke(SINGLE, ["--help"], env={"COLUMNS": "200"})
    on_error = next(line for line in single.output.splitlines() if "│ --on-error" in line)
    assert "record|stop" in on_error and "<str>" not in on_error
    assert "[default: 64 on CPU, 1024 on CUDA]" in single.output


def test_tsv_keeps_tag_confidences_and_forecast_zscores_with_json_booleans(
    tmp_path: Path,
) -> None:
    sentence = tmp_path / "s.txt"
    sentence.write_text("The cat sat .\n")
    tag = run("pos-en", str(sentence), "-f", "tsv", "-q").stdout.splitlines()
    assert tag[0].split("\t") == ["line", "tokens", "tags", "confidences", "truncated", "error"]
    assert len(tag[1].split("\t")[3].split()) == 4
    demand = Path(__file__).parents[1] / "examples" / "demand.csv"
    rows = run("elecdemand-h1", str(demand), "--rolling", "--anomalies", "-f", "tsv", "-q")
    header, first = rows.stdout.splitlines()[:2]
    assert header.split("\t") == ["row", "forecast", "actual", "zscores", "anomalies", "error"]
    assert first.split("\t")[4] in ("true", "false")
    assert "True" not in rows.stdout and "False" not in rows.stdout


def test_tokenize_words_splits_punctuation_for_tag_models(tmp_path: Path) -> None:
    import json

    text = tmp_path / "raw.txt"
    text.write_text("Hello, world! I can't go.\n")
    spaces = json.loads(run("pos-en", str(text), "-q").stdout)
    words = json.loads(run("pos-en", str(text), "-q", "--tokenize", "words").stdout)
    assert "world!" in spaces["tokens"]
    assert words["tokens"] == ["Hello", ",", "world", "!", "I", "can't", "go", "."]
    assert words["tags"][1] == "PUNCT" and words["tags"][-1] == "PUNCT"
    assert_refused(run("sentiment", str(text), "--tokenize", "words"), "--tokenize")


def test_the_bilstm_entry_point_runs_runtime_commands() -> None:
    """`bilstm.cli.main`, as the console script calls it, for a runtime command."""
    import subprocess
    import sys

    script = "import sys; sys.argv = ['bilstm', 'info', 'sentiment', '--json']; "
    script += "from bilstm.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert '"task": "classify"' in out.stdout


def test_train_without_torch_says_how_to_install(tmp_path: Path) -> None:
    """The runtime-only install: `bilstm train`'s options parse, then torch is missing."""
    import subprocess
    import sys

    data = tmp_path / "t.tsv"
    data.write_text("pos\tgood\nneg\tbad\n")
    argv = ["bilstm", "train", "classify", "--data", str(data), "--dev", str(data)]
    argv += ["--out", str(tmp_path / "o")]
    script = (
        "import sys; sys.modules['torch'] = None; sys.argv = " + repr(argv) + "; "
        "from bilstm.cli import main; main()"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "pip install" in out.stderr and "bilstm[train]" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "o").exists()
