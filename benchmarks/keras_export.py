"""Keras 3's own ONNX export (torch backend) against `bilstm import keras` + `bilstm export`.

Trains small Keras models of the classic tutorial shape (Embedding(mask_zero=True) ->
Bidirectional(LSTM/GRU) -> Dense softmax) on synthetic ragged sentiment data (or --data), then
runs the same padded batches through Keras' `predict` (the reference), through ONNX Runtime
on Keras' `model.export(..., format="onnx")` (default signature, and a fixed-length
signature as in the maxlen-padding tutorials), and through ONNX Runtime on this project's
import + export. Reports the max abs difference from Keras per case, or the error.

    python -m benchmarks.keras_export
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _common as c

NAME = "keras_export"
LENGTHS = (1, 5, 20, 40)
"""Padded batch widths of the fixed cases (rows ragged within each)."""


def encode(texts: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """bilstm's tokenizer and vocabulary: tokens in TextVectorization's layout and id rows."""
    from bilstm.core.tokenizer import Tokenizer
    from bilstm.core.vocab import Vocabulary

    tok = Tokenizer()
    rows = [tok.tokenize(t) for t in texts]
    vocab = Vocabulary.build(rows)
    # TextVectorization's layout: "" (padding, row 0), "[UNK]" (row 1), then the words.
    return ["", "[UNK]", *vocab.tokens[2:]], [vocab.encode(r) for r in rows]


def pad(rows: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    width = width or max(len(r) for r in rows)
    out = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        out[i, : min(len(row), width)] = row[:width]
    return out


def build(keras: Any, kind: str, vocab: int, dim: int) -> Any:
    layers = keras.layers
    head = [keras.Input((None,), dtype="int64"), layers.Embedding(vocab, dim, mask_zero=True)]
    if kind == "bilstm":
        body = [layers.Bidirectional(layers.LSTM(dim))]
    else:  # two stacked GRU layers, directions summed
        body = [
            layers.Bidirectional(layers.GRU(dim, return_sequences=True), merge_mode="sum"),
            layers.Bidirectional(layers.GRU(dim), merge_mode="sum"),
        ]
    model = keras.Sequential([*head, *body, layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def cases(rows: list[list[int]], vocab: int, seed: int) -> dict[str, np.ndarray]:
    """Ragged padded batches: dev texts in batches of 32, and random ids at fixed widths."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for start in range(0, min(len(rows), 128), 32):
        batch = rows[start : start + 32]
        out[f"dev texts {start}-{start + len(batch) - 1} (width {max(map(len, batch))})"] = pad(
            batch
        )
    for width in LENGTHS:
        lengths = rng.integers(1, width + 1, size=8)
        lengths[0] = width
        ids = rng.integers(1, vocab, size=(8, width))
        ids[np.arange(width)[None, :] >= lengths[:, None]] = 0
        out[f"random width {width}"] = ids
    return out


def run_onnx(
    path: Path, feeds: dict[str, np.ndarray], output: str | None = None
) -> np.ndarray | str:
    """The first output (or `output`) of the model on `feeds`, or the error's first line."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    try:
        return np.asarray(session.run(None if output is None else [output], feeds)[0])
    except Exception as exc:  # noqa: BLE001 - the error is the measurement
        return "error: " + str(exc).splitlines()[0][:200]


def compare(want: np.ndarray, got: np.ndarray | str) -> dict[str, Any]:
    if isinstance(got, str):
        return {"error": got}
    return {
        "max_abs": float(np.abs(want - got).max()),
        "argmax_agree": float((want.argmax(-1) == got.argmax(-1)).mean()),
    }


def keras_export(model: Any, keras: Any, path: Path, width: int | None) -> dict[str, Any]:
    """`model.export(path, format="onnx")`; width None: Keras' default signature."""
    signature = None
    if width is not None:
        signature = [keras.InputSpec(shape=(None, width), dtype="int64")]
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.export(str(path), format="onnx", input_signature=signature)
    import onnx

    graph = onnx.load(str(path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    ops = sorted({n.op_type for n in graph.node} & {"LSTM", "GRU", "Loop", "Scan"})
    return {
        "input": graph.input[0].name,
        "input_shape": dims,
        "recurrent_ops": ops,
        "nodes": len(graph.node),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="label<TAB>text TSV to train on")
    p.add_argument("--examples", type=int, default=2000, help="synthetic training texts")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--dim", type=int, default=32, help="embedding and units per direction")
    args = p.parse_args(argv)
    if args.smoke:
        args.examples, args.epochs, args.dim = 96, 1, 8
    os.environ.setdefault("KERAS_BACKEND", "torch")
    machine = c.machine_info(args.wait_quiet)
    import keras
    import torch

    from bilstm.export import export_checkpoint
    from bilstm.models.keras_import import import_keras

    torch.set_num_threads(args.threads)
    keras.utils.set_random_seed(13)
    work = Path(tempfile.mkdtemp(prefix="bilstm-bench-"))
    data = args.data or c.make_sentiment_tsv(work / "train.tsv", args.examples, seed=1)
    dev = c.make_sentiment_tsv(work / "dev.tsv", 128, seed=2)
    pairs = c.read_tsv(data)
    names = sorted({label for label, _ in pairs})
    tokens, rows = encode([t for _, t in pairs] + [t for _, t in c.read_tsv(dev)])
    train_rows, dev_rows = rows[: len(pairs)], rows[len(pairs) :]
    vocab_file = c.write_lines(tokens, work / "vocab.txt")
    labels_file = c.write_lines(names, work / "labels.txt")
    texts_file = c.write_lines([t for _, t in c.read_tsv(dev)][:64], work / "texts.txt")
    y = np.array([names.index(label) for label, _ in pairs])
    width = max(len(r) for r in train_rows)  # the tutorials' maxlen
    kinds = ("bilstm",) if args.smoke else ("bilstm", "bigru-stacked-sum")
    results: dict[str, Any] = {
        "keras_version": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "train_examples": len(pairs),
        "epochs": args.epochs,
        "dim": args.dim,
        "maxlen": width,
        "models": {},
    }
    for kind in kinds:
        model = build(keras, kind, len(tokens), args.dim)
        model.fit(pad(train_rows, width), y, epochs=args.epochs, batch_size=64, verbose=0)
        keras_file = work / f"{kind}.keras"
        model.save(keras_file)
        ckpt = work / f"{kind}-ckpt"
        import_keras(keras_file, ckpt, vocab=vocab_file, labels=labels_file, examples=texts_file)
        ours = work / f"{kind}-bilstm.onnx"
        export_checkpoint(ckpt, ours)
        exports = {
            "keras default signature": (work / f"{kind}-keras.onnx", None),
            f"keras fixed width {width}": (work / f"{kind}-keras-{width}.onnx", width),
        }
        info = {name: keras_export(model, keras, path, w) for name, (path, w) in exports.items()}
        table: dict[str, dict[str, Any]] = {}
        for case, ids in cases(dev_rows, len(tokens), seed=3).items():
            want = np.asarray(model.predict(ids, verbose=0))
            row: dict[str, Any] = {"shape": list(ids.shape)}
            for name, (path, _) in exports.items():
                row[name] = compare(want, run_onnx(path, {info[name]["input"]: ids}))
            lengths = (ids != 0).sum(1).astype(np.int64)
            row["bilstm import + export"] = compare(
                want, run_onnx(ours, {"input_ids": ids, "lengths": lengths}, "probabilities")
            )
            # The fixed-width export as the tutorials use it: every batch padded to maxlen,
            # longer texts cut to it.
            name = f"keras fixed width {width}"
            padded = pad([list(r[r != 0]) for r in ids], width)
            row[f"{name}, padded/cut to {width}"] = compare(
                want, run_onnx(exports[name][0], {info[name]["input"]: padded})
            )
            table[case] = row
        results["models"][kind] = {"keras_exports": info, "cases": table}
        print(f"{kind}:", file=sys.stderr)
        for case, row in table.items():
            cells = "; ".join(
                f"{k}: {v.get('max_abs', v.get('error', ''))!s:.60}"
                for k, v in row.items()
                if k != "shape"
            )
            print(f"  {case}: {cells}", file=sys.stderr)
    c.save(NAME, args, argv, results, machine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
