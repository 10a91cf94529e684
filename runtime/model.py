"""`BiLSTM`: load a bilstm `.onnx` once, predict many times (thread-safe)."""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import onnxruntime as ort

from bilstm.core.errors import InputError, MetadataError, ModelLoadError
from bilstm.core.reader import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_DELAY_MS,
    DEFAULT_MAX_LINE_BYTES,
    deadline_batches,
)
from bilstm.runtime import metadata as md
from bilstm.runtime.builtin import resolve_model
from bilstm.runtime.metadata import ModelMetadata
from bilstm.runtime.model_guard import ModelSummary
from bilstm.runtime.session import (
    Device,
    Optimization,
    check_model_file,
    create_session,
    parse_device,
    parse_optimization,
)
from bilstm.runtime.taskspec import RunOptions, TaskSpec

if TYPE_CHECKING:
    from bilstm.runtime.sharding import Shard
    from bilstm.runtime.workers import ModelSource, Rendering

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
# A GPU runs 1024 rows in little more time than 64 (benchmarks/RESULTS.md, GPU section).
CUDA_BATCH_SIZE = 1024
DEFAULT_TOP_K = 5
_INT64, _FLOAT, _STRING = "tensor(int64)", "tensor(float)", "tensor(string)"
M = TypeVar("M", bound="BiLSTM")

# Batches at least this large run through I/O binding on CUDA (None: never). Off by default:
# it measured no faster than session.run for these models, whose outputs are small
# (benchmarks/RESULTS.md, GPU section). Apps can turn it on per model.
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


def _expected_inputs(meta: ModelMetadata, spec: TaskSpec) -> dict[str, str]:
    if meta.standalone:  # raw text in: the graph tokenizes itself (bilstm export --with-tokenizer)
        return {md.TEXT: _STRING}
    names = {name: _FLOAT if name == md.FEATURES else _INT64 for name in spec.inputs}
    if meta.task_config.get("char_vocabulary"):
        names[md.CHAR_IDS] = _INT64
    return names


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


def _check_io(
    session: ort.InferenceSession, meta: ModelMetadata, path: Path, cls: type[BiLSTM]
) -> None:
    """Refuse a model whose graph does not match what its metadata promises: the task's
    inputs (names, types, ranks) and outputs (names, ranks, last axis sized by the metadata)."""
    spec = cls.SPEC
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    for name, kind in _expected_inputs(meta, spec).items():
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
    for name in spec.outputs:
        if name not in outputs:
            raise ModelLoadError(
                f"{path}: graph output '{name}' is missing (has {sorted(outputs)})"
            )
        shape = outputs[name].shape
        if isinstance(shape, list) and len(shape) != len(spec.output_axes):
            raise MetadataError(
                f"{path}: metadata 'task' is {meta.task!r}, whose '{name}' output is "
                f"{_axes(spec.output_axes)}, but the graph's '{name}' has shape {shape}; the "
                "metadata does not belong to this graph"
            )
    width = outputs[spec.outputs[-1]].shape
    width = width[-1] if isinstance(width, list) and width else None
    key, expected = cls.output_width(meta)
    if expected is not None and isinstance(width, int) and width != expected:
        raise MetadataError(
            f"{path}: metadata '{key}' has {expected} entries but the model outputs {width}"
            if key != "task_config.horizon"
            else f"{path}: metadata '{key}' is {expected} but the model outputs {width} steps"
        )


def check_output(
    model: BiLSTM, name: str, value: np.ndarray, rows: int, width: int, time: int = 0
) -> None:
    """Refuse, at run time, an output whose shape the load-time check could not know."""
    axes = model.SPEC.output_axes
    if (
        value.ndim != len(axes)
        or value.shape[0] != rows
        or value.shape[-1] != width
        or (model.SPEC.per_token and value.shape[1] < time)
    ):
        raise ModelLoadError(
            f"{model.path}: the graph returned '{name}' of shape {list(value.shape)}, a "
            f"{model.task} model gives {_axes(axes)} with {width} in the last axis; the "
            "metadata does not belong to this graph"
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
    """A loaded bilstm model. Create with `BiLSTM.load`; `predict` is safe from many threads.

    `load` returns the task's own class (`Classifier`, `Tagger`, `ClozeModel`, `Forecaster`),
    which has that task's methods and no others.
    """

    SPEC: ClassVar[TaskSpec]
    STREAM_OPTIONS: ClassVar[tuple[str, ...]] = ()
    """`RunOptions` fields that `stream` takes as keyword options."""

    def __init__(self, session: ort.InferenceSession, metadata: ModelMetadata, path: Path) -> None:
        self.session = session
        self.metadata = metadata
        self.path = path
        self.labels = list(metadata.labels)
        self._output_names = [o.name for o in session.get_outputs()]
        cuda = _cuda_device_id(session)
        self._binding_device = None if cuda is None else ("cuda", cuda)
        self.io_binding_min_batch: int | None = IO_BINDING_MIN_BATCH
        # Default rows per inference batch: a GPU runs 1024 rows in little more time than 64
        self.batch_size = CUDA_BATCH_SIZE if cuda is not None else DEFAULT_BATCH_SIZE
        self._input_names = {i.name for i in session.get_inputs()}
        self._load_options: dict[str, Any] = {}
        """How `load` opened the model (device, optimisation): worker processes do the same."""

    @classmethod
    def load(
        cls: type[M],
        model: str | Path,
        device: Device | str = Device.auto,
        device_id: int = 0,
        threads: int | None = None,
        optimization: Optimization | str = Optimization.all,
        optimized_model_path: Path | None = None,
        profile_prefix: str | None = None,
        tf32: bool = False,
    ) -> M:
        """Open a `.onnx` path or a built-in model name (e.g. "sentiment").

        Returns the task's model class; `Classifier.load(...)` (any subclass) also checks the
        file holds that task.

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
        from bilstm.runtime.tasks import model_class  # the task modules import this one

        task_cls = model_class(meta.task)
        if not issubclass(task_cls, cls):
            raise MetadataError(
                f"{path}: is a {meta.task} model ({task_cls.__name__}), not a {cls.__name__}; "
                "load it with BiLSTM.load"
            )
        _check_io(session, meta, path, task_cls)
        _check_tables(checked, meta, path)
        loaded = task_cls(session, meta, path)
        loaded._load_options = {
            "device_id": device_id,
            "optimization": optimization.value,
            "tf32": tf32,
        }
        return loaded

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
        return self.SPEC.name

    @property
    def providers(self) -> list[str]:
        """Execution providers the session really uses, in priority order."""
        return list(self.session.get_providers())

    def _batch(self, batch_size: int | None) -> int:
        """The batch size to use: the caller's, else the model's default for its device."""
        size = self.batch_size if batch_size is None else batch_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {size!r}")
        return size

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

    # -- what each task adapter provides --------------------------------------------------

    @classmethod
    def output_width(cls, meta: ModelMetadata) -> tuple[str, int | None]:
        """The metadata key that sizes the last axis of the task's outputs, and that size."""
        return "labels", len(meta.labels)

    def predict(self, inputs: Any, batch_size: int | None = None, **options: Any) -> list[Any]:
        """Task-appropriate predictions, one per input (see the task's model class)."""
        raise NotImplementedError

    def record_chunks(
        self, source: str, opts: RunOptions, reading: Reading
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        """`bilstm-run` records for an input file (or `-`), in input order, chunk by chunk,
        each with the number of input lines or windows it covers."""
        raise NotImplementedError

    def worker_source(self, threads: int | None, warmup: int = 0) -> ModelSource:
        """How a worker process opens this model: the same file, device and optimisation,
        with `threads` intra-op threads."""
        from bilstm.runtime.workers import ModelSource

        on_cuda = self._binding_device is not None
        return ModelSource(
            path=str(self.path),
            device="cuda" if on_cuda else "cpu",
            device_id=int(self._load_options.get("device_id", 0)),
            threads=threads,
            optimization=str(self._load_options.get("optimization", "all")),
            tf32=bool(self._load_options.get("tf32", False)),
            warmup=warmup,
        )

    def chunk_results(
        self,
        source: str,
        opts: RunOptions,
        reading: Reading,
        workers: ModelSource | None = None,
        count: int = 1,
        rendering: Rendering | None = None,
    ) -> Iterator[ChunkResult]:
        """`record_chunks` as `ChunkResult`s (records, line count, error records), in input
        order; with `workers` (how each opens the model) and `count` > 1, scored by that many
        worker processes (`runtime/workers.py`), rendered there when `rendering` is given."""
        if workers is not None and count > 1:
            raise InputError(
                f"workers apply to models that read text lines; a {self.task} model's input "
                "is scored in one process (use workers=1)"
            )
        for records, size in self.record_chunks(source, opts, reading):
            bad = [r for r in records if "error" in r]
            yield ChunkResult(size, records, None, len(bad), bad[0] if bad else None)

    def stream(
        self,
        inputs: Iterable[Any],
        max_delay_ms: float = DEFAULT_MAX_DELAY_MS,
        batch_size: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **options: Any,
    ) -> Iterator[dict[str, Any]]:
        """Records as the inputs arrive, for apps that read a socket, a queue or a pipe.

        `inputs` is any iterable, also one whose `next()` blocks until data comes (a socket
        file's lines, a generator draining a queue). Inputs are scored in batches of at most
        `chunk_size`; a batch is scored once its first input has waited `max_delay_ms` for
        more (0: as soon as no more is ready), so each record comes within that delay plus
        one batch's scoring time of its input. Records are those of `bilstm-run` (text:
        `line` is the 1-based input number; forecast: the online records of `--follow`);
        a bad input gets an `error` record and the stream goes on. `options` are the task's
        `STREAM_OPTIONS` (e.g. `top_k=3`, `anomalies=True`).
        """
        from bilstm.runtime.tasks.text import no_options

        if isinstance(inputs, str | bytes | bytearray) or not hasattr(inputs, "__iter__"):
            raise InputError(_not_a_list(inputs).replace("predict()", "stream()"))
        no_options(self, options, self.STREAM_OPTIONS)
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise InputError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        if not isinstance(max_delay_ms, int | float) or not max_delay_ms >= 0:
            raise InputError(f"max_delay_ms must be a number >= 0, got {max_delay_ms!r}")
        given = {k: v for k, v in options.items() if v is not None}
        opts = RunOptions(self._batch(batch_size), **given)
        return self._stream(deadline_batches(inputs, chunk_size, max_delay_ms), opts)

    def _stream(
        self, batches: Generator[list[Any], None, None], opts: RunOptions
    ) -> Iterator[dict[str, Any]]:
        """`stream`'s records (its arguments are checked when it is called, not iterated)."""
        try:
            for records in self.stream_records(batches, opts):
                yield from records
        finally:
            batches.close()

    def stream_records(
        self, batches: Iterable[list[Any]], opts: RunOptions
    ) -> Iterator[list[dict[str, Any]]]:
        """The records of each batch of `stream` inputs, in order (see `stream`)."""
        raise NotImplementedError

    def value_records(self, values: Sequence[Any], opts: RunOptions) -> list[dict[str, Any]]:
        """Records for values of a data-frame column (text or windows), one per value; a
        value that cannot be used gets an `error` record, never an exception."""
        raise NotImplementedError

    def tsv_columns(self, opts: RunOptions) -> list[str]:
        """TSV/table header of this task's records: every field a record can carry."""
        raise NotImplementedError

    def frame_columns(
        self, records: Sequence[dict[str, Any]], probabilities: bool, as_json: bool
    ) -> dict[str, np.ndarray]:
        """Data-frame columns (numpy arrays) of records, without the `error` column."""
        raise NotImplementedError

    def frame_column_names(self, probabilities: bool, as_json: bool) -> list[str]:
        """Names `frame_columns` returns, in order."""
        raise NotImplementedError

    def evaluate(
        self, data: Path, batch_size: int, tag_column: str = "upos", top_k: int = DEFAULT_TOP_K
    ) -> dict[str, Any]:
        """The task's metrics on labelled data in its training format (`bilstm eval`)."""
        raise NotImplementedError


class ChunkResult(NamedTuple):
    """One scored chunk of input: its records (or their rendered text, from a worker
    process), how many input lines or windows it covers, and its error records."""

    size: int
    records: list[dict[str, Any]] | None
    text: str | None
    errors: int
    first_error: dict[str, Any] | None


@dataclass(frozen=True)
class Reading:
    """How `bilstm-run` reads its input: chunked lines with an optional shard, and how long
    a line from a live input may wait for its chunk to fill."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    shard: Shard | None = None
    max_delay_ms: float | None = DEFAULT_MAX_DELAY_MS
    """A live input (pipe, terminal) scores what has arrived once its first waiting line has
    waited this long; None: full chunks only (a shard's chunks must not depend on timing)."""


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
