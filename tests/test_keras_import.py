"""`bilstm import keras`: tiny Keras 3 models saved as .keras, imported, checked against Keras.

Each test builds its models here (random weights in [-0.8, 0.8], larger than Keras' init so
that a wrong gate order or bias would show), saves them, imports them, and compares the
converted model with Keras' own `predict` on ragged, zero-padded (masked) batches unlike the
import's own parity cases. One checkpoint is exported and ONNX Runtime is compared too.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="the import writes a PyTorch checkpoint (train extra)")
os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras' first import, as the module does
keras = pytest.importorskip("keras", reason="keras 3 is not installed (the keras extra)")

from bilstm.core.errors import InputError, ParityError  # noqa: E402
from bilstm.models.keras_import import (  # noqa: E402
    KerasImportError,
    build_checkpoint,
    check_keras_parity,
    import_keras,
    load_keras_model,
    plan_from_keras,
    read_vocab,
)
from bilstm.runtime import metadata as md  # noqa: E402

layers = keras.layers
ROWS = 14
WORDS = [f"w{i}" for i in range(ROWS - 2)]
TOL = 1e-5


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TextVectorization's layout: "" (padding), "[UNK]", then the words."""
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(["", "[UNK]", *WORDS]) + "\n", encoding="utf-8")
    return path


def _randomize(model: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.uniform(-0.8, 0.8, tuple(weight.shape)).astype("float32"))


def _sequential(body: list[Any], seed: int = 0, rows: int = ROWS) -> Any:
    model = keras.Sequential(
        [keras.Input((None,), dtype="int64"), layers.Embedding(rows, 6, mask_zero=True), *body]
    )
    _randomize(model, seed)
    return model


def _save(model: Any, folder: Path, name: str = "model") -> Path:
    path = folder / f"{name}.keras"
    model.save(path)
    return path


def _ragged(rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Keras row ids, zero-padded after each row's length (not the import's own cases)."""
    rng = np.random.default_rng(42)
    lengths = np.array([9, 1, 5, 2, 9, 3, 7])
    ids = rng.integers(1, rows, size=(len(lengths), 9))
    ids[np.arange(9)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def _ours(ckpt: Any, ids: np.ndarray, lengths: np.ndarray, activation: str) -> np.ndarray:
    import torch

    with torch.inference_mode():
        logits = ckpt.model(torch.from_numpy(ids), torch.from_numpy(lengths))
    return (logits if activation == "linear" else torch.softmax(logits, -1)).numpy()


def _keras_as_ours(keras_out: np.ndarray, activation: str) -> np.ndarray:
    return np.concatenate([1 - keras_out, keras_out], -1) if activation == "sigmoid" else keras_out


def _close(want: np.ndarray, have: np.ndarray, lengths: np.ndarray | None = None) -> float:
    if lengths is not None:  # per-token outputs: padded positions are never read
        real = np.arange(want.shape[1])[None, :] < lengths[:, None]
        want, have = want[real], have[real]
    diff = np.abs(want.astype(np.float64) - have)
    assert np.all(diff <= TOL * (1 + np.abs(want))), diff.max()
    return float(diff.max())


SHAPES = {
    "concat-lstm-last": (
        lambda: [layers.Bidirectional(layers.LSTM(5)), layers.Dense(3, activation="softmax")],
        "classify",
        "softmax",
    ),
    "sum-gru-stacked-sigmoid": (
        lambda: [
            layers.SpatialDropout1D(0.2),
            layers.Bidirectional(layers.GRU(4, return_sequences=True), merge_mode="sum"),
            layers.Dropout(0.3),
            layers.Bidirectional(layers.GRU(4, recurrent_dropout=0.2), merge_mode="sum"),
            layers.Dense(1, activation="sigmoid"),
        ],
        "classify",
        "sigmoid",
    ),
    "ave-lstm-tagger": (
        lambda: [
            layers.Bidirectional(layers.LSTM(4, return_sequences=True), merge_mode="ave"),
            layers.Bidirectional(layers.LSTM(4, return_sequences=True), merge_mode="ave"),
            layers.TimeDistributed(layers.Dense(5, activation="softmax")),
        ],
        "tag",
        "softmax",
    ),
    "mul-lstm-maxpool-linear": (
        lambda: [
            layers.Bidirectional(layers.LSTM(4, return_sequences=True), merge_mode="mul"),
            layers.GlobalMaxPooling1D(),
            layers.Dense(3),
        ],
        "classify",
        "linear",
    ),
    "concat-gru-meanpool": (
        lambda: [
            layers.Bidirectional(layers.GRU(3, return_sequences=True, use_bias=False)),
            layers.GlobalAveragePooling1D(),
            layers.Dense(2),
            layers.Activation("softmax"),
        ],
        "classify",
        "softmax",
    ),
    "gru-tagger-dense": (
        lambda: [
            layers.Bidirectional(layers.GRU(4, return_sequences=True)),
            layers.Dense(3, activation="softmax"),
        ],
        "tag",
        "softmax",
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_import_matches_keras_predict_on_ragged_masked_batches(
    shape: str, vocab_file: Path, tmp_path: Path
) -> None:
    body, task, activation = SHAPES[shape]
    model = _sequential(body(), seed=len(shape))
    out = tmp_path / "ckpt"
    report = import_keras(_save(model, tmp_path), out, vocab=vocab_file)
    assert report.task == task
    assert report.parity.max_abs <= TOL and report.parity.cases
    assert (out / "config.json").is_file() and (out / "weights.safetensors").is_file()

    from bilstm.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(out)  # the saved checkpoint, as bilstm export reads it
    ids, lengths = _ragged()
    want = _keras_as_ours(np.asarray(model.predict(ids, verbose=0)), activation)
    have = _ours(ckpt, ids, lengths, activation)
    per_token = lengths if task == "tag" else None
    if "maxpool" in shape:
        # Keras' max pooling ignores the mask (padded zeros join the max): its answer for a
        # text is the one on the text alone, which is what the import reproduces.
        want = np.concatenate(
            [
                np.asarray(model.predict(ids[i : i + 1, :n], verbose=0))
                for i, n in enumerate(lengths)
            ]
        )
    _close(want, have, per_token)
    # Vocabulary ids: the file's rows already have [UNK] at row 1, so ids are the rows.
    assert ckpt.vocabulary.tokens[2:] == WORDS
    assert ckpt.labels == [str(i) for i in range(ckpt.model_config.num_labels)]


def test_functional_model_and_export_agree_with_keras(vocab_file: Path, tmp_path: Path) -> None:
    """A Functional model, exported: ONNX Runtime agrees with Keras on ragged batches."""
    import onnxruntime as ort

    from bilstm.export import export_checkpoint
    from bilstm.runtime import BiLSTM

    inputs = keras.Input((None,), dtype="int64")
    x = layers.Embedding(ROWS, 6, mask_zero=True)(inputs)
    x = layers.Bidirectional(layers.LSTM(5, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(5))(x)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax")(x))
    _randomize(model, 7)
    labels = tmp_path / "labels.txt"
    labels.write_text("neg\nneu\npos\n", encoding="utf-8")
    texts = tmp_path / "texts.txt"
    texts.write_text("w1 w2 w3\nw4\n\nw5 unknownword w6 w7 w8\n", encoding="utf-8")
    out = tmp_path / "ckpt"
    report = import_keras(
        _save(model, tmp_path), out, vocab=vocab_file, labels=labels, examples=texts
    )
    assert report.parity.dev_examples == 3  # the empty line has no token

    onnx_path = tmp_path / "model.onnx"
    export_checkpoint(out, onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ids, lengths = _ragged()
    (probs,) = session.run(
        [md.PROBABILITIES], {md.INPUT_IDS: ids, md.LENGTHS: lengths.astype(np.int64)}
    )
    _close(np.asarray(model.predict(ids, verbose=0)), probs)

    # The runtime from text: unknown words take Keras' [UNK] row (row 1).
    loaded = BiLSTM.load(onnx_path)
    got = loaded.predict(["w5 unknownword w6"])[0]
    want = np.asarray(model.predict(np.array([[7, 1, 8]]), verbose=0))[0]
    assert got.label == ["neg", "neu", "pos"][int(want.argmax())]
    assert abs(got.probabilities["pos"] - float(want[2])) <= TOL


def test_oov_token_elsewhere_is_moved_to_unk(tmp_path: Path) -> None:
    """A Keras Tokenizer-style vocabulary: OOV token on another line; ids are remapped."""
    model = _sequential(
        [layers.Bidirectional(layers.GRU(3)), layers.Dense(2, activation="softmax")], seed=3
    )
    vocab = tmp_path / "vocab.txt"
    words = ["the", "cat", "<OOV>", "sat", "on", "a", "mat", "dog", "ran", "far", "away", "now"]
    vocab.write_text("\n".join(["<pad-line>", *words]) + "\n", encoding="utf-8")
    report = import_keras(_save(model, tmp_path), tmp_path / "ckpt", vocab=vocab, oov_token="<OOV>")
    from bilstm.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(report.out)
    assert ckpt.vocabulary.tokens[:4] == ["<pad>", "<unk>", "the", "cat"]
    assert ckpt.vocabulary.id_of("sat") == 4
    text = ["the", "zebra", "sat", "on", "mat"]
    ours = np.array([ckpt.vocabulary.encode(text)])
    rows = np.array([[1, 3, 4, 5, 7]])  # Keras rows: the unknown word takes <OOV>'s row 3
    want = np.asarray(model.predict(rows, verbose=0))
    _close(want, _ours(ckpt, ours, np.array([5]), "softmax"))


def test_parity_check_fails_on_a_wrong_conversion(vocab_file: Path, tmp_path: Path) -> None:
    """The import's own check catches a wrong gate order (here: GRU's z and r swapped)."""
    import torch

    model = _sequential(
        [layers.Bidirectional(layers.GRU(4)), layers.Dense(3, activation="softmax")], seed=5
    )
    keras_model, config = load_keras_model(_save(model, tmp_path))
    plan = plan_from_keras(keras_model, config)
    tokens, order = read_vocab(vocab_file, ROWS, "[UNK]")
    from bilstm.core.tokenizer import TokenizerConfig

    ckpt = build_checkpoint(plan, tokens, order, ["a", "b", "c"], TokenizerConfig())
    assert check_keras_parity(keras_model, ckpt, plan, order).ok
    rnn = ckpt.model.encoder.layers[0]
    with torch.no_grad():
        w = rnn.weight_hh_l0
        w.copy_(torch.cat([w[4:8], w[0:4], w[8:]]))
    with pytest.raises(ParityError, match="differs from Keras beyond"):
        check_keras_parity(keras_model, ckpt, plan, order)


REFUSED = {
    "no-mask": (
        lambda: [
            keras.Input((None,), dtype="int64"),
            layers.Embedding(ROWS, 4),
            layers.Bidirectional(layers.LSTM(3)),
            layers.Dense(2),
        ],
        "'embedding.*mask_zero=False",
    ),
    "unidirectional-backwards": (
        lambda: [
            keras.Input((None,), dtype="int64"),
            layers.Embedding(ROWS, 4, mask_zero=True),
            layers.LSTM(3, go_backwards=True, name="back"),
            layers.Dense(2),
        ],
        "'back'.*single-direction.*go_backwards",
    ),
    "stateful": (
        lambda: [
            keras.Input(batch_shape=(2, None), dtype="int64"),
            layers.Embedding(ROWS, 4, mask_zero=True),
            layers.Bidirectional(layers.LSTM(3, stateful=True), name="bi"),
            layers.Dense(2),
        ],
        "'bi'.*stateful=True",
    ),
    "gru-reset-before": (
        lambda: [
            keras.Input((None,), dtype="int64"),
            layers.Embedding(ROWS, 4, mask_zero=True),
            layers.Bidirectional(layers.GRU(3, reset_after=False), name="bi"),
            layers.Dense(2),
        ],
        "'bi'.*reset_after=False",
    ),
    "relu-lstm": (
        lambda: [
            keras.Input((None,), dtype="int64"),
            layers.Embedding(ROWS, 4, mask_zero=True),
            layers.Bidirectional(layers.LSTM(3, activation="relu"), name="bi"),
            layers.Dense(2),
        ],
        "'bi'.*activation 'relu'",
    ),
    "hidden-dense": (
        lambda: [
            keras.Input((None,), dtype="int64"),
            layers.Embedding(ROWS, 4, mask_zero=True),
            layers.Bidirectional(layers.LSTM(3)),
            layers.Dense(4, activation="relu"),
            layers.Dense(2, name="head"),
        ],
        "'dense.*activation 'relu'",
    ),
    "sizes-differ": (
        lambda: [
            keras.Input((None,), dtype="int64"),
            layers.Embedding(ROWS, 4, mask_zero=True),
            layers.Bidirectional(layers.LSTM(3, return_sequences=True)),
            layers.Bidirectional(layers.LSTM(5), name="second"),
            layers.Dense(2),
        ],
        "'second'.*one cell type, size and merge mode",
    ),
    "multi-label": (
        lambda: [
            keras.Input((None,), dtype="int64"),
            layers.Embedding(ROWS, 4, mask_zero=True),
            layers.Bidirectional(layers.LSTM(3)),
            layers.Dense(3, activation="sigmoid", name="out"),
        ],
        "'out'.*multi-label",
    ),
    "no-merge": (
        lambda: [
            keras.Input((None,), dtype="int64"),
            layers.Embedding(ROWS, 4, mask_zero=True),
            layers.Bidirectional(layers.LSTM(3), merge_mode=None, name="bi"),
        ],
        "'bi'.*merge_mode None",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unmapped_models_are_refused_with_the_layer_named(
    case: str, vocab_file: Path, tmp_path: Path
) -> None:
    build, message = REFUSED[case]
    if case == "no-merge":  # a list output: only a Functional model can end there
        inputs = keras.Input((None,), dtype="int64")
        x = layers.Embedding(ROWS, 4, mask_zero=True)(inputs)
        model = keras.Model(
            inputs, layers.Bidirectional(layers.LSTM(3), merge_mode=None, name="bi")(x)
        )
    else:
        model = keras.Sequential(build())
    out = tmp_path / "ckpt"
    with pytest.raises(KerasImportError, match=message):
        import_keras(_save(model, tmp_path), out, vocab=vocab_file)
    assert not out.exists()


def test_custom_layers_and_text_vectorization_are_refused_before_loading(
    vocab_file: Path, tmp_path: Path
) -> None:
    @keras.saving.register_keras_serializable(package="mine")
    class Doubler(layers.Layer):
        def call(self, x: Any) -> Any:
            return x * 2

    model = _sequential(
        [Doubler(name="twice"), layers.Bidirectional(layers.LSTM(3)), layers.Dense(2)]
    )
    with pytest.raises(KerasImportError, match="'twice' uses a custom Doubler"):
        import_keras(_save(model, tmp_path), tmp_path / "a", vocab=vocab_file)
    # TextVectorization cannot be built without TensorFlow: a hand-written archive stands in.
    fake = tmp_path / "tv.keras"
    layer = {"module": "keras.layers", "class_name": "TextVectorization", "config": {"name": "tv"}}
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [layer]}}
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    with pytest.raises(
        KerasImportError, match=r"'tv' .TextVectorization. needs TensorFlow.*--vocab"
    ):
        import_keras(fake, tmp_path / "b", vocab=vocab_file)
    not_keras = tmp_path / "x.keras"
    not_keras.write_text("hello")
    with pytest.raises(KerasImportError, match=r"not a Keras 3 `\.keras` file"):
        import_keras(not_keras, tmp_path / "c", vocab=vocab_file)


def test_branching_functional_model_is_refused(vocab_file: Path, tmp_path: Path) -> None:
    inputs = keras.Input((None,), dtype="int64")
    x = layers.Embedding(ROWS, 4, mask_zero=True)(inputs)
    y = layers.Bidirectional(layers.LSTM(3), name="bi")(x)
    z = layers.Concatenate(name="join")([y, layers.GlobalAveragePooling1D(name="avg")(x)])
    model = keras.Model(inputs, layers.Dense(2)(z))
    with pytest.raises(KerasImportError, match=r"layer '(avg|join)'.*straight chain"):
        import_keras(_save(model, tmp_path), tmp_path / "ckpt", vocab=vocab_file)


def test_bad_vocabulary_labels_and_out_are_refused(vocab_file: Path, tmp_path: Path) -> None:
    model = _sequential([layers.Bidirectional(layers.LSTM(3)), layers.Dense(2)])
    path = _save(model, tmp_path)
    out = tmp_path / "ckpt"
    bad = tmp_path / "bad.txt"
    cases = {
        "\n[UNK]\na\nb\na\n": r"bad.txt:5: 'a' repeats line 3",
        "\nx\ny\n": "no out-of-vocabulary token '\\[UNK\\]'.*--oov-token",
        "\n[UNK]\n"
        + "w\n".join(str(i) for i in range(20))
        + "\n": "22 tokens but the Embedding has 14 rows",
        "\n[UNK]\n\nb\n": r"bad.txt:3: empty token",
    }
    for text, message in cases.items():
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(KerasImportError, match=message):
            import_keras(path, out, vocab=bad)
    with pytest.raises(KerasImportError, match="give the vocabulary with --vocab"):
        import_keras(path, out, vocab=None)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(KerasImportError, match="3 labels but the model has 2 outputs"):
        import_keras(path, out, vocab=vocab_file, labels=labels)
    assert not out.exists()
    # OUT: never an input, never a file, an existing checkpoint only with force.
    with pytest.raises(InputError, match="is the input file"):
        import_keras(path, path, vocab=vocab_file)
    import_keras(path, out, vocab=vocab_file)
    with pytest.raises(InputError, match="already holds a bilstm checkpoint; pass --force"):
        import_keras(path, out, vocab=vocab_file)
    import_keras(path, out, vocab=vocab_file, force=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="already holds other files"):
        import_keras(path, other, vocab=vocab_file)


def test_cli_imports_and_reports(vocab_file: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bilstm.models.import_cli import app

    model = _sequential(
        [layers.Bidirectional(layers.LSTM(3)), layers.Dense(2, activation="softmax")]
    )
    path = _save(model, tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        app, ["keras", str(path), str(tmp_path / "ckpt"), "--vocab", str(vocab_file)]
    )
    assert result.exit_code == 0, result.output
    assert "keras parity random batch=6 time=13" in result.stderr
    assert "wrote " in result.stderr and "bilstm export" in result.stderr
    assert result.stdout == ""
    again = runner.invoke(
        app, ["keras", str(path), str(tmp_path / "ckpt"), "--vocab", str(vocab_file)]
    )
    assert again.exit_code == 2
    assert again.stderr.startswith("error: ") and "--force" in again.stderr
