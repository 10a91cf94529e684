"""Generic mode: any ONNX model without bilstm metadata, tensors in and tensors out.

Inputs come from `.npz` (arrays by input name), `.npy` (the single input) or `.json` (an object
of input name -> nested lists). Each array is cast to the dtype the graph declares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bilstm.core.errors import InputError

SUFFIXES = (".npz", ".npy", ".json")
_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def describe(session: ort.InferenceSession) -> dict[str, Any]:
    """Inputs and outputs of a session: name -> {type, shape}."""
    return {
        "inputs": {i.name: {"type": i.type, "shape": i.shape} for i in session.get_inputs()},
        "outputs": {o.name: {"type": o.type, "shape": o.shape} for o in session.get_outputs()},
    }


def load_tensors(path: Path, session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """Read input tensors for `session` from a .npz/.npy/.json file, cast to graph dtypes."""
    inputs = {i.name: i for i in session.get_inputs()}
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"{path}: no such input file")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                raw: dict[str, Any] = {k: data[k] for k in data.files}
        elif suffix == ".npy":
            if len(inputs) != 1:
                raise InputError(
                    f"{path}: a .npy file holds one array but the model has "
                    f"{len(inputs)} inputs {sorted(inputs)}; use .npz or .json"
                )
            raw = {next(iter(inputs)): np.load(path, allow_pickle=False)}
        elif suffix == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise InputError(f"{path}: expected a JSON object of input name -> array")
            raw = doc
        else:
            raise InputError(f"{path}: generic mode reads {', '.join(SUFFIXES)} files")
    except (OSError, ValueError) as exc:  # numpy raises ValueError for pickled/corrupt files
        raise InputError(f"{path}: cannot read tensors ({exc})") from exc
    missing = sorted(set(inputs) - set(raw))
    extra = sorted(set(raw) - set(inputs))
    if missing or extra:
        raise InputError(
            f"{path}: model inputs are {sorted(inputs)}; missing {missing}, unknown {extra}"
        )
    feeds = {}
    for name, value in raw.items():
        dtype = _DTYPES.get(inputs[name].type)
        if dtype is None:
            raise InputError(f"input '{name}' has type {inputs[name].type}, not supported here")
        try:
            arr: np.ndarray = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{path}: input '{name}' cannot be read as {inputs[name].type} ({exc})"
            ) from exc
        shape = inputs[name].shape
        if len(shape) != arr.ndim or any(
            isinstance(d, int) and d != a for d, a in zip(shape, arr.shape, strict=False)
        ):
            raise InputError(
                f"{path}: input '{name}' has shape {list(arr.shape)}, the model expects {shape}"
            )
        feeds[name] = arr
    return feeds


def run_generic(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """All outputs of the session for `feeds`."""
    names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, feeds)
    except Exception as exc:  # ORT raises its own exception types for bad shapes/values
        raise InputError(
            f"ONNX Runtime rejected the inputs: {' '.join(str(exc).split())[:300]}"
        ) from exc
    return dict(zip(names, values, strict=True))


def to_json(outputs: dict[str, np.ndarray]) -> str:
    """Outputs as one JSON object: name -> {dtype, shape, data}."""
    return json.dumps(
        {
            k: {"dtype": str(v.dtype), "shape": list(v.shape), "data": v.tolist()}
            for k, v in outputs.items()
        }
    )
