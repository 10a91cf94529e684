"""`BiLSTM`: load a bilstm `.onnx` once, predict many times (thread-safe)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bilstm.runtime import metadata as md
from bilstm.runtime.batching import length_batches
from bilstm.runtime.builtin import resolve_model
from bilstm.runtime.errors import InputError, MetadataError, ModelLoadError
from bilstm.runtime.metadata import ModelMetadata
from bilstm.runtime.model_guard import ModelSummary
from bilstm.runtime.predictions import ClassPrediction, ClozePrediction, Forecast, TagPrediction
from bilstm.runtime.preprocess import BLANK, MASK, TextEncoder, blank_position
from bilstm.runtime.session import Device, Optimization, check_model_file, create_session
from bilstm.runtime.vocab import UNK_ID, Vocabulary

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
# On CUDA: the shipped sentiment model's graph took 1.5 ms for 64 rows and 1.9 ms for 1024 on an
# H200, about 13x less per row; end to end, 1024 scored 2-2.8x faster than 64 in both runs
# (benchmarks/RESULTS.md, GPU section).
CUDA_BATCH_SIZE = 1024
DEFAULT_TOP_K = 5
_INT64, _FLOAT, _STRING = "tensor(int64)", "tensor(float)", "tensor(string)"


# Batches at least this large run through I/O binding on CUDA (None: never). Off by default:
# on an H200 it was 0.91-1.10x the speed of session.run at batch 16-4096 for the shipped
# sentiment model over two runs (benchmarks/RESULTS.md, GPU section), since session.run also
# copies each input once and the outputs are small. Apps can turn it on per model.
IO_BINDING_MIN_BATCH: int | None = None


def _output_list(outputs: Sequence[str] | str) -> list[str]:
    """A single output name or a sequence of them, as a list."""
    return [outputs] if isinstance(outputs, str) else list(outputs)


def _cuda_device_id(session: ort.InferenceSession) -> int | None:
    """The CUDA device the session runs on, or None for a CPU session."""
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return None
    options = session.get_provider_options().get("CUDAExecutionProvider", {})
    return int(options.get("device_id", 0))


def read_metadata(session: ort.InferenceSession, path: Path) -> ModelMetadata:
    """The bilstm metadata document of an open session, validated."""
    props = session.get_modelmeta().custom_metadata_map
    if md.METADATA_KEY not in props:
        raise MetadataError(
            f"{path}: has no bilstm metadata (key '{md.METADATA_KEY}'); it was not exported by "
            "`bilstm export`. Run it in generic mode with tensor input: bilstm-run MODEL "
            "inputs.npz|.npy|.json"
        )
    try:
        return ModelMetadata.from_json(props[md.METADATA_KEY])
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from exc


def _expected_inputs(meta: ModelMetadata) -> dict[str, str]:
    if meta.standalone:  # raw text in: the graph tokenizes itself (bilstm export --with-tokenizer)
        return {md.TEXT: _STRING}
    names = dict.fromkeys(md.TASK_INPUTS[meta.task], _INT64)
    if meta.task == "forecast":
        names[md.FEATURES] = _FLOAT
    if meta.task_config.get("char_vocabulary"):
        names[md.CHAR_IDS] = _INT64
    return names


def _check_io(session: ort.InferenceSession, meta: ModelMetadata, path: Path) -> None:
    """Refuse a model whose graph does not match what its metadata promises."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    for name, kind in _expected_inputs(meta).items():
        if name not in inputs:
            raise ModelLoadError(f"{path}: graph input '{name}' is missing (has {sorted(inputs)})")
        if inputs[name].type != kind:
            raise ModelLoadError(
                f"{path}: graph input '{name}' is {inputs[name].type}, expected {kind}"
            )
    for name in md.TASK_OUTPUTS[meta.task]:
        if name not in outputs:
            raise ModelLoadError(
                f"{path}: graph output '{name}' is missing (has {sorted(outputs)})"
            )
    width = outputs[md.TASK_OUTPUTS[meta.task][-1]].shape[-1]
    expected = {
        "classify": len(meta.labels),
        "tag": len(meta.labels),
        "cloze": len(meta.vocabulary),
    }.get(meta.task)
    if expected is not None and isinstance(width, int) and width != expected:
        key = "vocabulary" if meta.task == "cloze" else "labels"
        raise MetadataError(
            f"{path}: metadata '{key}' has {expected} entries but the model outputs {width}"
        )


def _check_tables(summary: ModelSummary, meta: ModelMetadata, path: Path) -> None:
    """Refuse a vocabulary longer than the table its ids index: CPU's Gather would fail on
    such an id, CUDA's reads past the table without an error."""
    sizes = {md.INPUT_IDS: len(meta.vocabulary)}
    chars = meta.task_config.get("char_vocabulary")
    if isinstance(chars, list):
        sizes[md.CHAR_IDS] = len(chars)
    for name, size in sizes.items():
        rows = summary.gathered_rows.get(name)
        if rows is not None and size > rows:
            raise MetadataError(
                f"{path}: the metadata's vocabulary for '{name}' has {size} entries but the "
                f"graph's table has {rows} rows, so ids from {rows} on would index past it; "
                "the metadata does not belong to these weights: re-export the model"
            )


class BiLSTM:
    """A loaded bilstm model. Create with `BiLSTM.load`; `predict` is safe from many threads."""

    def __init__(self, session: ort.InferenceSession, metadata: ModelMetadata, path: Path) -> None:
        self.session = session
        self.metadata = metadata
        self.path = path
        self.labels = list(metadata.labels)
        self.encoder: TextEncoder | None = None
        self._output_names = [o.name for o in session.get_outputs()]
        cuda = _cuda_device_id(session)
        self._binding_device = None if cuda is None else ("cuda", cuda)
        self.io_binding_min_batch: int | None = IO_BINDING_MIN_BATCH
        # Default rows per inference batch: a GPU runs 1024 rows in little more time than 64
        self.batch_size = CUDA_BATCH_SIZE if cuda is not None else DEFAULT_BATCH_SIZE
        self._input_names = {i.name for i in session.get_inputs()}
        if metadata.tokenizer is not None:
            self.encoder = TextEncoder.create(
                metadata.tokenizer, metadata.vocabulary, metadata.task_config
            )
        if metadata.task == "forecast":
            self.window = int(metadata.require("window", int))
            self.horizon = int(metadata.require("horizon", int))
            self.columns = [str(c) for c in metadata.require("columns", list)]
            self.target = str(metadata.require("target", str))

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
        tf32: bool = False,
    ) -> BiLSTM:
        """Open a `.onnx` path or a built-in model name (e.g. "sentiment").

        `device` is `auto|cpu|cuda`; `threads` the intra-op thread count (None: ONNX Runtime's
        default); `tf32=True` lets CUDA use TF32 for fp32 products (up to about 2e-2 off
        PyTorch's fp32 logits; off by default). Raises `ModelLoadError`/`MetadataError`/
        `DeviceError` with the reason.
        """
        path = resolve_model(model)
        checked = check_model_file(path)
        session = create_session(
            path,
            device=Device(device),
            device_id=device_id,
            threads=threads,
            optimization=Optimization(optimization),
            optimized_model_path=optimized_model_path,
            profile_prefix=profile_prefix,
            tf32=tf32,
            checked=checked,
        )
        meta = read_metadata(session, path)
        _check_io(session, meta, path)
        _check_tables(checked, meta, path)
        return cls(session, meta, path)

    def warmup(self, runs: int = 1) -> None:
        """Run the graph `runs` times on a small dummy batch (first-call costs paid upfront)."""
        feeds: dict[str, np.ndarray] = {}
        for spec in self.session.get_inputs():
            shape = [d if isinstance(d, int) else (2 if i else 1) for i, d in enumerate(spec.shape)]
            if spec.name == md.LENGTHS:
                shape = [1]
            dtype = {_FLOAT: np.float32, _STRING: object}.get(spec.type, np.int64)
            feeds[spec.name] = np.full(shape, "warm up" if dtype is object else 1, dtype=dtype)
        if md.LENGTHS in feeds:
            feeds[md.LENGTHS][:] = 2
        if md.MASK_POSITIONS in feeds:
            feeds[md.MASK_POSITIONS][:] = 0
        for _ in range(runs):
            self.run(feeds)

    @property
    def task(self) -> str:
        """The model's task: classify, tag, forecast or cloze."""
        return self.metadata.task

    @property
    def providers(self) -> list[str]:
        """Execution providers the session really uses, in priority order."""
        return list(self.session.get_providers())

    @property
    def vocabulary(self) -> Vocabulary:
        """The word vocabulary (text tasks)."""
        return self._text().vocabulary

    def _batch(self, batch_size: int | None) -> int:
        """The batch size to use: the caller's, else the model's default for its device."""
        size = self.batch_size if batch_size is None else batch_size
        if size < 1:
            raise InputError(f"batch_size must be >= 1, got {size}")
        return size

    def _text(self) -> TextEncoder:
        if self.encoder is None:
            raise InputError(f"a {self.task} model takes numeric windows, not text")
        return self.encoder

    # -- low level -------------------------------------------------------------------------

    def run(
        self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | str | None = None
    ) -> dict[str, np.ndarray]:
        """Run the graph on prepared arrays (names as in `session.get_inputs()`).

        Returns the named `outputs` (default: all). On CUDA, batches of at least
        `self.io_binding_min_batch` rows (None: never) go through I/O binding.
        """
        missing = self._input_names - set(feeds)
        if missing:
            raise InputError(f"missing model inputs {sorted(missing)}")
        names = self._output_names
        if outputs is not None:  # checked here: ORT reads an empty list as "all outputs"
            names = _output_list(outputs)
            if not names or any(n not in self._output_names for n in names):
                raise InputError(
                    f"outputs must name some of the model's outputs {self._output_names}, "
                    f"got {names}"
                )
        try:
            if self._binds(feeds):
                values = self._run_bound(feeds, names)
            else:
                values = self.session.run(names, feeds)
        except Exception as exc:  # ORT raises its own types (InvalidArgument, Fail, ...)
            raise InputError(
                f"{self.path}: ONNX Runtime failed to run the model: "
                f"{' '.join(str(exc).split())[:300]}"
            ) from exc
        return dict(zip(names, values, strict=True))

    def _binds(self, feeds: dict[str, np.ndarray]) -> bool:
        if self._binding_device is None or self.io_binding_min_batch is None:
            return False
        rows = next(iter(feeds.values())).shape[0] if feeds else 0
        return bool(rows >= self.io_binding_min_batch)

    def _run_bound(self, feeds: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
        """One run through I/O binding: tensors copied to the GPU once up front, `lengths`
        left in host memory (the CUDA LSTM reads `sequence_lens` from the host, so a GPU
        copy would travel back), outputs kept on the GPU and only the requested ones copied
        out. A fresh binding per call keeps `run` thread-safe."""
        binding = self.session.io_binding()
        assert self._binding_device is not None
        kind, device = self._binding_device
        for name, value in feeds.items():
            if name == md.LENGTHS or value.dtype == object:
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(
                    name, ort.OrtValue.ortvalue_from_numpy(value, kind, device)
                )
        for name in names:
            binding.bind_output(name, kind, device)
        self.session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())

    def predict_arrays(
        self, input_ids: np.ndarray, lengths: np.ndarray, **extra: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Run a text model on encoded ids: `input_ids[batch, time]`, `lengths[batch]` (1..time).

        `extra` carries `char_ids` or `mask_positions` for models that take them. For forecast
        models pass `input_ids=features` (float32 [batch, time, features]).
        """
        lens = np.ascontiguousarray(lengths, dtype=np.int64)
        if self.task == "forecast":
            x = np.ascontiguousarray(input_ids, dtype=np.float32)
            if x.ndim != 3 or lens.shape != (x.shape[0],):
                raise InputError(
                    f"expected features[batch, time, features] and lengths[batch], "
                    f"got shapes {x.shape} and {lens.shape}"
                )
            return self.run({md.FEATURES: x, md.LENGTHS: lens})
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        if ids.ndim != 2 or lens.shape != (ids.shape[0],):
            raise InputError(
                f"expected input_ids[batch, time] and lengths[batch], got shapes "
                f"{ids.shape} and {lens.shape}"
            )
        if ids.shape[0] and (lens.min() < 1 or lens.max() > ids.shape[1]):
            raise InputError(f"lengths must be within 1..{ids.shape[1]}, got {lens.tolist()}")
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.metadata.vocabulary)):
            raise InputError(f"token ids must be within 0..{len(self.metadata.vocabulary) - 1}")
        feeds = {md.INPUT_IDS: ids, md.LENGTHS: lens}
        feeds.update({k: np.ascontiguousarray(v, dtype=np.int64) for k, v in extra.items()})
        return self.run(feeds)

    def _text_outputs(
        self,
        token_lists: Sequence[Sequence[str]],
        batch_size: int,
        extra: Sequence[int] | None = None,
    ) -> list[np.ndarray | None]:
        """Output rows of the last graph output for each token list (None where it is empty).

        Rows are batched by length and returned in input order. `extra` holds one mask
        position per item (cloze).
        """
        enc = self._text()
        out: list[np.ndarray | None] = [None] * len(token_lists)
        nonempty = [i for i, t in enumerate(token_lists) if t]
        for batch in length_batches([len(token_lists[i]) for i in nonempty], batch_size):
            rows = [nonempty[b] for b in batch]
            if self.metadata.standalone:  # raw text in: the graph splits and finds the blank
                feeds = {md.TEXT: self._standalone_texts([token_lists[r] for r in rows])}
            else:
                feeds = enc.batch([token_lists[r] for r in rows])
                if extra is not None:
                    feeds[md.MASK_POSITIONS] = np.array([extra[r] for r in rows], np.int64)
            result = self.run(feeds, [md.PROBABILITIES])[md.PROBABILITIES]
            for r, p in zip(rows, result, strict=True):
                out[r] = p
        return out

    def _standalone_texts(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Texts for a standalone model: the tokens joined by spaces, which its graph splits
        back into exactly these tokens (the exportable patterns never match whitespace); the
        cloze mask becomes the blank again."""
        split = self._text().split
        texts = []
        for tokens in token_lists:
            text = " ".join(BLANK if t == MASK else t for t in tokens)
            if split(text) != [BLANK if t == MASK else t for t in tokens]:
                raise InputError(f"a standalone model cannot take the tokens {list(tokens)[:8]}")
            texts.append(text)
        return np.array(texts, dtype=object)

    # -- per task --------------------------------------------------------------------------

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """Tokens of each text as the model sees them (split, truncated; case kept)."""
        split = self._text().split
        return [split(t) for t in texts]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, exactly as in training."""
        enc = self._text()
        return [enc.word_ids(enc.split(t)) for t in texts]

    def probabilities(
        self, texts: Sequence[str], batch_size: int | None = None
    ) -> list[np.ndarray | None]:
        """Classify: class probabilities per text (None where it has no tokens), input order."""
        return self._text_outputs(self.tokens(texts), self._batch(batch_size))

    def classify(
        self, texts: Sequence[str], batch_size: int | None = None
    ) -> list[ClassPrediction]:
        """Label and probabilities per text; a text without tokens gets `label=None`."""
        token_lists = self.tokens(texts)
        probs = self._text_outputs(token_lists, self._batch(batch_size))
        out = []
        for p, toks in zip(probs, token_lists, strict=True):
            if p is None:
                out.append(ClassPrediction(label=None, probabilities=None, num_tokens=0))
                continue
            values = p.tolist()  # one C call instead of a float() per class
            out.append(
                ClassPrediction(
                    label=self.labels[values.index(max(values))],  # first maximum, as argmax
                    probabilities=dict(zip(self.labels, values, strict=True)),
                    num_tokens=len(toks),
                )
            )
        return out

    def tag(
        self, sentences: Sequence[str | Sequence[str]], batch_size: int | None = None
    ) -> list[TagPrediction]:
        """Tags per token. A sentence is a string (split like training) or a list of tokens."""
        max_len = self._text().tokenizer.config.max_length
        token_lists = [
            self._text().split(s) if isinstance(s, str) else list(s)[:max_len] for s in sentences
        ]
        probs = self._text_outputs(token_lists, self._batch(batch_size))
        out = []
        for toks, p in zip(token_lists, probs, strict=True):
            if p is None:
                out.append(TagPrediction(tokens=[], tags=[], confidences=[]))
                continue
            best = p[: len(toks)].argmax(-1)
            out.append(
                TagPrediction(
                    tokens=list(toks),
                    tags=[self.labels[i] for i in best],
                    confidences=[float(p[j, i]) for j, i in enumerate(best)],
                )
            )
        return out

    def fill(
        self, texts: Sequence[str], top_k: int = DEFAULT_TOP_K, batch_size: int | None = None
    ) -> list[ClozePrediction]:
        """Top-k words for the single `___` blank of each text.

        Raises `InputError` naming the text (by index) that has no blank or several.
        """
        token_lists, positions, problems = self.cloze_inputs(texts)
        for i, problem in enumerate(problems):
            if problem is not None:
                raise InputError(f"text {i}: {problem}")
        probs = self._text_outputs(token_lists, self._batch(batch_size), positions)
        return [self.candidates(p, top_k) for p in probs if p is not None]

    def cloze_inputs(
        self, texts: Sequence[str]
    ) -> tuple[list[list[str]], list[int], list[str | None]]:
        """Per text: tokens with the blank replaced by the mask token (empty when there is no
        usable blank), the blank's position, and what is wrong with the text (None if fine)."""
        token_lists: list[list[str]] = []
        positions: list[int] = []
        problems: list[str | None] = []
        for toks in self.tokens(texts):
            try:
                pos = blank_position(toks)
            except ValueError as exc:
                pos, problem = None, str(exc)
            else:
                problem = "no '___' blank to fill (write it as a separate word)"
            if pos is None:
                token_lists.append([])
                positions.append(0)
                problems.append(problem)
                continue
            toks[pos] = MASK
            token_lists.append(toks)
            positions.append(pos)
            problems.append(None)
        return token_lists, positions, problems

    def candidates(self, probs: np.ndarray, top_k: int) -> ClozePrediction:
        """The top-k real words of a probability row over the vocabulary."""
        vocab = self.metadata.vocabulary
        order = np.argsort(-probs, kind="stable")
        picked = [
            (vocab[i], float(probs[i]))
            for i in order[: top_k + 3]
            if i > UNK_ID and vocab[i] != MASK
        ]
        return ClozePrediction(candidates=picked[:top_k])

    def forecast(self, windows: np.ndarray, batch_size: int | None = None) -> list[Forecast]:
        """Forecasts for windows [n, window, columns] (or one [window, columns]) of raw values.

        Columns are `self.columns` in that order; any window length >= 1 is accepted, the
        model was trained on `self.window`.
        """
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[2] != len(self.columns):
            raise InputError(
                f"expected windows [n, time, {len(self.columns)}] with columns "
                f"{self.columns}, got shape {x.shape}"
            )
        if not np.isfinite(x).all():
            raise InputError("windows contain NaN or infinite values")
        out: list[Forecast] = []
        size = self._batch(batch_size)
        for start in range(0, len(x), size):
            chunk = x[start : start + size]
            lens = np.full(len(chunk), chunk.shape[1], dtype=np.int64)
            values = self.run({md.FEATURES: chunk, md.LENGTHS: lens}, [md.FORECAST])[md.FORECAST]
            out.extend(Forecast(values=[float(v) for v in row]) for row in values)
        return out

    def residual_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-step mean and std of dev-set residuals (actual - forecast), for anomaly flags."""
        mean = np.asarray(self.metadata.require("residual_mean", list), dtype=np.float64)
        std = np.asarray(self.metadata.require("residual_std", list), dtype=np.float64)
        return mean, np.maximum(std, 1e-12)

    def predict(
        self, inputs: Any, batch_size: int | None = None, top_k: int = DEFAULT_TOP_K
    ) -> list[Any]:
        """Task-appropriate predictions: `classify`, `tag`, `fill` or `forecast` by task."""
        if isinstance(inputs, str):
            raise InputError("predict() takes a list of inputs; wrap a single text in a list")
        if self.task == "classify":
            return self.classify(inputs, batch_size)
        if self.task == "tag":
            return self.tag(inputs, batch_size)
        if self.task == "cloze":
            return self.fill(inputs, top_k, batch_size)
        return self.forecast(inputs, batch_size)
