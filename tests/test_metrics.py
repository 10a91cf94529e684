"""Metrics on a hand-computed example."""

from __future__ import annotations

import pytest

from bilstm.runtime.metrics import classification_metrics


def test_classification_metrics_hand_computed() -> None:
    # gold: a a a b b c ; pred: a a b b c c
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    a, b, c = (m["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"]) == (pytest.approx(1.0), pytest.approx(2 / 3))
    assert (b["precision"], b["recall"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (c["precision"], c["recall"]) == (pytest.approx(0.5), pytest.approx(1.0))
    f1 = [0.8, 0.5, 2 / 3]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)


def test_class_never_predicted_has_zero_precision() -> None:
    m = classification_metrics([0, 1], [0, 0], ["x", "y"])
    assert m["per_class"]["y"]["precision"] == 0.0
    assert m["per_class"]["y"]["recall"] == 0.0
