"""`BiLSTM`: load a bilstm `.onnx` once, predict many times (thread-safe)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bilstm.runtime import metadata as md
from bilstm.runtime.batching import length_batches, pad_batch
from bilstm.runtime.builtin import resolve_model
from bilstm.runtime.errors import InputError, MetadataError, ModelLoadError
from bilstm.runtime.metadata import ModelMetadata
from bilstm.runtime.session import Device, Optimization, create_session
from bilstm.runtime.tokenizer import Tokenizer
from bilstm.runtime.vocab import Vocabulary

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class ClassPrediction:
    """The result for one text of a classification model."""

    label: str | None
    """Most probable label; None when the text has no tokens (empty or whitespace only)."""
    probabilities: dict[str, float] | None
    """Probability of every label, in the model's label order; None for an empty text."""
    num_tokens: int
    """Tokens the model saw (after truncation to the model's max length)."""


def read_metadata(session: ort.InferenceSession, path: Path) -> ModelMetadata:
    """The bilstm metadata document of an open session, validated."""
    props = session.get_modelmeta().custom_metadata_map
    if md.METADATA_KEY not in props:
        raise MetadataError(
            f"{path}: has no bilstm metadata (key '{md.METADATA_KEY}'); it was not exported by "
            "`bilstm export`"
        )
    try:
        return ModelMetadata.from_json(props[md.METADATA_KEY])
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from exc


def _check_io(session: ort.InferenceSession, meta: ModelMetadata, path: Path) -> None:
    """Refuse a model whose graph does not match what its metadata promises."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    for name in (md.INPUT_IDS, md.LENGTHS):
        if name not in inputs:
            raise ModelLoadError(f"{path}: graph input '{name}' is missing (has {sorted(inputs)})")
        if inputs[name].type != "tensor(int64)":
            raise ModelLoadError(
                f"{path}: graph input '{name}' is {inputs[name].type}, expected tensor(int64)"
            )
    if md.PROBABILITIES not in outputs:
        raise ModelLoadError(
            f"{path}: graph output '{md.PROBABILITIES}' is missing (has {sorted(outputs)})"
        )
    width = outputs[md.PROBABILITIES].shape[-1]
    if isinstance(width, int) and width != len(meta.labels):
        raise MetadataError(
            f"{path}: metadata 'labels' has {len(meta.labels)} entries but the model outputs "
            f"{width} classes"
        )


class BiLSTM:
    """A loaded bilstm model. Create with `BiLSTM.load`; `predict` is safe from many threads."""

    def __init__(self, session: ort.InferenceSession, metadata: ModelMetadata, path: Path) -> None:
        self.session = session
        self.metadata = metadata
        self.path = path
        self.tokenizer = Tokenizer(metadata.tokenizer)
        self.vocabulary = Vocabulary(metadata.vocabulary)
        self.labels = list(metadata.labels)

    @classmethod
    def load(
        cls,
        model: str | Path,
        device: Device | str = Device.auto,
        device_id: int = 0,
        threads: int | None = None,
        optimization: Optimization | str = Optimization.all,
        optimized_model_path: Path | None = None,
        profile_prefix: str | None = None,
    ) -> BiLSTM:
        """Open a `.onnx` path or a built-in model name (e.g. "sentiment").

        `device` is `auto|cpu|cuda`; `threads` the intra-op thread count (None: ONNX Runtime's
        default). Raises `ModelLoadError`/`MetadataError`/`DeviceError` with the reason.
        """
        path = resolve_model(model)
        session = create_session(
            path,
            device=Device(device),
            device_id=device_id,
            threads=threads,
            optimization=Optimization(optimization),
            optimized_model_path=optimized_model_path,
            profile_prefix=profile_prefix,
        )
        meta = read_metadata(session, path)
        _check_io(session, meta, path)
        return cls(session, meta, path)

    @property
    def task(self) -> str:
        """The model's task (e.g. "classify")."""
        return self.metadata.task

    @property
    def providers(self) -> list[str]:
        """Execution providers the session really uses, in priority order."""
        return list(self.session.get_providers())

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, exactly as in training."""
        tokenize, encode = self.tokenizer.tokenize, self.vocabulary.encode
        return [encode(tokenize(t)) for t in texts]

    def predict_arrays(self, input_ids: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """Run the graph on already-encoded ids: `input_ids[batch, time]`, `lengths[batch]`.

        Lengths must be in 1..time. Returns every graph output by name.
        """
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        lens = np.ascontiguousarray(lengths, dtype=np.int64)
        if ids.ndim != 2 or lens.shape != (ids.shape[0],):
            raise InputError(
                f"expected input_ids[batch, time] and lengths[batch], got shapes "
                f"{ids.shape} and {lens.shape}"
            )
        if ids.shape[0] and (lens.min() < 1 or lens.max() > ids.shape[1]):
            raise InputError(f"lengths must be within 1..{ids.shape[1]}, got {lens.tolist()}")
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.vocabulary)):
            raise InputError(f"token ids must be within 0..{len(self.vocabulary) - 1}")
        names = [o.name for o in self.session.get_outputs()]
        values = self.session.run(names, {md.INPUT_IDS: ids, md.LENGTHS: lens})
        return dict(zip(names, values, strict=True))

    def probabilities(
        self, encoded: Sequence[Sequence[int]], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[np.ndarray | None]:
        """Class probabilities per encoded text (None where it has no tokens), input order."""
        out: list[np.ndarray | None] = [None] * len(encoded)
        nonempty = [i for i, seq in enumerate(encoded) if seq]
        lengths = [len(encoded[i]) for i in nonempty]
        for batch in length_batches(lengths, batch_size):
            rows = [nonempty[b] for b in batch]
            ids, lens = pad_batch([encoded[r] for r in rows])
            probs = self.predict_arrays(ids, lens)[md.PROBABILITIES]
            for r, p in zip(rows, probs, strict=True):
                out[r] = p
        return out

    def predict(
        self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[ClassPrediction]:
        """Label and probabilities for each text, in input order.

        Texts are batched by length internally. A text without tokens gets `label=None`.
        """
        if isinstance(texts, str):
            raise InputError("predict() takes a list of texts; wrap a single text in a list")
        encoded = self.encode(texts)
        probs = self.probabilities(encoded, batch_size)
        return [self._to_prediction(p, len(e)) for p, e in zip(probs, encoded, strict=True)]

    def _to_prediction(self, probs: np.ndarray | None, num_tokens: int) -> ClassPrediction:
        if probs is None:
            return ClassPrediction(label=None, probabilities=None, num_tokens=num_tokens)
        return ClassPrediction(
            label=self.labels[int(np.argmax(probs))],
            probabilities={lab: float(p) for lab, p in zip(self.labels, probs, strict=True)},
            num_tokens=num_tokens,
        )
