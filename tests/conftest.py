"""Shared fixtures: tiny data, a tiny trained checkpoint and its export (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.data import make_sentiment_tsv


def pytest_configure(config: pytest.Config) -> None:
    # `--dist loadfile` hands out the files with the most tests first (xdist's
    # loadscopereorder), which leaves the slow files of few tests (Ray, Spark, torchrun,
    # Node, the tutorial) to the end, where one worker runs them while the other idles.
    # Hand files out in collection order instead, which the hook below makes slow-first.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with a `slow` test run first (longest job first packs two workers best); the
    order is otherwise unchanged, so a file's tests stay together and in order."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    make_sentiment_tsv(d / "train.tsv", 240, seed=1)
    make_sentiment_tsv(d / "dev.tsv", 60, seed=2)
    return d


@pytest.fixture(scope="session")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A tiny classifier trained for a few epochs, saved as a checkpoint."""
    pytest.importorskip("torch")
    from bilstm.core.datasets import read_classification
    from bilstm.core.tokenizer import TokenizerConfig
    from bilstm.models.classify import train_classifier
    from bilstm.models.config import TrainConfig

    out = tmp_path_factory.mktemp("ckpt") / "sentiment"
    ckpt = train_classifier(
        read_classification(data_dir / "train.tsv"),
        read_classification(data_dir / "dev.tsv"),
        out,
        model_cfg={
            "embedding_dim": 12,
            "hidden_size": 8,
            "num_layers": 1,
            "dropout": 0.0,
            "embedding_dropout": 0.0,
        },
        train_cfg=TrainConfig(epochs=12, batch_size=16, lr=0.02, patience=12, seed=3),
        tokenizer_cfg=TokenizerConfig(max_length=20),
        data_info={"train": "train.tsv", "dev": "dev.tsv"},
    )
    return out, ckpt


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """The tiny classifier exported to ONNX (parity verified by the exporter)."""
    from bilstm.export import export_checkpoint

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_checkpoint(trained[0], out)
    return out
