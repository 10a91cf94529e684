"""`bilstm convert --ort` (runtime/convert.py) and `.ort` files in the runtime.

The built-in models are converted once per module (about 5 s); every check compares the
`.ort` with its `.onnx` through the Python runtime and `bilstm-run`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from bilstm.core.errors import DeviceError, InputError, ModelLoadError, ParityError
from bilstm.runtime import BiLSTM
from bilstm.runtime import convert as convert_module
from bilstm.runtime.builtin import builtin_models
from bilstm.runtime.cli import _make_apps
from bilstm.runtime.convert import CONFIG_NAME, convert, convert_models
from bilstm.runtime.session import is_ort_format

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# One example input per built-in model (what `bilstm-run NAME FILE` reads).
INPUTS = {
    "sentiment": "reviews.txt",
    "sentiment-int8": "reviews.txt",
    "sentiment-fast": "reviews.txt",
    "pos-en": "sentences.txt",
    "cloze-en": "blanks.txt",
    "elecdemand-h1": "demand.csv",
    "elecdemand-h48": "demand.csv",
}
runner = CliRunner()


def _convert_app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command()(convert)
    return app


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ort")
    result = runner.invoke(_convert_app(), [*sorted(builtin_models()), "--ort", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_every_builtin_has_an_example_input() -> None:
    assert set(INPUTS) == set(builtin_models())


def test_ort_files_are_ort_format_and_listed_on_stdout(converted: Path) -> None:
    for name in builtin_models():
        path = converted / f"{name}.ort"
        assert is_ort_format(path)
        assert not is_ort_format(builtin_models()[name])
    assert sorted(p.name for p in converted.iterdir()) == sorted(
        [f"{n}.ort" for n in builtin_models()] + [CONFIG_NAME]
    )


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_bilstm_run_on_the_ort_file_prints_what_the_onnx_prints(converted: Path, name: str) -> None:
    _, single = _make_apps()
    source = str(EXAMPLES / INPUTS[name])
    want = runner.invoke(single, [name, source, "--quiet", "--batch-size", "1"])
    got = runner.invoke(single, [str(converted / f"{name}.ort"), source, "-q", "--batch-size", "1"])
    assert want.exit_code == got.exit_code == 0, got.output
    assert got.stdout == want.stdout and got.stdout.strip()


def test_ort_outputs_equal_the_onnx_outputs_exactly(converted: Path) -> None:
    """Raw graph outputs on the converter's ragged probes: the same kernels, the same graph."""
    for name in ("sentiment", "pos-en", "cloze-en", "elecdemand-h48"):
        onnx_model = BiLSTM.load(name, device="cpu", threads=1)
        ort_model = BiLSTM.load(converted / f"{name}.ort", device="cpu", threads=1)
        feeds = convert_module._probe_feeds(onnx_model.session, onnx_model.metadata)
        want, got = onnx_model.run(feeds), ort_model.run(feeds)
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}: {key}")


def test_metadata_survives_in_the_ort_file(converted: Path) -> None:
    for name in builtin_models():
        onnx_model = BiLSTM.load(name, device="cpu", threads=1)
        ort_model = BiLSTM.load(converted / f"{name}.ort", device="cpu", threads=1)
        assert type(ort_model) is type(onnx_model)
        assert ort_model.metadata.to_json() == onnx_model.metadata.to_json()
    umbrella, _ = _make_apps()
    info = runner.invoke(umbrella, ["info", str(converted / "pos-en.ort"), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["task"] == "tag"


def test_standalone_models_convert_too(tmp_path: Path) -> None:
    standalone = EXAMPLES / "web" / "models" / "pos-en-standalone.onnx"
    (done,) = convert_models([standalone], tmp_path)
    model = BiLSTM.load(done.target, device="cpu", threads=1)
    assert model.metadata.standalone
    want = BiLSTM.load(standalone, device="cpu", threads=1).predict(["The dog barks ."])
    assert model.predict(["The dog barks ."]) == want
    assert "com.microsoft;1;" in (tmp_path / CONFIG_NAME).read_text()
    assert "Tokenizer" in (tmp_path / CONFIG_NAME).read_text()


def test_config_lists_the_operators_of_exactly_these_models(converted: Path) -> None:
    text = (converted / CONFIG_NAME).read_text()
    named = re.findall(r"(?m)^# - (.+)$", text)
    assert named == sorted(f"{n}.ort" for n in builtin_models())  # file names, no folders
    entries = {line.split(";")[0] for line in text.splitlines() if not line.startswith("#")}
    assert entries == {"ai.onnx", "com.microsoft"}
    assert "DynamicQuantizeLSTM" in text and "LSTM" in text
    assert str(converted) not in text


def test_config_in_the_guide_is_the_one_the_command_writes(converted: Path) -> None:
    """docs/on-device.md shows the built-in models' configuration; it must stay current."""
    guide = (ROOT / "docs" / "on-device.md").read_text()
    block = re.search(r"```\n(# Generated from model/s:\n.*?)```", guide, re.S)
    assert block is not None, "docs/on-device.md has no required_operators.config block"
    assert block.group(1) == (converted / CONFIG_NAME).read_text()


def test_type_reduction_lists_types(tmp_path: Path) -> None:
    convert_models(["elecdemand-h1"], tmp_path, type_reduction=True)
    text = (tmp_path / CONFIG_NAME).read_text()
    assert 'Div{"inputs": {"0": ["float"]}}' in text  # operators ONNX Runtime can reduce
    assert ",LSTM," in text  # and those it cannot, by name


def test_existing_outputs_are_refused_without_force(tmp_path: Path) -> None:
    target = tmp_path / "elecdemand-h1.ort"
    target.write_bytes(b"keep me")
    result = runner.invoke(_convert_app(), ["elecdemand-h1", "--ort", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "already exists; pass --force" in result.output
    assert target.read_bytes() == b"keep me"
    assert not (tmp_path / CONFIG_NAME).exists()
    again = runner.invoke(
        _convert_app(), ["elecdemand-h1", "--ort", "-o", str(tmp_path), "--force"]
    )
    assert again.exit_code == 0, again.output
    assert is_ort_format(target)


def test_bad_arguments_are_refused_before_any_work(tmp_path: Path, converted: Path) -> None:
    app = _convert_app()
    no_format = runner.invoke(app, ["sentiment", "-o", str(tmp_path)])
    assert no_format.exit_code == 2 and "--ort" in no_format.output
    with pytest.raises(InputError, match="already an ORT-format file"):
        convert_models([converted / "sentiment.ort"], tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        convert_models(["sentiment"], tmp_path / "missing")
    with pytest.raises(InputError, match="optimization must be"):
        convert_models(["sentiment"], tmp_path, level="fast")
    with pytest.raises(InputError, match="same file name"):
        convert_models(["sentiment", ROOT / "runtime" / "assets" / "sentiment.onnx"], tmp_path)
    with pytest.raises(ModelLoadError, match="not the name of a built-in"):
        convert_models(["no-such-model"], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_check_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def differs(source: Path, target: Path) -> float:
        raise ParityError(f"{target}: output 'forecast' differs")

    monkeypatch.setattr(convert_module, "_compare", differs)
    with pytest.raises(ParityError):
        convert_models(["elecdemand-h1"], tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither the .ort, its temp file nor the config


def test_cuda_is_refused_for_ort_files(converted: Path) -> None:
    with pytest.raises(DeviceError, match="ORT-format files are converted for the CPU"):
        BiLSTM.load(converted / "elecdemand-h1.ort", device="cuda")
    assert BiLSTM.load(converted / "elecdemand-h1.ort").providers == ["CPUExecutionProvider"]


def test_broken_ort_files_are_refused_with_one_line(converted: Path, tmp_path: Path) -> None:
    data = (converted / "sentiment.ort").read_bytes()
    truncated = tmp_path / "truncated.ort"
    truncated.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.bin"  # ORT-format header, any name: still recognised
    garbage.write_bytes(data[:8] + bytes(range(256)) * 8)
    for path in (truncated, garbage):
        with pytest.raises(ModelLoadError, match="ONNX Runtime cannot load it") as err:
            BiLSTM.load(path, device="cpu")
        assert "\n" not in str(err.value)
    _, single = _make_apps()
    result = runner.invoke(single, [str(truncated), str(EXAMPLES / "reviews.txt")])
    assert result.exit_code == 2 and "error:" in result.output


def test_an_ort_file_under_another_name_loads(converted: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    renamed.write_bytes((converted / "elecdemand-h1.ort").read_bytes())
    assert BiLSTM.load(renamed, device="cpu").task == "forecast"
