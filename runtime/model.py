"""`BiLSTM`: load a bilstm `.onnx` once, predict many times (thread-safe)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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
from bilstm.runtime.session import (
    Device,
    Optimization,
    check_model_file,
    create_session,
    parse_device,
    parse_optimization,
)
from bilstm.runtime.tokenizer import DEFAULT_PATTERN, Tokenizer, TokenizerConfig
from bilstm.runtime.vocab import UNK_ID, Vocabulary

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
# On CUDA: the shipped sentiment model's graph took 1.5 ms for 64 rows and 1.9 ms for 1024 on an
# H200, about 13x less per row; end to end, 1024 scored 2-2.8x faster than 64 in both runs
# (benchmarks/RESULTS.md, GPU section).
CUDA_BATCH_SIZE = 1024
DEFAULT_TOP_K = 5
TOKENIZE_SPACES, TOKENIZE_WORDS = "spaces", "words"
TOKENIZE_CHOICES = (TOKENIZE_SPACES, TOKENIZE_WORDS)
"""How `tag` splits a string: the model's own tokenizer (whitespace for tag models) or the
built-in word tokenizer."""
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


# What each task's graph outputs (names in metadata.TASK_OUTPUTS), axis by axis: the last axis
# is sized by the metadata (labels, vocabulary or horizon).
_OUTPUT_AXES = {
    "classify": ("batch", "classes"),
    "tag": ("batch", "time", "tags"),
    "cloze": ("batch", "vocabulary"),
    "forecast": ("batch", "horizon"),
}
_INPUT_RANKS = {
    md.INPUT_IDS: 2,
    md.LENGTHS: 1,
    md.CHAR_IDS: 3,
    md.MASK_POSITIONS: 1,
    md.FEATURES: 3,
    md.TEXT: 1,
}


def _axes(names: Sequence[str]) -> str:
    return "[" + ", ".join(names) + "]"


def _last_axis_size(meta: ModelMetadata) -> tuple[str, int | None]:
    """The metadata key that sizes the task's output's last axis, and that size."""
    if meta.task == "cloze":
        return "vocabulary", len(meta.vocabulary)
    if meta.task == "forecast":
        horizon = meta.task_config.get("horizon")
        ok = isinstance(horizon, int) and not isinstance(horizon, bool)
        return "task_config.horizon", horizon if ok else None
    return "labels", len(meta.labels)


def _check_io(session: ort.InferenceSession, meta: ModelMetadata, path: Path) -> None:
    """Refuse a model whose graph does not match what its metadata promises: the task's
    inputs (names, types, ranks) and outputs (names, ranks, last axis sized by the metadata)."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    for name, kind in _expected_inputs(meta).items():
        if name not in inputs:
            raise ModelLoadError(f"{path}: graph input '{name}' is missing (has {sorted(inputs)})")
        if inputs[name].type != kind:
            raise ModelLoadError(
                f"{path}: graph input '{name}' is {inputs[name].type}, expected {kind}"
            )
        shape = inputs[name].shape
        rank = _INPUT_RANKS.get(name)
        if isinstance(shape, list) and rank is not None and len(shape) != rank:
            raise MetadataError(
                f"{path}: metadata 'task' is {meta.task!r}, whose graph input '{name}' has "
                f"{rank} axes, but the graph's '{name}' has shape {shape}"
            )
    axes = _OUTPUT_AXES[meta.task]
    for name in md.TASK_OUTPUTS[meta.task]:
        if name not in outputs:
            raise ModelLoadError(
                f"{path}: graph output '{name}' is missing (has {sorted(outputs)})"
            )
        shape = outputs[name].shape
        if isinstance(shape, list) and len(shape) != len(axes):
            raise MetadataError(
                f"{path}: metadata 'task' is {meta.task!r}, whose '{name}' output is "
                f"{_axes(axes)}, but the graph's '{name}' has shape {shape}; the metadata "
                "does not belong to this graph"
            )
    width = outputs[md.TASK_OUTPUTS[meta.task][-1]].shape
    width = width[-1] if isinstance(width, list) and width else None
    key, expected = _last_axis_size(meta)
    if expected is not None and isinstance(width, int) and width != expected:
        raise MetadataError(
            f"{path}: metadata '{key}' has {expected} entries but the model outputs {width}"
            if key != "task_config.horizon"
            else f"{path}: metadata '{key}' is {expected} but the model outputs {width} steps"
        )


def _check_output(
    path: Path, task: str, name: str, value: np.ndarray, rows: int, width: int, time: int = 0
) -> None:
    """Refuse, at run time, an output whose shape the load-time check could not know."""
    axes = _OUTPUT_AXES[task]
    if (
        value.ndim != len(axes)
        or value.shape[0] != rows
        or value.shape[-1] != width
        or (task == "tag" and value.shape[1] < time)
    ):
        raise ModelLoadError(
            f"{path}: the graph returned '{name}' of shape {list(value.shape)}, a {task} "
            f"model gives {_axes(axes)} with {width} in the last axis; the metadata does not "
            "belong to this graph"
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
            if self.window < 1 or self.horizon < 1:
                raise MetadataError(
                    f"{path}: metadata 'task_config.window' and 'task_config.horizon' must be "
                    f">= 1, got {self.window} and {self.horizon}"
                )
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
        device = parse_device(device)  # bad options first, before the file is read
        optimization = parse_optimization(optimization)
        path = resolve_model(model)
        checked = check_model_file(path)
        session = create_session(
            path,
            device=device,
            device_id=device_id,
            threads=threads,
            optimization=optimization,
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
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {size!r}")
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
            width = len(self.metadata.vocabulary if self.task == "cloze" else self.labels)
            longest = max(len(token_lists[r]) for r in rows)
            _check_output(self.path, self.task, md.PROBABILITIES, result, len(rows), width, longest)
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
        return [split(t) for t in _texts(texts)]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, exactly as in training."""
        enc = self._text()
        return [enc.word_ids(enc.split(t)) for t in _texts(texts)]

    def probabilities(
        self, texts: Sequence[str], batch_size: int | None = None
    ) -> list[np.ndarray | None]:
        """Classify: class probabilities per text (None where it has no tokens), input order."""
        return self._text_outputs(self.tokens(texts), self._batch(batch_size))

    def classify(
        self, texts: Sequence[str], batch_size: int | None = None
    ) -> list[ClassPrediction]:
        """Label and probabilities per text; a text without tokens gets `label=None`."""
        split = self._text().tokenizer.split_checked
        checked = [split(t) for t in _texts(texts)]
        token_lists = [toks for toks, _ in checked]
        probs = self._text_outputs(token_lists, self._batch(batch_size))
        out = []
        for p, (toks, cut) in zip(probs, checked, strict=True):
            if p is None:
                out.append(ClassPrediction(label=None, probabilities=None, num_tokens=0))
                continue
            values = p.tolist()  # one C call instead of a float() per class
            out.append(
                ClassPrediction(
                    label=self.labels[values.index(max(values))],  # first maximum, as argmax
                    probabilities=dict(zip(self.labels, values, strict=True)),
                    num_tokens=len(toks),
                    truncated=cut,
                )
            )
        return out

    def _word_tokenizer(self) -> Tokenizer:
        """The built-in word tokenizer with this model's settings (`tag(tokenize="words")`)."""
        config = self._text().tokenizer.config
        return Tokenizer(TokenizerConfig(config.lowercase, DEFAULT_PATTERN, config.max_length))

    def tag(
        self,
        sentences: Sequence[str | Sequence[str]],
        batch_size: int | None = None,
        tokenize: str = TOKENIZE_SPACES,
    ) -> list[TagPrediction]:
        """Tags per token. A sentence is a string or a list of tokens.

        `tokenize` says how a string is split: "spaces" (default) with the model's own
        tokenizer, which for tag models splits at whitespace as in their pre-tokenized
        (CoNLL-U) training data; "words" with the built-in word tokenizer (words with inner
        apostrophes, each punctuation character a token), for raw text. Token lists are used
        as they are. Sentences over the model's max length are cut (`truncated=True`).
        """
        if tokenize not in TOKENIZE_CHOICES:
            raise InputError(
                f"tokenize must be one of {'|'.join(TOKENIZE_CHOICES)}, got {tokenize!r}"
            )
        tokenizer = (
            self._text().tokenizer if tokenize == TOKENIZE_SPACES else self._word_tokenizer()
        )
        max_len = tokenizer.config.max_length
        checked: list[tuple[list[str], bool]] = []
        for i, s in enumerate(_as_list(sentences)):
            if isinstance(s, str):
                checked.append(tokenizer.split_checked(s))
                continue
            if isinstance(s, bytes | bytearray) or not isinstance(s, Sequence | np.ndarray):
                raise InputError(
                    f"input {i} is {type(s).__name__}, expected a str or a list of str tokens"
                    + (" (decode bytes to str first)" if isinstance(s, bytes | bytearray) else "")
                )
            toks = list(s)
            for j, t in enumerate(toks):
                if not isinstance(t, str):
                    raise InputError(f"input {i}: token {j} is {type(t).__name__}, expected a str")
            checked.append((toks[:max_len], len(toks) > max_len))
        token_lists = [toks for toks, _ in checked]
        probs = self._text_outputs(token_lists, self._batch(batch_size))
        out = []
        for (toks, cut), p in zip(checked, probs, strict=True):
            if p is None:
                out.append(TagPrediction(tokens=[], tags=[], confidences=[]))
                continue
            best = p[: len(toks)].argmax(-1)
            out.append(
                TagPrediction(
                    tokens=list(toks),
                    tags=[self.labels[i] for i in best],
                    confidences=[float(p[j, i]) for j, i in enumerate(best)],
                    truncated=cut,
                )
            )
        return out

    def fill(
        self, texts: Sequence[str], top_k: int = DEFAULT_TOP_K, batch_size: int | None = None
    ) -> list[ClozePrediction]:
        """Top-k words for the single `___` blank of each text, one prediction per text.

        A text without a blank, or with several, gets no candidates and `error` saying why
        (the others are scored); an empty text gets no candidates and no error.
        """
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(f"top_k must be an integer >= 1, got {top_k!r}")
        items = _texts(texts)
        token_lists, positions, problems = self.cloze_inputs(items)
        probs = self._text_outputs(token_lists, self._batch(batch_size), positions)
        out = []
        for text, p, problem in zip(items, probs, problems, strict=True):
            if p is not None:
                out.append(self.candidates(p, top_k))
            elif not text.strip():
                out.append(ClozePrediction(candidates=[]))
            else:
                out.append(ClozePrediction(candidates=[], error=problem or "no tokens"))
        return out

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
        """Forecasts for windows [n, time, columns] (or one [time, columns]) of raw values.

        Columns are `self.columns` in that order. The model was trained on `self.window` rows:
        a window needs at least that many, and only its last `self.window` rows are used
        (as `bilstm-run` does with a series); fewer rows raise `InputError`.
        """
        if self.task != "forecast":
            raise InputError(f"a {self.task} model takes text, not numeric windows")
        try:
            x = np.asarray(windows, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InputError(f"windows must be numeric arrays [n, time, columns]: {exc}") from None
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[2] != len(self.columns):
            raise InputError(
                f"expected windows [n, time, {len(self.columns)}] with columns "
                f"{self.columns}, got shape {x.shape}"
            )
        if x.shape[1] < self.window:
            raise InputError(
                f"windows have {x.shape[1]} rows, fewer than the model's window of "
                f"{self.window}; give at least {self.window} rows (the last {self.window} "
                "are used)"
            )
        x = np.ascontiguousarray(x[:, x.shape[1] - self.window :])
        if not np.isfinite(x).all():
            raise InputError("windows contain NaN or infinite values")
        out: list[Forecast] = []
        size = self._batch(batch_size)
        for start in range(0, len(x), size):
            chunk = x[start : start + size]
            lens = np.full(len(chunk), chunk.shape[1], dtype=np.int64)
            values = self.run({md.FEATURES: chunk, md.LENGTHS: lens}, [md.FORECAST])[md.FORECAST]
            _check_output(self.path, self.task, md.FORECAST, values, len(chunk), self.horizon)
            out.extend(Forecast(values=[float(v) for v in row]) for row in values)
        return out

    def residual_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-step mean and std of dev-set residuals (actual - forecast), for anomaly flags."""
        mean = np.asarray(self.metadata.require("residual_mean", list), dtype=np.float64)
        std = np.asarray(self.metadata.require("residual_std", list), dtype=np.float64)
        return mean, np.maximum(std, 1e-12)

    def predict(
        self,
        inputs: Any,
        batch_size: int | None = None,
        top_k: int = DEFAULT_TOP_K,
        tokenize: str | None = None,
    ) -> list[Any]:
        """Task-appropriate predictions: `classify`, `tag`, `fill` or `forecast` by task.

        `tokenize` ("spaces" or "words") applies to tag models only; see `tag`.
        """
        if tokenize is not None and self.task != "tag":
            raise InputError(
                f"tokenize applies to tag models only; a {self.task} model splits text with "
                "the tokenizer it was trained with"
            )
        if self.task == "forecast":
            if isinstance(inputs, str | bytes) or inputs is None:
                raise InputError(_not_a_list(inputs))
            return self.forecast(inputs, batch_size)
        inputs = _as_list(inputs)
        if self.task == "classify":
            return self.classify(inputs, batch_size)
        if self.task == "tag":
            return self.tag(inputs, batch_size, tokenize or TOKENIZE_SPACES)
        return self.fill(inputs, top_k, batch_size)


def _not_a_list(inputs: object) -> str:
    if isinstance(inputs, str):
        return "predict() takes a list of inputs; wrap a single text in a list"
    return f"expected a list of inputs, got {type(inputs).__name__}"


def _as_list(inputs: Any) -> Sequence[Any]:
    """A list (tuple, array, any iterable) of inputs as a sequence; `InputError` for a single
    string, bytes, a mapping, None, a number."""
    if isinstance(inputs, Sequence) and not isinstance(inputs, str | bytes | bytearray):
        return inputs
    if isinstance(inputs, str | bytes | bytearray | Mapping) or not hasattr(inputs, "__iter__"):
        raise InputError(_not_a_list(inputs))
    return list(inputs)


def _texts(texts: Sequence[str]) -> Sequence[str]:
    """`texts` checked: a list (or other iterable) of str; `InputError` naming the first item
    that is not, by index and type."""
    texts = _as_list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            hint = " (decode bytes to str first)" if isinstance(text, bytes | bytearray) else ""
            raise InputError(f"input {i} is {type(text).__name__}, expected a str{hint}")
    return texts
