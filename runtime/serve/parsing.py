"""Request bodies checked and turned into work: JSON, the predict endpoint's `parameters`,
OIP tensors. Every refusal is an `HTTPError` answered as one line of JSON."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import numpy as np

from bilstm.core.reader import DEFAULT_MAX_LINE_BYTES
from bilstm.runtime import metadata as md
from bilstm.runtime.serve.scoring import ServedModel, scoring_batch
from bilstm.runtime.taskspec import RunOptions

# Parameters of the predict endpoint: the per-record options of `bilstm-run` (each applies to
# the models whose TaskSpec lists it). Series options read a whole CSV series; the endpoint
# scores single windows, so they are refused with a reason.
RECORD_PARAMETERS: dict[str, type] = {"top_k": int, "probabilities": bool, "tokenize": str}
SERIES_PARAMETERS = ("rolling", "anomalies", "threshold")


class HTTPError(Exception):
    """An error answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(message: str) -> bytes:
    """The one-line JSON body of an error (whitespace folded, at most 1000 characters)."""
    return json.dumps({"error": " ".join(message.split())[:1000]}).encode("utf-8")


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise HTTPError(400, "the body's JSON is nested too deeply") from None


def predict_inputs(data: Any, max_items: int) -> list[Any]:
    """The `inputs` list of a predict body, checked (the object's shape, not the items:
    a bad item becomes an error record)."""
    if not isinstance(data, dict):
        raise HTTPError(400, 'the body must be a JSON object {"inputs": [...]}')
    unknown = sorted(set(data) - {"inputs", "parameters"})
    if unknown:
        raise HTTPError(400, f"unknown fields {unknown}; expected 'inputs' and 'parameters'")
    inputs = data.get("inputs")
    if not isinstance(inputs, list):
        raise HTTPError(400, "'inputs' must be a JSON list of inputs (texts or windows)")
    if not inputs:
        raise HTTPError(400, "'inputs' is empty; give at least one input")
    if len(inputs) > max_items:
        raise HTTPError(413, f"{len(inputs)} inputs in one request, over --max-items {max_items}")
    return inputs


def run_options(served: ServedModel, parameters: Any) -> RunOptions:
    """The predict request's `parameters` as `RunOptions` (unknown or inapplicable: 400)."""
    if (parameters is None or parameters == {}) and served.default_options is not None:
        return served.default_options
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise HTTPError(400, "'parameters' must be a JSON object")
    model = served.model
    applies = sorted(p for p in RECORD_PARAMETERS if p in model.SPEC.run_options)
    chosen: dict[str, Any] = {}
    for name, value in parameters.items():
        if name in SERIES_PARAMETERS:
            raise HTTPError(
                400,
                f"parameter {name!r} scores a whole series (bilstm-run on a CSV); this "
                "endpoint forecasts each window given",
            )
        if name not in applies:
            raise HTTPError(
                400,
                f"parameter {name!r} does not apply to model {served.name!r} "
                f"({model.task}); it takes {applies or 'no parameters'}",
            )
        kind = RECORD_PARAMETERS[name]
        if type(value) is not kind or (isinstance(value, int) and kind is int and value < 1):
            raise HTTPError(400, f"parameter {name!r} must be a {kind.__name__}, got {value!r}")
        chosen[name] = value
    names = {f.name for f in fields(RunOptions)}
    assert set(chosen) <= names
    batch = scoring_batch(model, served.mergeable)
    return RunOptions(batch, max_text_bytes=DEFAULT_MAX_LINE_BYTES, **chosen)


def check_feeds(feeds: dict[str, np.ndarray], max_items: int) -> int:
    """The rows of an infer request, its tensors checked where ONNX Runtime would misbehave
    (empty axes crash some kernels; lengths outside 1..time give NaN or errors)."""
    rows = {v.shape[0] for v in feeds.values() if v.ndim}
    if len(rows) != 1:
        raise HTTPError(400, f"inputs disagree on the batch size: {sorted(rows)}")
    count = int(next(iter(rows)))
    if count > max_items:
        raise HTTPError(413, f"{count} rows in one request, over --max-items {max_items}")
    for name, value in feeds.items():
        if 0 in value.shape:
            raise HTTPError(400, f"input {name!r} has an empty axis: shape {list(value.shape)}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise HTTPError(400, f"input {name!r} holds NaN or infinite values")
    lengths = feeds.get(md.LENGTHS)
    if lengths is not None:
        times = [v.shape[1] for k, v in feeds.items() if k != md.LENGTHS and v.ndim >= 2]
        limit = min(times) if times else None
        if lengths.min() < 1 or (limit is not None and lengths.max() > limit):
            raise HTTPError(400, f"{md.LENGTHS} must be within 1..{limit}")
    return count
