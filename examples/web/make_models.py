"""Build the web page's standalone models (raw text in) from the built-in models.

    python examples/web/make_models.py                  # -> examples/web/models/*.onnx
    python examples/web/make_models.py --out DIR sentiment-int8   # any built-in text model

`bilstm export CHECKPOINT --with-tokenizer` needs the training checkpoint; the built-in models
ship without theirs. This script wraps a built-in model's id graph in the same in-graph
preprocessing (`bilstm.export.standalone.build_standalone`, fed the tokenizer, vocabulary and
labels from the model's own metadata) and then proves the result: on the example files and the
exporter's probe texts, every text's tokens, labels and tags must equal the Python runtime's and
every probability must be within 1e-5 of it (int8 models are compared one text at a time,
where their answers do not depend on the rest of the batch). Nothing is written on a mismatch.

Needs the train extra (onnx). The built-in models are opset 17; `StringConcat` needs opset 20,
so the id graph is first moved to opset 20 with onnx's version converter (the LSTM operator is
the same in both; the ReduceMax node gets its opset-18 form).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx  # noqa: TID251 (an export tool, not the runtime)
import onnxruntime as ort
from onnx import version_converter  # noqa: TID251

from bilstm.core.atomic import atomic_path
from bilstm.core.errors import BiLSTMError, ExportError, ParityError
from bilstm.export.standalone import (  # noqa: TID251
    PROBE_TEXTS,
    STANDALONE_OPSET,
    build_standalone,
    describe,
)
from bilstm.runtime import BiLSTM
from bilstm.runtime import metadata as md
from bilstm.runtime.builtin import resolve_model

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent
DEFAULT_MODELS = ("sentiment", "pos-en")  # what the page loads
TOLERANCE = 1e-5


@dataclass
class _Vocabulary:
    tokens: list[str]


@dataclass
class _FromMetadata:
    """What `build_standalone` reads from a checkpoint, taken from a model's metadata."""

    task: str
    tokenizer: object
    vocabulary: _Vocabulary
    labels: list[str]
    task_config: dict[str, object]


def _check_texts() -> list[str]:
    texts = [*PROBE_TEXTS]
    for name in ("reviews.txt", "sentences.txt"):
        path = EXAMPLES / name
        if path.exists():
            texts += path.read_text(encoding="utf-8").splitlines()
    return texts


def wrap(name: str) -> tuple[onnx.ModelProto, md.ModelMetadata]:
    """The standalone model around built-in model `name`'s id graph, and its metadata."""
    path = resolve_model(name)
    core = onnx.load(str(path))
    props = {p.key: p.value for p in core.metadata_props}
    meta = md.ModelMetadata.from_json(props[md.METADATA_KEY])
    if meta.standalone:
        raise ExportError(f"{name}: is already a standalone model")
    core = version_converter.convert_version(core, STANDALONE_OPSET)
    source = _FromMetadata(
        task=meta.task,
        tokenizer=meta.tokenizer,
        vocabulary=_Vocabulary(list(meta.vocabulary)),
        labels=list(meta.labels),
        task_config=dict(meta.task_config),
    )
    model = build_standalone(source, core)  # type: ignore[arg-type]
    meta.standalone = True
    meta.export = {
        **meta.export,
        "standalone": {**describe(source, model), "wrapped_from": f"built-in {name}"},  # type: ignore[arg-type]
        "opset": STANDALONE_OPSET,
    }
    onnx.helper.set_model_props(model, {md.METADATA_KEY: meta.to_json()})
    return model, meta


def verify(name: str, model: onnx.ModelProto, texts: list[str]) -> dict[str, float]:
    """Compare the standalone model with the Python runtime on `texts`; ParityError if not equal."""
    reference = BiLSTM.load(name, device="cpu", threads=1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), opts, ["CPUExecutionProvider"])
    # int8 activations are quantised per batch: compare each text alone on both sides.
    worst = 0.0
    for line, text in enumerate(texts, 1):
        got = session.run(None, {md.TEXT: np.array([text], dtype=object)})
        out = dict(zip([o.name for o in session.get_outputs()], got, strict=True))
        want = reference.predict([text], batch_size=1)[0]
        if reference.task == "classify":
            if want.label is None:
                same = int(out["num_tokens"][0]) == 0
            else:
                probs = [want.probabilities[label] for label in out["classes"]]
                diff = float(np.max(np.abs(out[md.PROBABILITIES][0] - probs)))
                worst = max(worst, diff)
                same = str(out["label"][0]) == want.label and diff <= TOLERANCE
        else:
            n = int(out["num_tokens"][0])
            tokens = [str(t) for t in out["tokens"][0][:n]]
            tags = [str(t) for t in out["tags"][0][:n]]
            conf = out["confidences"][0][:n]
            diff = float(np.max(np.abs(conf - want.confidences))) if n else 0.0
            worst = max(worst, diff)
            same = tokens == list(want.tokens)[:n] and tags == list(want.tags) and diff <= TOLERANCE
        if not same:
            raise ParityError(
                f"{name}: the standalone model differs from the runtime on text {line}: "
                f"{text[:80]!r}"
            )
    return {"texts": float(len(texts)), "max_abs_diff": worst}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "models", nargs="*", default=list(DEFAULT_MODELS), help="built-in model names"
    )
    parser.add_argument("--out", type=Path, default=HERE / "models", help="output folder")
    args = parser.parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        texts = _check_texts()
        for name in args.models:
            model, _ = wrap(name)
            report = verify(name, model, texts)
            target = args.out / f"{name}-standalone.onnx"
            with atomic_path(target) as tmp:
                onnx.save(model, str(tmp))
            print(
                f"{target.name}: {target.stat().st_size:,} bytes, {int(report['texts'])} texts "
                f"identical to the runtime (max |diff| {report['max_abs_diff']:.2e})",
                file=sys.stderr,
            )
            print(target)
    except BiLSTMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
