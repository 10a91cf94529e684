"""The determinism bound stated in runtime/determinism.py, the README and the model cards.

fp32: bit-identical whatever the batch and threads. int8: bit-identical at batch size 1 (alone,
inside a file, any threads) and for the same settings twice; across batchings and thread counts
within the measured drift. Shipped models, a few dozen lines from examples/.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from bilstm.runtime import BiLSTM
from bilstm.runtime.determinism import (
    INT8_MEASURED_DRIFT,
    compare,
    determinism,
    probability_rows,
    row_independent_batch_size,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
INT8 = sorted(INT8_MEASURED_DRIFT)


def _read(name: str) -> list[str]:
    return [x for x in (EXAMPLES / name).read_text(encoding="utf-8").splitlines() if x.strip()]


def _blank_middle(line: str) -> str:
    words = line.split()
    words[len(words) // 2] = "___"
    return " ".join(words)


@cache
def _lines(model: str) -> tuple[str, ...]:
    """25-35 lines of varied length: the examples and pairs of example reviews."""
    reviews = _read("reviews.txt")
    pairs = [f"{a} {b}" for a in reviews for b in reviews if a != b]
    if model == "pos-en":
        return tuple(_read("sentences.txt") + reviews + pairs[:25])
    if model == "cloze-en":
        return tuple(_read("blanks.txt") + [_blank_middle(x) for x in reviews + pairs[:25]])
    return tuple(reviews + pairs)


@cache
def _model(name: str, threads: int) -> BiLSTM:
    return BiLSTM.load(name, device="cpu", threads=threads)


def _rows(name: str, threads: int, batch_size: int) -> list[np.ndarray | None]:
    return probability_rows(_model(name, threads), _lines(name), batch_size)[0]


def _sizes(name: str) -> list[int] | None:
    return probability_rows(_model(name, 1), _lines(name), 1)[1] if name == "pos-en" else None


@pytest.mark.parametrize("name", INT8)
def test_int8_models_are_int8(name: str) -> None:
    assert _model(name, 1).metadata.export["precision"] == "int8"
    assert row_independent_batch_size("int8") == 1


@pytest.mark.parametrize("name", [*INT8, "sentiment"])
@pytest.mark.parametrize("threads", [1, 2])
def test_same_settings_twice_is_bit_identical(name: str, threads: int) -> None:
    drift = compare(_rows(name, threads, 64), _rows(name, threads, 64))
    assert drift.records >= 25 and drift.differing == 0


@pytest.mark.parametrize("name", INT8)
def test_int8_batch_size_1_is_independent_of_neighbours_and_threads(name: str) -> None:
    lines = list(_lines(name))
    in_file = _rows(name, 1, 1)
    for threads in (1, 2):
        drift = compare(in_file, _rows(name, threads, 1))
        assert drift.differing == 0, (threads, drift)
    # each line alone, as `bilstm-run MODEL one-line.txt` scores it
    model = _model(name, 2)
    for i in (0, len(lines) // 2, len(lines) - 1):
        alone = probability_rows(model, lines[i : i + 1], 64)[0][0]
        assert alone is not None and in_file[i] is not None
        assert np.array_equal(alone, in_file[i]), lines[i]
    # the public API agrees: predict at batch size 1 in a file == predict alone
    assert model.predict(lines, batch_size=1)[-1] == model.predict(lines[-1:])[0]


@pytest.mark.parametrize("name", INT8)
def test_int8_batched_within_the_stated_drift(name: str) -> None:
    bound = INT8_MEASURED_DRIFT[name]
    alone, sizes = _rows(name, 1, 1), _sizes(name)
    for threads, batch_size in ((1, 64), (2, 64), (1, 8), (2, 8)):
        drift = compare(alone, _rows(name, threads, batch_size), sizes)
        assert drift.max_abs <= bound, (threads, batch_size, drift)
    drift = compare(_rows(name, 1, 64), _rows(name, 2, 64), sizes)
    assert drift.max_abs <= bound, drift


def test_fp32_is_independent_of_batch_and_threads() -> None:
    alone = _rows("sentiment", 1, 1)
    for threads, batch_size in ((1, 64), (2, 64), (2, 1), (1, 7), (2, 4096)):
        drift = compare(alone, _rows("sentiment", threads, batch_size))
        assert drift.records >= 25 and drift.differing == 0, (threads, batch_size, drift)


def test_notes_state_the_bound() -> None:
    assert "whatever the other lines" in determinism("fp32")
    note = determinism("int8")
    assert "--batch-size 1" in note and "can flip" in note
    assert "not measured" in determinism("fp16")
    assert row_independent_batch_size("fp32") is None


def test_compare_counts_differences_and_flips() -> None:
    a = [np.array([0.6, 0.4], np.float32), None, np.array([0.2, 0.8], np.float32)]
    b = [np.array([0.45, 0.55], np.float32), None, np.array([0.2, 0.8], np.float32)]
    drift = compare(a, b)
    assert (drift.records, drift.differing, drift.flips) == (2, 1, 1)
    assert drift.max_abs == pytest.approx(0.15)
    with pytest.raises(ValueError):
        compare([None], [np.zeros(2, np.float32)])


def test_info_states_what_is_bit_identical() -> None:
    """`bilstm info` carries the precision's determinism note (int8: batch-dependent)."""
    import json

    from typer.testing import CliRunner

    from bilstm.runtime.cli import _make_apps

    umbrella, _ = _make_apps()
    int8 = json.loads(CliRunner().invoke(umbrella, ["info", "sentiment-int8", "--json"]).stdout)
    fp32 = json.loads(CliRunner().invoke(umbrella, ["info", "sentiment", "--json"]).stdout)
    assert "--batch-size 1" in int8["determinism"] and "--threads" in int8["determinism"]
    assert "whatever the other lines" in fp32["determinism"]
