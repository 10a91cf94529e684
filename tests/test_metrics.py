"""Metrics on a hand-computed example."""

from __future__ import annotations

import pytest

from bilstm.core.metrics import classification_metrics


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


def test_bio_entity_f1_hand_computed() -> None:
    from bilstm.core.metrics import bio_spans, tagging_metrics

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG"]]
    assert bio_spans(gold[0]) == {(0, 2, "PER"), (3, 4, "LOC")}
    assert bio_spans(["I-X", "I-X", "O"]) == {(0, 2, "X")}  # a stray I- starts an entity
    m = tagging_metrics(gold, pred)
    assert m["accuracy"] == pytest.approx(5 / 6)
    # gold spans 3, predicted 3, correct 2 (PER, ORG): P = R = F1 = 2/3
    assert m["entity_precision"] == pytest.approx(2 / 3)
    assert m["entity_recall"] == pytest.approx(2 / 3)
    assert m["entity_f1"] == pytest.approx(2 / 3)
    plain = tagging_metrics([["NOUN", "VERB"]], [["NOUN", "NOUN"]], [[True, False]])
    assert "entity_f1" not in plain and plain["oov_accuracy"] == 0.0


def test_forecast_metrics_and_baselines_hand_computed() -> None:
    import numpy as np

    from bilstm.core.metrics import error_metrics, forecast_baselines, topk_accuracy

    m = error_metrics(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 3.0], [5.0, 4.0]]))
    assert m["mae"] == pytest.approx(3 / 4)
    assert m["rmse"] == pytest.approx((5 / 4) ** 0.5)
    assert m["mae_step1"] == pytest.approx(1.0) and m["mae_last_step"] == pytest.approx(0.5)
    target = np.arange(10.0)  # 0, 1, ..., 9
    base = forecast_baselines(target, [6], horizon=3, season=4)
    assert base["persistence"].tolist() == [[5.0, 5.0, 5.0]]
    # steps 6, 7, 8 one season (4) back: 2, 3, 4
    assert base["seasonal_naive"].tolist() == [[2.0, 3.0, 4.0]]
    assert topk_accuracy([1, 2, 3], [[1, 9], [9, 2], [8, 9]], ks=(1, 2)) == {
        "top1": pytest.approx(1 / 3),
        "top2": pytest.approx(2 / 3),
    }
