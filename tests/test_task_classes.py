"""`BiLSTM.load` returns the task's own class; nothing outside the adapters branches on tasks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bilstm.runtime import (
    BiLSTM,
    Classifier,
    ClozeModel,
    Forecaster,
    InputError,
    MetadataError,
    Tagger,
)
from bilstm.runtime.tasks import MODEL_CLASSES, model_class, spec

REPO = Path(__file__).parents[1]


@pytest.mark.parametrize(
    "name, cls",
    [
        ("sentiment", Classifier),
        ("pos-en", Tagger),
        ("cloze-en", ClozeModel),
        ("elecdemand-h1", Forecaster),
    ],
)
def test_load_returns_the_task_class(name: str, cls: type[BiLSTM]) -> None:
    model = BiLSTM.load(name, device="cpu", threads=1)
    assert type(model) is cls and model.task == cls.SPEC.name
    assert type(cls.load(name, device="cpu", threads=1)) is cls


def test_methods_of_other_tasks_do_not_exist() -> None:
    pos = BiLSTM.load("pos-en", device="cpu", threads=1)
    assert not hasattr(pos, "classify") and not hasattr(pos, "forecast")
    assert hasattr(pos, "tag")
    demand = BiLSTM.load("elecdemand-h1", device="cpu", threads=1)
    assert not hasattr(demand, "tokens") and not hasattr(demand, "fill")


def test_loading_through_the_wrong_class_says_what_the_file_holds() -> None:
    with pytest.raises(MetadataError, match="is a tag model"):
        Classifier.load("pos-en", device="cpu", threads=1)


def test_predict_refuses_options_of_other_tasks() -> None:
    sentiment = BiLSTM.load("sentiment", device="cpu", threads=1)
    with pytest.raises(InputError, match="top_k applies to cloze models only"):
        sentiment.predict(["fine"], top_k=3)


def test_registry_covers_the_metadata_tasks() -> None:
    assert set(MODEL_CLASSES) == {"classify", "tag", "forecast", "cloze"}
    assert spec("tag").per_token and not spec("classify").per_token
    with pytest.raises(MetadataError, match="expected one of"):
        model_class("regress")


# The criterion (`grep "task ==\|task in ("`), plus its negations; comparing two task
# names for equality (a checkpoint resumed as another task) is a check, not a branch.
BRANCH = re.compile(r"\btask\s*(==|in \(|not in \()|\btask\s*!=\s*[\"']")


def test_nothing_outside_the_registries_branches_on_the_task_name() -> None:
    """The design rule: front ends ask the task's class or spec, never compare task names."""
    offenders = []
    for folder in ("runtime", "export", "models", "cli"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if BRANCH.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []
