"""Data-frame predictors: batch scoring on Ray Data, Spark or any pandas/numpy batch engine.

    import ray
    from bilstm.runtime.frames import BiLSTMPredictor

    ds = ray.data.read_text("reviews.txt")                 # one row per line, column "text"
    scored = ds.map_batches(
        BiLSTMPredictor,
        fn_constructor_kwargs={"model": "sentiment", "column": "text", "concurrency": 2},
        compute=ray.data.ActorPoolStrategy(size=2),        # Ray < 2.5x: concurrency=2
        batch_size=4096,
        batch_format="pandas",                             # or "numpy"
    )

Ray builds one `BiLSTMPredictor` per worker (an actor) from the constructor kwargs and calls
it on each batch: the model is loaded once per worker, never pickled (an ONNX Runtime session
cannot be), only its path or built-in name travels. `score_dataset(ds, "sentiment",
concurrency=2)` writes that call for you.

This module never imports ray (Ray imports it on the workers), so the predictor also serves
Spark's `mapInPandas` or a plain loop over pandas DataFrames.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bilstm.core.errors import InputError
from bilstm.core.reader import DEFAULT_MAX_LINE_BYTES
from bilstm.runtime.model import DEFAULT_TOP_K, BiLSTM
from bilstm.runtime.taskspec import RunOptions

LAYOUTS = ("columns", "json")


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _ray_assigned_cpus() -> float | None:
    """CPUs Ray reserved for the current worker, or None outside a Ray worker."""
    ray = sys.modules.get("ray")  # never import ray here: if it is not loaded, we are not in it
    if ray is None:
        return None
    try:
        if not ray.is_initialized():
            return None
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001 - any Ray API trouble just means "unknown"
        return None
    return float(cpus) if cpus else None


def default_threads(concurrency: int | None = None) -> int:
    """ONNX Runtime intra-op threads for one of `concurrency` workers sharing this machine.

    With `concurrency`: cores // concurrency (at least 1), so the workers together use each
    core once instead of every worker starting one thread per core. Without it, inside a Ray
    worker: the CPUs Ray reserved for it (`num_cpus`, 1 unless set); elsewhere all cores.
    """
    if concurrency is not None:
        if concurrency < 1:
            raise InputError(f"concurrency must be >= 1, got {concurrency}")
        return max(1, cpu_cores() // concurrency)
    assigned = _ray_assigned_cpus()
    if assigned is not None:
        return max(1, int(assigned))
    return cpu_cores()


def _default_device() -> str:
    """cuda when Ray gave this worker a GPU (`num_gpus=1`), else cpu."""
    ray = sys.modules.get("ray")
    if ray is not None:
        try:
            if ray.is_initialized() and ray.get_gpu_ids():
                return "cuda"
        except Exception:  # noqa: BLE001 - not a Ray worker after all
            pass
    return "cpu"


def _is_pandas(batch: Any) -> bool:
    return type(batch).__module__.split(".")[0] == "pandas"


def _is_arrow(batch: Any) -> bool:
    return type(batch).__module__.split(".")[0] == "pyarrow"


def _pandas_column(values: np.ndarray, index: Any) -> Any:
    """A pandas column; text-or-null columns get a string dtype (Arrow: string, never null)."""
    import pandas as pd

    if values.dtype == object and all(v is None or isinstance(v, str) for v in values):
        return pd.Series(values, index=index, dtype="string")
    return pd.Series(values, index=index)


class BiLSTMPredictor:
    """Score a column of a batch with a bilstm model; one instance per worker.

    Called with a pandas DataFrame or a dict of numpy arrays (Ray's `batch_format="pandas"` or
    `"numpy"`; a pyarrow Table works too), it returns the same kind of batch: the input columns
    plus the prediction columns, one output row per input row, in order.

    `column` holds, per task:

    - classify/tag/cloze: text (str; bytes are decoded as UTF-8). The same rules as
      `bilstm-run` apply: an empty text gets `label` None (empty lists for tag, no candidates
      for cloze); a null value, a non-string, invalid UTF-8 or a text longer than
      `max_text_bytes` gets an `error` message and no prediction.
    - forecast: one window per row, `[time, len(model.columns)]` raw values in
      `model.columns` order (an array or nested lists).

    Prediction columns (`layout="columns"`, the default; `layout="json"` writes each nested
    value as a JSON string instead, the `bilstm-run` record fields):

    - classify: `label`, `p_<label>` per label (float, NaN without a prediction;
      json: `probabilities` as `{"label": p}`), `error`
    - tag: `tokens`, `tags`, `confidences` (lists), `error`
    - cloze: `word`, `candidates` (list of words), `candidate_probabilities` (json:
      `candidates` as `[[word, p], ...]`), `error`
    - forecast: `forecast` (list of `horizon` floats), `error`

    `probabilities=False` leaves out probabilities/confidences. Values are rounded to 6
    decimals as in `bilstm-run`. `prefix` is put before every prediction column name.

    `threads`: ONNX Runtime intra-op threads per worker; default `default_threads(concurrency)`
    (cores // concurrency, at least 1). Pass the same `concurrency` as to `map_batches`.
    `device`: cpu, cuda or auto; default cuda when Ray gave the worker a GPU, else cpu.
    """

    def __init__(
        self,
        model: str | Path,
        column: str = "text",
        *,
        concurrency: int | None = None,
        threads: int | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        top_k: int = DEFAULT_TOP_K,
        probabilities: bool = True,
        layout: str = "columns",
        prefix: str = "",
        max_text_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        if layout not in LAYOUTS:
            raise InputError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if (batch_size is not None and batch_size < 1) or top_k < 1 or max_text_bytes < 1:
            raise InputError("batch_size, top_k and max_text_bytes must be >= 1")
        self._config: dict[str, Any] = {
            "model": str(model),
            "column": column,
            "concurrency": concurrency,
            "threads": threads,
            "device": device,
            "batch_size": batch_size,
            "top_k": top_k,
            "probabilities": probabilities,
            "layout": layout,
            "prefix": prefix,
            "max_text_bytes": max_text_bytes,
        }
        self.column = column
        self.threads = threads if threads is not None else default_threads(concurrency)
        self.model = BiLSTM.load(model, device=device or _default_device(), threads=self.threads)
        self.batch_size = batch_size or self.model.batch_size  # None: the device's default
        self.top_k = top_k
        self.probabilities = probabilities
        self.layout = layout
        self.prefix = prefix
        self.max_text_bytes = max_text_bytes

    # An ONNX Runtime session cannot be pickled: travel as the settings, reload on arrival.
    def __getstate__(self) -> dict[str, Any]:
        return dict(self._config)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __repr__(self) -> str:
        return (
            f"BiLSTMPredictor(model={self._config['model']!r}, column={self.column!r}, "
            f"task={self.model.task!r}, threads={self.threads})"
        )

    @property
    def output_columns(self) -> list[str]:
        """Names of the prediction columns added to each batch, in order."""
        names = self.model.frame_column_names(self.probabilities, self.layout == "json")
        return [self.prefix + n for n in [*names, "error"]]

    def __call__(self, batch: Any) -> Any:
        """Prediction columns for one batch (pandas DataFrame, dict of numpy arrays, Arrow)."""
        if _is_arrow(batch):
            import pyarrow as pa

            frame = self(batch.to_pandas())
            return pa.Table.from_pandas(frame, preserve_index=False)
        if self.column not in batch:
            have = list(batch.columns if _is_pandas(batch) else batch)
            raise InputError(f"the batch has no column {self.column!r} (columns: {have})")
        raw = batch[self.column]
        values = raw.tolist() if hasattr(raw, "tolist") else list(raw)
        columns = self.predict_values(values)
        if _is_pandas(batch):
            out = batch.copy(deep=False)
            for name, col in columns.items():
                out[name] = _pandas_column(col, out.index)
            return out
        out_dict = dict(batch)
        out_dict.update(columns)
        return out_dict

    def predict_values(self, values: Sequence[Any]) -> dict[str, np.ndarray]:
        """Prediction columns (numpy arrays, `output_columns` order) for a list of inputs."""
        opts = RunOptions(
            self.batch_size,
            top_k=self.top_k,
            probabilities=self.probabilities,
            max_text_bytes=self.max_text_bytes,
        )
        return self._columns(self.model.value_records(values, opts))

    def _columns(self, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        cols = self.model.frame_columns(records, self.probabilities, self.layout == "json")
        error = np.empty(len(records), dtype=object)
        error[:] = [r.get("error") for r in records]
        cols["error"] = error
        return {self.prefix + k: v for k, v in cols.items()}


def shared_predictor(model: str, column: str = "text", **options: Any) -> BiLSTMPredictor:
    """One `BiLSTMPredictor` per process and settings, built on first use (hashable options).

    For engines that call a plain function per partition, such as Spark's `mapInPandas`:
    the model is then loaded once per Python worker, not once per partition.
    """
    return BiLSTMPredictor(model, column, **options)


def score_dataset(
    dataset: Any,
    model: str | Path,
    column: str = "text",
    *,
    concurrency: int = 1,
    rows_per_batch: int = 4096,
    batch_format: str = "pandas",
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    **options: Any,
) -> Any:
    """`dataset.map_batches(BiLSTMPredictor, ...)` with `concurrency` workers (lazy, as Ray is).

    `options` go to `BiLSTMPredictor` (threads, batch_size, layout, probabilities, ...). A
    model path that exists here is made absolute (workers may start in another folder); on a
    cluster it must exist at that path on every node, or be a built-in model name.

    `num_cpus` is the CPU count Ray reserves per worker (its ONNX Runtime threads are set
    apart, see `default_threads`). By default 1, or less when the workers would otherwise
    reserve every CPU of the cluster: then the tasks that read the input could never be
    scheduled and the pipeline would wait forever.
    """
    import ray
    import ray.data

    api: Any = ray  # typed loosely: ray's stubs, where installed, are partly untyped
    path = Path(model)
    if path.exists():
        model = str(path.resolve())
    if num_cpus is None:
        # Not started yet: Ray will start a local cluster with this machine's cores.
        cluster = api.cluster_resources() if api.is_initialized() else {"CPU": cpu_cores()}
        total = float(cluster.get("CPU", 0.0))
        num_cpus = 1.0
        if total and concurrency >= total:
            num_cpus = math.floor(max(0.0, total - 1) / concurrency * 100) / 100
    kwargs = {"model": str(model), "column": column, "concurrency": concurrency, **options}
    extra: dict[str, Any] = {"num_gpus": num_gpus} if num_gpus else {}
    return dataset.map_batches(
        BiLSTMPredictor,
        fn_constructor_kwargs=kwargs,
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        batch_size=rows_per_batch,
        batch_format=batch_format,
        num_cpus=num_cpus,
        **extra,
    )
