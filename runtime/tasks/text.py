"""What the three text tasks share: tokenizer and vocabulary, batching by length, standalone
(text-in) graphs, and reading `bilstm-run`'s input lines or a data frame's text column."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from bilstm.core.batching import PackedIds, length_order
from bilstm.core.errors import InputError
from bilstm.core.preprocess import BLANK, MASK, TextEncoder
from bilstm.core.reader import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_DELAY_MS,
    DEFAULT_MAX_LINE_BYTES,
    Line,
    line_batches,
)
from bilstm.core.vocab import Vocabulary
from bilstm.runtime import metadata as md
from bilstm.runtime.metadata import ModelMetadata
from bilstm.runtime.model import BiLSTM, Reading, _texts, check_output
from bilstm.runtime.taskspec import RunOptions

if TYPE_CHECKING:
    from bilstm.runtime.model import ChunkResult
    from bilstm.runtime.workers import ModelSource, Rendering


class TextModel(BiLSTM):
    """A model that reads text: classify, tag and cloze share everything here."""

    def __init__(self, session: ort.InferenceSession, metadata: ModelMetadata, path: Any) -> None:
        super().__init__(session, metadata, path)
        assert metadata.tokenizer is not None  # metadata validation requires it for text tasks
        self.encoder = TextEncoder.create(
            metadata.tokenizer, metadata.vocabulary, metadata.task_config
        )

    @property
    def vocabulary(self) -> Vocabulary:
        """The word vocabulary."""
        return self.encoder.vocabulary

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """Tokens of each text as the model sees them (split, truncated; case kept)."""
        split = self.encoder.split
        return [split(t) for t in _texts(texts)]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, exactly as in training."""
        enc = self.encoder
        return [enc.word_ids(enc.split(t)) for t in _texts(texts)]

    def predict_arrays(
        self, input_ids: np.ndarray, lengths: np.ndarray, **extra: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Run the graph on encoded ids: `input_ids[batch, time]`, `lengths[batch]` (1..time).

        `extra` carries `char_ids` or `mask_positions` for models that take them.
        """
        lens = np.ascontiguousarray(lengths, dtype=np.int64)
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

    def _width(self) -> int:
        """Size of the last axis of the output predictions read."""
        return len(self.labels)

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
        out: list[np.ndarray | None] = [None] * len(token_lists)
        for rows, result in self._scored_batches(token_lists, batch_size, extra):
            for r, p in zip(rows.tolist(), result, strict=True):
                out[r] = p
        return out

    def _scored_batches(
        self,
        token_lists: Sequence[Sequence[str]],
        batch_size: int,
        extra: Sequence[int] | None = None,
        packed: PackedIds | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, output) per length-sorted batch of the non-empty token lists: the indices
        into `token_lists` and the last graph output's rows for them.

        The ids of all lists are looked up at once and each batch is padded with one gather
        (`TextEncoder.pack`). `packed`: those ids already made from the texts
        (`TextEncoder.pack_texts`); then `token_lists` is not read, which only a model that
        needs nothing else may do (no standalone graph, no character features).
        """
        standalone = self.metadata.standalone
        chars = self.encoder.chars is not None
        if packed is None:
            packed = None if standalone else self.encoder.pack(token_lists)
        elif standalone or chars:
            raise ValueError("packed ids cannot feed a standalone or character model")
        if packed is not None:
            lengths = packed.lengths
        else:
            lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        nonempty = np.flatnonzero(lengths)
        positions = None if extra is None else np.asarray(extra, dtype=np.int64)
        for batch in length_order(lengths[nonempty], batch_size):
            rows = nonempty[batch]
            if packed is None:  # raw text in: the graph splits and finds the blank
                feeds = {md.TEXT: self._standalone_texts([token_lists[r] for r in rows])}
            else:
                ids, lens = packed.batch(rows)
                feeds = {md.INPUT_IDS: ids, md.LENGTHS: lens}
                if chars:
                    width = ids.shape[1]
                    feeds[md.CHAR_IDS] = np.stack(
                        [self.encoder.char_ids(token_lists[r], width) for r in rows]
                    )
                if positions is not None:
                    feeds[md.MASK_POSITIONS] = positions[rows]
            result = self.run(feeds, [md.PROBABILITIES])[md.PROBABILITIES]
            longest = int(lengths[rows].max())
            check_output(self, md.PROBABILITIES, result, len(rows), self._width(), longest)
            yield rows, result

    def probability_rows(
        self, texts: Sequence[str], batch_size: int
    ) -> tuple[list[np.ndarray | None], list[int]]:
        """The probability rows each text gets as `bilstm-run` scores it (None for a text
        without tokens), and its token count."""
        tokens = self.tokens(texts)
        return self._text_outputs(tokens, batch_size), [len(t) for t in tokens]

    def _standalone_texts(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Texts for a standalone model: the tokens joined by spaces, which its graph splits
        back into exactly these tokens (the exportable patterns never match whitespace); the
        cloze mask becomes the blank again."""
        split = self.encoder.split
        texts = []
        for tokens in token_lists:
            text = " ".join(BLANK if t == MASK else t for t in tokens)
            if split(text) != [BLANK if t == MASK else t for t in tokens]:
                raise InputError(f"a standalone model cannot take the tokens {list(tokens)[:8]}")
            texts.append(text)
        return np.array(texts, dtype=object)

    # -- records ---------------------------------------------------------------------------

    def line_records(self, lines: Sequence[Line], opts: RunOptions) -> list[dict[str, Any]]:
        """Records for a chunk of text lines, in order; bad lines get error records."""
        records = self._records([ln.text or "" for ln in lines], [ln.number for ln in lines], opts)
        for i, ln in enumerate(lines):
            if ln.error is not None:
                records[i] = {"line": ln.number, "error": ln.error}
        return records

    def _records(
        self, texts: Sequence[str], numbers: Sequence[int], opts: RunOptions
    ) -> list[dict[str, Any]]:
        """One record per text (`line` from `numbers`), as the task writes it."""
        raise NotImplementedError

    def record_chunks(
        self, source: str, opts: RunOptions, reading: Reading
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        """Records chunk by chunk: `reading.chunk_size` lines are read, sorted by length into
        batches and scored at a time, so memory stays bounded for any file size. From a live
        input (pipe, terminal) a chunk also ends once its first line has waited
        `reading.max_delay_ms`, so records follow their lines (not with a shard, whose chunks
        must be the same whatever the timing)."""
        for chunk in line_chunks(source, reading):
            yield self.line_records(chunk, opts), len(chunk)

    def chunk_results(
        self,
        source: str,
        opts: RunOptions,
        reading: Reading,
        workers: ModelSource | None = None,
        count: int = 1,
        rendering: Rendering | None = None,
    ) -> Iterator[ChunkResult]:
        if workers is None or count <= 1:
            yield from super().chunk_results(source, opts, reading)
            return
        from bilstm.runtime.workers import WorkerPool

        with WorkerPool(workers, count, opts, rendering) as pool:
            yield from pool.map(line_chunks(source, reading))

    def score_file(
        self,
        source: str | Path,
        workers: int = 1,
        threads: int | None = None,
        batch_size: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        **options: Any,
    ) -> Iterator[dict[str, Any]]:
        """The records `bilstm-run` writes for a text file (or "-", stdin), one per line in
        input order, read and scored `chunk_size` lines at a time (memory stays bounded).

        `workers` > 1 scores chunks in that many processes, each with its own ONNX Runtime
        session of `threads` intra-op threads (default: the cores shared out), on the same
        device as this model; the order is kept. A bad line gets an error record; a worker
        that fails raises `WorkerError`. `options` are the task's `STREAM_OPTIONS`.
        """
        from bilstm.runtime.workers import default_threads

        no_options(self, options, self.STREAM_OPTIONS)
        for name, value in (("workers", workers), ("chunk_size", chunk_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if threads is not None and (
            not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
        ):
            raise InputError(f"threads must be an integer >= 1, got {threads!r}")
        given = {k: v for k, v in options.items() if v is not None}
        opts = RunOptions(self._batch(batch_size), **given)
        reading = Reading(chunk_size, max_line_bytes, None, DEFAULT_MAX_DELAY_MS)
        pool = None
        if workers > 1:
            pool = self.worker_source(threads or default_threads(workers))
        results = self.chunk_results(str(source), opts, reading, pool, workers)
        return (record for result in results for record in result.records or [])

    def stream_records(
        self, batches: Iterable[list[Any]], opts: RunOptions
    ) -> Iterator[list[dict[str, Any]]]:
        """Records of texts as they arrive (`stream`): str or UTF-8 bytes, one line end
        removed; `line` counts the inputs from 1."""
        number = 0
        for batch in batches:
            lines = []
            for value in batch:
                number += 1
                lines.append(_value_line(number, _strip_line_end(value), opts.max_text_bytes))
            yield self.line_records(lines, opts)

    def value_records(self, values: Sequence[Any], opts: RunOptions) -> list[dict[str, Any]]:
        """Records for a data-frame column of texts (str or UTF-8 bytes); null, non-text and
        too long values get error records."""
        lines = [_value_line(i, v, opts.max_text_bytes) for i, v in enumerate(values)]
        return self.line_records(lines, opts)


def line_chunks(source: str, reading: Reading) -> Iterator[list[Line]]:
    """The chunks of input lines that are scored at a time (`record_chunks`): the shard's
    chunks only, and from a live input a chunk ends once its first line has waited
    `reading.max_delay_ms` (not with a shard, whose chunks must not depend on timing)."""
    delay = None if reading.shard is not None else reading.max_delay_ms
    chunks = line_batches(source, reading.max_line_bytes, reading.chunk_size, delay)
    if reading.shard is None:
        yield from chunks
        return
    from bilstm.runtime.sharding import select_chunks

    yield from select_chunks(chunks, reading.shard)


def _strip_line_end(value: Any) -> Any:
    """A line read from a socket or file, without its LF or CRLF (other values as they are)."""
    if isinstance(value, str):
        return value[:-1].removesuffix("\r") if value.endswith("\n") else value
    if isinstance(value, bytes | bytearray):
        return value[:-1].removesuffix(b"\r") if value.endswith(b"\n") else value
    return value


def _value_line(index: int, value: Any, max_bytes: int) -> Line:
    """A data-frame value as an input line (or the reason it is not one)."""
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            return Line(index, None, f"not valid UTF-8 (byte {exc.start}: {exc.reason})")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Line(index, None, "no text (the value is null)")
    if not isinstance(value, str):
        return Line(index, None, f"expected a string, got {type(value).__name__}")
    if len(value) * 4 > max_bytes:  # cheap test first: UTF-8 is <= 4 bytes per character
        size = len(value.encode("utf-8"))
        if size > max_bytes:
            return Line(index, None, f"text is {size} bytes, over max_text_bytes")
    return Line(index, value)


def object_column(values: Sequence[Any]) -> np.ndarray:
    """A numpy object array holding `values` as they are (lists stay lists)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def json_column(records: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    """`records[i][key]` as JSON text per row (None where absent)."""
    import json

    return object_column(
        [None if r.get(key) is None else json.dumps(r[key], ensure_ascii=False) for r in records]
    )


def no_options(model: BiLSTM, options: dict[str, Any], allowed: tuple[str, ...] = ()) -> None:
    """Refuse `predict` options this task does not take (a silent no-op would mislead)."""
    if not options:
        return
    from bilstm.runtime.tasks import MODEL_CLASSES

    for name in sorted(k for k, v in options.items() if k not in allowed and v is not None):
        owners = sorted(c.SPEC.name for c in MODEL_CLASSES.values() if name in c.SPEC.run_options)
        where = f"{'/'.join(owners)} models only" if owners else "no model"
        raise InputError(
            f"{name} applies to {where}; a {model.task} model takes "
            + (", ".join(allowed) if allowed else "no options")
        )
