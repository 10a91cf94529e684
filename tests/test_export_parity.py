"""Exported ONNX models compute what the PyTorch models compute, on ragged batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from helpers.checkpoints import VOCAB_SIZE, random_checkpoint  # noqa: E402

from bilstm.core.errors import ExportError  # noqa: E402
from bilstm.export import export_checkpoint  # noqa: E402
from bilstm.export.tasks import EXPORT_TASKS, TextTask, export_task  # noqa: E402
from bilstm.export.verify import ragged_batch, random_feeds, reference_outputs  # noqa: E402
from bilstm.runtime import BiLSTM  # noqa: E402
from bilstm.runtime.tasks import MODEL_CLASSES  # noqa: E402

LOGIT_TOL = 1e-5
VOCAB = VOCAB_SIZE

CONFIGS = [
    {"num_layers": 1, "cell": "lstm", "merge": "concat", "pooling": "max"},
    {"num_layers": 2, "cell": "lstm", "merge": "concat", "pooling": "mean"},
    {"num_layers": 2, "cell": "lstm", "merge": "sum", "pooling": "last"},
    {"num_layers": 2, "cell": "lstm", "merge": "mul", "pooling": "attention"},
    {"num_layers": 2, "cell": "gru", "merge": "ave", "pooling": "max"},
    {"num_layers": 1, "cell": "gru", "merge": "concat", "pooling": "last"},
]


TASK_CONFIGS = [
    {
        "task": "tag",
        "num_layers": 2,
        "char_vocab_size": 10,
        "char_dim": 4,
        "char_filters": 5,
        "max_word_length": 6,
    },
    {"task": "tag", "num_layers": 1, "cell": "gru", "merge": "sum"},
    {"task": "cloze", "num_layers": 2, "num_labels": VOCAB},
    {"task": "forecast", "num_layers": 2, "num_features": 3, "vocab_size": 0},
    {"task": "classify", "num_layers": 2, "proj_size": 5, "pooling": "last"},
    {"task": "tag", "num_layers": 1, "proj_size": 3, "merge": "ave"},
]


def _name(options: dict[str, object]) -> str:
    keys = ("task", "num_layers", "cell", "merge", "pooling", "proj_size")
    return "-".join(str(options[k]) for k in keys if k in options)


@pytest.mark.parametrize("options", CONFIGS + TASK_CONFIGS, ids=_name)
def test_parity_on_ragged_batches(options: dict[str, object], tmp_path: Path) -> None:
    """Independent of the exporter's own check: new shapes and seeds, via the runtime API."""
    ckpt = random_checkpoint(seed=7, **options)
    path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, path)
    model = BiLSTM.load(path, device="cpu", threads=1)
    for batch, time, seed in [(7, 13, 11), (3, 40, 12), (4, 3, 13)]:
        feeds = random_feeds(ckpt, batch, time, seed)
        assert {1, 2, time} <= set(feeds["lengths"].tolist())
        ref = reference_outputs(ckpt, feeds)
        got = model.run(feeds)
        for name, value in ref.items():
            out = got[name]
            assert out.shape == value.shape
            if ckpt.task == "tag":  # padded positions are never read
                mask = np.arange(time)[None, :] < feeds["lengths"][:, None]
                value, out = value[mask], out[mask]
            assert np.abs(out - value).max() <= LOGIT_TOL, name


def test_graph_has_fused_bidirectional_lstm_with_sequence_lens(tmp_path: Path) -> None:
    ckpt = random_checkpoint(seed=1, num_layers=2)
    path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, path, verify=False)
    graph = onnx.load(str(path)).graph
    lstms = [n for n in graph.node if n.op_type == "LSTM"]
    assert len(lstms) == 2
    assert all(n.input[4] for n in lstms)  # sequence_lens wired
    assert not [n for n in graph.node if n.op_type in ("Loop", "Scan")]
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "time"]
    assert graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_padding_never_leaks(tmp_path: Path) -> None:
    """Garbage at padded positions must not change any output (reverse direction included)."""
    ckpt = random_checkpoint(seed=3, num_layers=2, pooling="mean")
    path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, path)
    model = BiLSTM.load(path, device="cpu", threads=1)
    ids, lens = ragged_batch(VOCAB, 6, 9, 5)
    noisy = ids.copy()
    pad = np.arange(9)[None, :] >= lens[:, None]
    noisy[pad] = np.random.default_rng(0).integers(2, VOCAB, size=int(pad.sum()))
    a = model.predict_arrays(ids, lens)["logits"]
    b = model.predict_arrays(noisy, lens)["logits"]
    np.testing.assert_array_equal(a, b)
    # Each row alone (no padding at all) gives the same result as inside the ragged batch.
    for row in range(6):
        n = int(lens[row])
        alone = model.predict_arrays(ids[row : row + 1, :n], lens[row : row + 1])["logits"]
        assert np.abs(alone - a[row]).max() <= LOGIT_TOL


def test_parity_breach_raises_and_leaves_no_file(tmp_path: Path) -> None:
    from bilstm.core.errors import ParityError

    ckpt = random_checkpoint(seed=2)
    path = tmp_path / "m.onnx"
    with pytest.raises(ParityError, match="max abs"):
        export_checkpoint(ckpt, path, tolerance=-1.0)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options",
    [
        {"num_layers": 2},
        {"cell": "gru", "pooling": "mean"},
        {
            "task": "tag",
            "char_vocab_size": 10,
            "char_dim": 4,
            "char_filters": 5,
            "max_word_length": 6,
        },
    ],
    ids=_name,
)
def test_onnx_reference_evaluator_is_a_second_oracle(
    options: dict[str, object], tmp_path: Path
) -> None:
    """ONNX's own reference implementation agrees with ONNX Runtime's ragged batch.

    `onnx.reference` ignores `sequence_lens` (seen with onnx 1.23), so it gets each row alone,
    unpadded; ONNX Runtime gets the ragged batch. Both must match PyTorch.
    """
    from onnx.reference import ReferenceEvaluator

    ckpt = random_checkpoint(seed=5, **options)
    path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, path)
    evaluator = ReferenceEvaluator(str(path))
    feeds = random_feeds(ckpt, 4, 9, 21)
    batch = BiLSTM.load(path, device="cpu", threads=1).run(feeds)["logits"]
    torch_out = reference_outputs(ckpt, feeds)["logits"]
    for row, n in enumerate(feeds["lengths"].tolist()):
        alone = {
            k: (v[row : row + 1, :n] if v.ndim > 1 else v[row : row + 1]) for k, v in feeds.items()
        }
        alone["lengths"] = np.array([n], np.int64)
        ref = evaluator.run(["logits"], alone)[0][0]
        got = batch[row, :n] if ckpt.task == "tag" else batch[row]
        want = torch_out[row, :n] if ckpt.task == "tag" else torch_out[row]
        assert np.abs(ref - got).max() <= LOGIT_TOL
        assert np.abs(ref - want).max() <= LOGIT_TOL


def test_random_configurations_property(tmp_path: Path) -> None:
    """A fixed-seed sweep over option combinations: every one exports with parity."""
    import random

    rng = random.Random(2026)
    for i in range(6):
        cell = rng.choice(["lstm", "gru"])
        options: dict[str, object] = {
            "task": rng.choice(["classify", "tag", "cloze"]),
            "num_layers": rng.randint(1, 3),
            "cell": cell,
            "merge": rng.choice(["concat", "sum", "mul", "ave"]),
            "pooling": rng.choice(["last", "mean", "max", "attention"]),
            "hidden_size": rng.choice([4, 8, 16]),
            "proj_size": rng.choice([0, 0, 3]) if cell == "lstm" else 0,
        }
        if options["task"] == "tag" and rng.random() < 0.5:
            options |= {
                "char_vocab_size": 10,
                "char_dim": 3,
                "char_filters": 4,
                "max_word_length": 5,
            }
        if options["task"] == "cloze":
            options["num_labels"] = VOCAB
        ckpt = random_checkpoint(seed=i, **options)
        report = export_checkpoint(ckpt, tmp_path / f"m{i}.onnx")  # raises ParityError on breach
        assert report.parity is not None and report.parity.max_abs <= LOGIT_TOL, options


def test_every_runtime_task_has_its_export_hooks() -> None:
    """One hooks object per task name the runtime knows; text tasks (and only they) get the
    standalone hooks, as their `TaskSpec` says."""
    assert set(EXPORT_TASKS) == set(MODEL_CLASSES)
    for name, hooks in EXPORT_TASKS.items():
        assert hooks.name == name and export_task(name) is hooks
        assert isinstance(hooks, TextTask) == hooks.spec.text_input, name
    with pytest.raises(ExportError, match="expected one of"):
        export_task("regress")
