"""Time-series forecasting: the next `horizon` values of a target from a window of rows, and
anomaly flags from the residuals seen on the dev set."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bilstm.core.errors import DataError, InputError, MetadataError
from bilstm.core.reader import Line, line_batches
from bilstm.core.series import window_starts
from bilstm.runtime import metadata as md
from bilstm.runtime.metadata import ModelMetadata
from bilstm.runtime.model import DEFAULT_TOP_K, BiLSTM, Reading, check_output
from bilstm.runtime.predictions import Forecast
from bilstm.runtime.tasks.text import json_column, no_options, object_column
from bilstm.runtime.taskspec import RunOptions, TaskSpec

SPEC = TaskSpec(
    name="forecast",
    inputs=(md.FEATURES, md.LENGTHS),
    outputs=(md.FORECAST,),
    output_axes=("batch", "horizon"),
    text_input=False,
    needs_labels=False,
    per_token=False,
    variants=False,
    run_options=frozenset(
        {"rolling", "anomalies", "threshold"}
        | {"follow", "max_delay_ms", "on_error", "max_line_bytes"}  # online (--follow)
    ),
)


def anomaly_scores(
    actual: Sequence[float | None],
    forecast: Sequence[float | None],
    stats: tuple[np.ndarray, np.ndarray],
    threshold: float,
) -> tuple[list[float | None], list[bool | None]]:
    """Per step: the residual (actual - forecast) in dev-set residual standard deviations, and
    whether it is beyond `threshold`; None where the actual or the forecast is unknown."""
    mean, std = stats
    z = [
        None if a is None or f is None else round(float((a - f - mean[h]) / std[h]), 4)
        for h, (a, f) in enumerate(zip(actual, forecast, strict=True))
    ]
    return z, [None if v is None else abs(v) > threshold for v in z]


class Forecaster(BiLSTM):
    """A forecaster: `forecast(windows)` gives the next `horizon` values of `target`."""

    SPEC = SPEC
    STREAM_OPTIONS = ("anomalies", "threshold")

    def __init__(self, session: ort.InferenceSession, metadata: ModelMetadata, path: Any) -> None:
        super().__init__(session, metadata, path)
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
    def output_width(cls, meta: ModelMetadata) -> tuple[str, int | None]:
        horizon = meta.task_config.get("horizon")
        ok = isinstance(horizon, int) and not isinstance(horizon, bool)
        return "task_config.horizon", horizon if ok else None

    def predict_arrays(self, features: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """Run the graph on prepared `features[batch, time, columns]` and `lengths[batch]`."""
        lens = np.ascontiguousarray(lengths, dtype=np.int64)
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 3 or lens.shape != (x.shape[0],):
            raise InputError(
                f"expected features[batch, time, features] and lengths[batch], "
                f"got shapes {x.shape} and {lens.shape}"
            )
        return self.run({md.FEATURES: x, md.LENGTHS: lens})

    def _windows(self, windows: Any) -> np.ndarray:
        """`windows` checked and cut to the model's window: [n, window, columns] float32."""
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
        return x

    def forecast(self, windows: Any, batch_size: int | None = None) -> list[Forecast]:
        """Forecasts for windows [n, time, columns] (or one [time, columns]) of raw values.

        Columns are `self.columns` in that order. The model was trained on `self.window` rows:
        a window needs at least that many, and only its last `self.window` rows are used
        (as `bilstm-run` does with a series); fewer rows raise `InputError`.
        """
        x = self._windows(windows)
        out: list[Forecast] = []
        size = self._batch(batch_size)
        for start in range(0, len(x), size):
            chunk = x[start : start + size]
            lens = np.full(len(chunk), chunk.shape[1], dtype=np.int64)
            values = self.run({md.FEATURES: chunk, md.LENGTHS: lens}, [md.FORECAST])[md.FORECAST]
            check_output(self, md.FORECAST, values, len(chunk), self.horizon)
            out.extend(Forecast(values=[float(v) for v in row]) for row in values)
        return out

    def residual_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-step mean and std of dev-set residuals (actual - forecast), for anomaly flags."""
        mean = np.asarray(self.metadata.require("residual_mean", list), dtype=np.float64)
        std = np.asarray(self.metadata.require("residual_std", list), dtype=np.float64)
        return mean, np.maximum(std, 1e-12)

    def predict(self, inputs: Any, batch_size: int | None = None, **options: Any) -> list[Any]:
        """`forecast`; takes no options."""
        no_options(self, options)
        if isinstance(inputs, str | bytes) or inputs is None:
            from bilstm.runtime.model import _not_a_list

            raise InputError(_not_a_list(inputs))
        return self.forecast(inputs, batch_size)

    # -- records ---------------------------------------------------------------------------

    def series_records(
        self, values: np.ndarray, rows: Sequence[int], opts: RunOptions
    ) -> list[dict[str, Any]]:
        """Forecast records for a series [n, columns]; `rows[i]` is the file line of row i.

        Without `opts.rolling`, one record: the forecast after the last window. With it, one
        record per window, with the actual values where the file has them and, with
        `opts.anomalies`, z-scores and flags from the dev-set residual statistics.
        """
        n = len(values)
        if n < self.window:
            raise InputError(
                f"the series has {n} rows, fewer than the model's window of "
                f"{self.window}; give at least {self.window} rows"
            )
        starts = window_starts(n, self.window, opts.rolling)
        target = values[:, self.columns.index(self.target)]
        stats = self.residual_stats() if opts.anomalies else None  # once, not per window
        step = max(opts.batch_size, 1) * 16
        records: list[dict[str, Any]] = []
        for begin in range(0, len(starts), step):
            part = starts[begin : begin + step]
            windows = np.stack([values[s : s + self.window] for s in part])
            for s, fc in zip(part, self.forecast(windows, opts.batch_size), strict=True):
                end = s + self.window
                records.append(self._record(rows[end - 1], target, end, fc, opts, stats))
        return records

    def _record(
        self,
        row: int,
        target: np.ndarray,
        end: int,
        fc: Forecast,
        opts: RunOptions,
        stats: tuple[np.ndarray, np.ndarray] | None,
    ) -> dict[str, Any]:
        """The record of the window ending before row `end` (file line `row`)."""
        rec: dict[str, Any] = {"row": row, "forecast": [round(v, 6) for v in fc.values]}
        if not opts.rolling:
            return rec
        actual = [
            round(float(target[end + h]), 6) if end + h < len(target) else None
            for h in range(self.horizon)
        ]
        rec["actual"] = actual
        if stats is not None:
            rec["zscores"], rec["anomalies"] = anomaly_scores(
                actual, fc.values, stats, opts.threshold
            )
        return rec

    def read_series(self, source: str) -> tuple[np.ndarray, list[int]]:
        """The model's columns from a CSV file (or `-`, stdin) as [rows, columns] and the
        file line of each row."""
        import tempfile

        from bilstm.core.datasets import read_series
        from bilstm.core.reader import STDIN

        if source == STDIN:
            with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as tmp:
                tmp.write(sys.stdin.buffer.read())
            path = Path(tmp.name)
        else:
            path = Path(source)
        try:
            series = read_series(path, self.columns)
        finally:
            if source == STDIN:
                path.unlink()
        columns = [np.asarray(series.columns[c], np.float32) for c in self.columns]
        return np.stack(columns, axis=1), series.lines

    def record_chunks(
        self, source: str, opts: RunOptions, reading: Reading
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        """The CSV is read whole (a series is small next to text files), then scored; with
        `opts.follow`, row by row as it arrives (`OnlineForecast`)."""
        if opts.follow:
            online = OnlineForecast(self, opts, source)
            batches = line_batches(
                source, reading.max_line_bytes, reading.chunk_size, reading.max_delay_ms
            )
            for lines in batches:
                records = online.records([online.line_row(line) for line in lines])
                yield records, len(records)
            return
        values, rows = self.read_series(source)
        records = self.series_records(values, rows, opts)
        yield records, len(records)

    def stream_records(
        self, batches: Iterable[list[Any]], opts: RunOptions
    ) -> Iterator[list[dict[str, Any]]]:
        """Online records (`OnlineForecast`) of rows as they arrive (`stream`): each row a
        mapping {column: number}, a sequence of numbers in `self.columns` order, or a CSV line
        (str or bytes; the first one is the header)."""
        online = OnlineForecast(self, opts, "stream")
        number = 0
        for batch in batches:
            rows = []
            for item in batch:
                number += 1
                rows.append(online.item_row(number, item))
            yield online.records(rows)

    def value_records(self, values: Sequence[Any], opts: RunOptions) -> list[dict[str, Any]]:
        """Records for a data-frame column of windows `[time >= window, columns]`; a null,
        non-numeric, short or non-finite window gets an error record."""
        records: list[dict[str, Any]] = [{} for _ in values]
        groups: dict[tuple[int, ...], list[int]] = {}
        arrays: list[np.ndarray | None] = []
        for i, value in enumerate(values):
            x, error = self._window_value(value)
            arrays.append(x)
            if x is None:
                records[i] = {"error": error}
            else:
                groups.setdefault(x.shape, []).append(i)
        for rows in groups.values():
            windows = np.stack([arrays[r] for r in rows])  # type: ignore[misc]
            for r, fc in zip(rows, self.forecast(windows, opts.batch_size), strict=True):
                records[r] = {"forecast": [round(v, 6) for v in fc.values]}
        return records

    def _window_value(self, value: Any) -> tuple[np.ndarray | None, str]:
        """A data-frame value as a window, or None and the reason it is not one."""
        if value is None:
            return None, "no window (the value is null)"
        try:
            x = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            return None, f"not a numeric window: {exc}"
        if x.ndim != 2 or x.shape[1] != len(self.columns) or x.shape[0] < self.window:
            return None, (
                f"expected a window [time >= {self.window}, {len(self.columns)}] with columns "
                f"{self.columns}, got shape {list(x.shape)}"
            )
        if not np.isfinite(x).all():
            return None, "the window contains NaN or infinite values"
        return x, ""

    def tsv_columns(self, opts: RunOptions) -> list[str]:
        if opts.follow:
            checks = ["actual", "expected", "zscores", "anomalies", "anomaly"]
            return ["row", "forecast", *(checks if opts.anomalies else []), "error"]
        actual = ["actual"] if opts.rolling else []
        flags = ["zscores", "anomalies"] if opts.anomalies else []
        return ["row", "forecast", *actual, *flags, "error"]

    def frame_column_names(self, probabilities: bool, as_json: bool) -> list[str]:
        return ["forecast"]

    def frame_columns(
        self, records: Sequence[dict[str, Any]], probabilities: bool, as_json: bool
    ) -> dict[str, np.ndarray]:
        if as_json:
            return {"forecast": json_column(records, "forecast")}
        return {"forecast": object_column([r.get("forecast") for r in records])}

    def evaluate(
        self, data: Path, batch_size: int, tag_column: str = "upos", top_k: int = DEFAULT_TOP_K
    ) -> dict[str, Any]:
        """MAE/RMSE over every window of the file, and the same for the naive baselines."""
        from bilstm.core.errors import DataError
        from bilstm.core.metrics import error_metrics, forecast_baselines

        values, _ = self.read_series(str(data))
        ends = np.arange(self.window, len(values) - self.horizon + 1)
        if len(ends) == 0:
            raise DataError(
                f"{data}: {len(values)} rows are fewer than window {self.window} + "
                f"horizon {self.horizon}"
            )
        windows = np.stack([values[e - self.window : e] for e in ends])
        pred = np.asarray([f.values for f in self.forecast(windows, batch_size)])
        target = values[:, self.columns.index(self.target)].astype(np.float64)
        actual = target[ends[:, None] + np.arange(self.horizon)[None, :]]
        metrics: dict[str, Any] = error_metrics(actual, pred) | {"windows": len(ends)}
        season = self.metadata.task_config.get("season")
        for name, base in forecast_baselines(target, ends, self.horizon, season).items():
            metrics |= {f"baseline_{name}_{k}": v for k, v in error_metrics(actual, base).items()}
        return metrics


Row = tuple[int, "np.ndarray | str | None"]
"""An input row of an online forecast: its number and values, an error message, or None
(a blank line or the header)."""


class OnlineForecast:
    """Forecasting as rows arrive, the way an edge anomaly detector runs.

    When row t arrives (and `window` rows are there), the forecast of the next `horizon`
    rows is emitted at once: `{"row", "forecast"}`. With `anomalies`, when a row arrives
    that earlier forecasts covered, it is checked against them: `{"row", "actual",
    "expected", "zscores", "anomalies", "anomaly"}`, lists indexed by step (item h-1: the
    forecast made h rows earlier; None where there was none), z-scores and flags from the
    dev-set residuals as `--rolling --anomalies` computes them. A bad row (missing or
    non-numeric cell, wrong column count, unreadable line) gets `{"row", "error"}` and is
    left out of the series, as a blank line is. Only the last `window` rows and `horizon`
    forecasts are kept.
    """

    def __init__(self, model: Forecaster, opts: RunOptions, source: str) -> None:
        self.model = model
        self.opts = opts
        self.source = source
        self.header: list[str] | None = None
        self.positions: list[int] = []
        self.target = model.columns.index(model.target)
        self.recent: deque[np.ndarray] = deque(maxlen=model.window)
        self.made: deque[list[float] | None] = deque(maxlen=model.horizon)
        self.stats = model.residual_stats() if opts.anomalies else None

    # -- rows in ---------------------------------------------------------------------------

    def line_row(self, line: Line) -> Row:
        """A CSV line of the feed (the first non-blank one is the header, checked as
        `read_series` checks it: a header without the model's columns stops the run)."""
        if line.error is not None:
            if self.header is None:
                raise DataError(f"{self.source}:{line.number}: {line.error}; expected a header")
            return line.number, line.error
        return self._csv_row(line.number, line.text or "")

    def item_row(self, number: int, item: Any) -> Row:
        """A `stream` input: a CSV line (str/bytes), a mapping or a sequence of numbers."""
        if isinstance(item, bytes | bytearray):
            try:
                item = bytes(item).decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                return number, f"not valid UTF-8 (byte {exc.start}: {exc.reason})"
        if isinstance(item, str):
            text = item.removesuffix("\n").removesuffix("\r")
            return self._csv_row(number, text.removeprefix("\ufeff") if number == 1 else text)
        columns = self.model.columns
        if isinstance(item, Mapping):
            missing = [c for c in columns if c not in item]
            if missing:
                return number, f"columns {missing} missing (the model reads {columns})"
            return self._values(number, [item[c] for c in columns])
        if isinstance(item, Sequence | np.ndarray) and len(item) == len(columns):
            return self._values(number, list(item))
        return number, (
            f"expected a mapping of {columns}, a sequence of {len(columns)} numbers or a CSV "
            f"line, got {type(item).__name__}"
        )

    def _csv_row(self, number: int, text: str) -> Row:
        import csv

        if not text.strip():
            return number, None
        try:
            cells = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            if self.header is None:
                raise DataError(f"{self.source}:{number}: malformed CSV header ({exc})") from None
            return number, f"malformed CSV line ({exc})"
        if self.header is None:
            self._set_header([c.strip() for c in cells])
            return number, None
        if all(not cell.strip() for cell in cells):
            return number, None
        if len(cells) != len(self.header):
            return number, f"expected {len(self.header)} columns, found {len(cells)}"
        return self._values(number, [cells[i].strip() for i in self.positions])

    def _set_header(self, header: list[str]) -> None:
        missing = [c for c in self.model.columns if c not in header]
        if missing:
            raise DataError(f"{self.source}: columns {missing} not in the header {header}")
        self.header = header
        self.positions = [header.index(c) for c in self.model.columns]

    def _values(self, number: int, cells: list[Any]) -> Row:
        import math

        values = []
        for column, cell in zip(self.model.columns, cells, strict=True):
            try:
                if isinstance(cell, bool):
                    raise TypeError
                value = float(cell)
            except (TypeError, ValueError):
                shown = "a missing value" if cell is None or cell == "" else repr(cell)
                return number, f"column '{column}' has {shown}, expected a number"
            if not math.isfinite(value):
                return number, f"column '{column}' is {cell}, expected a finite number"
            values.append(value)
        return number, np.asarray(values, dtype=np.float32)

    # -- records out -----------------------------------------------------------------------

    def records(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        """The records of rows that arrived together, in order; the forecasts of all their
        windows are computed in one batch first."""
        window = self.model.window
        held = list(self.recent)
        values = [v for _, v in rows if isinstance(v, np.ndarray)]
        series = held + values
        ends = [len(held) + i for i in range(len(values)) if len(held) + i + 1 >= window]
        forecasts: Iterator[list[float]] = iter(())
        if ends:
            windows = np.stack([np.stack(series[e + 1 - window : e + 1]) for e in ends])
            made = self.model.forecast(windows, self.opts.batch_size)
            forecasts = iter([f.values for f in made])
        out: list[dict[str, Any]] = []
        for number, value in rows:
            if value is None:
                continue
            if isinstance(value, str):
                out.append({"row": number, "error": value})
                continue
            if self.opts.anomalies and (check := self._check(number, value)) is not None:
                out.append(check)
            # The window ending at this row is full: its forecast is the next one computed.
            forecast = next(forecasts) if len(self.recent) + 1 >= window else None
            self.recent.append(value)
            self.made.append(forecast)
            if forecast is not None:
                out.append({"row": number, "forecast": [round(v, 6) for v in forecast]})
        return out

    def _check(self, number: int, value: np.ndarray) -> dict[str, Any] | None:
        """The check of an arrived row against the forecasts made for it, if any."""
        assert self.stats is not None
        made = list(self.made)
        expected = [
            made[-h][h - 1] if h <= len(made) and made[-h] is not None else None  # type: ignore[index]
            for h in range(1, self.model.horizon + 1)
        ]
        if all(e is None for e in expected):
            return None
        actual = round(float(value[self.target]), 6)  # as --rolling computes its z-scores
        z, flags = anomaly_scores(
            [actual] * len(expected), expected, self.stats, self.opts.threshold
        )
        return {
            "row": number,
            "actual": actual,
            "expected": [None if e is None else round(e, 6) for e in expected],
            "zscores": z,
            "anomalies": flags,
            "anomaly": any(f for f in flags if f),
        }
