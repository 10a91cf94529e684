"""Open Inference Protocol (KServe v2 / Triton HTTP) tensors: model metadata from the model
file, request tensors in JSON or the binary tensor extension, and response tensors.

Binary tensor extension (what `tritonclient.http` sends by default): the body is the JSON
header (its length in the `Inference-Header-Content-Length` header) followed by each binary
input's bytes in input order, each input's `parameters.binary_data_size` giving its length.
BYTES tensors in binary are, per element, a 4-byte little-endian length and the bytes.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from bilstm.core.errors import InputError

# ONNX Runtime's type names -> OIP datatypes and numpy dtypes
ORT_TYPES: dict[str, tuple[str, Any]] = {
    "tensor(float)": ("FP32", np.float32),
    "tensor(double)": ("FP64", np.float64),
    "tensor(float16)": ("FP16", np.float16),
    "tensor(int64)": ("INT64", np.int64),
    "tensor(int32)": ("INT32", np.int32),
    "tensor(int16)": ("INT16", np.int16),
    "tensor(int8)": ("INT8", np.int8),
    "tensor(uint8)": ("UINT8", np.uint8),
    "tensor(bool)": ("BOOL", np.bool_),
    "tensor(string)": ("BYTES", object),
}
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as OIP metadata describes it (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    dtype: Any
    axes: tuple[str | None, ...] = ()
    """The graph's name of each variable axis ("batch", "time"; None: unnamed), "" for a
    fixed one."""

    @property
    def batched(self) -> bool:
        """Whether the first axis is the batch (a variable axis), so rows can be stacked
        along it; an output such as a standalone model's `classes` is the same for all."""
        return bool(self.shape) and self.shape[0] == -1

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def tensor_specs(args: list[Any]) -> list[TensorSpec]:
    """`session.get_inputs()`/`get_outputs()` as tensor specs (symbolic axes are -1)."""
    specs = []
    for arg in args:
        datatype, dtype = ORT_TYPES.get(arg.type, (arg.type, None))
        fixed = [isinstance(d, int) and d >= 0 for d in arg.shape]
        shape = tuple(d if ok else -1 for d, ok in zip(arg.shape, fixed, strict=True))
        axes = tuple(
            "" if ok else (d if isinstance(d, str) and d else None)
            for d, ok in zip(arg.shape, fixed, strict=True)
        )
        specs.append(TensorSpec(arg.name, datatype, shape, dtype, axes))
    return specs


def stackable(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> bool:
    """Whether requests' rows may be stacked into one run and their outputs split back
    unchanged: every input has the batch first, and every variable output axis after the
    batch is one the inputs have too (so requests merged by equal input shapes get the
    sizes they would alone). A standalone tagger's `time` comes from the longest text of
    the run, so its requests are run one by one."""
    if not inputs or not all(s.batched for s in inputs):
        return False
    known = {a for s in inputs for a in s.axes[1:] if a}
    for spec in outputs:
        rest = spec.axes[1:] if spec.batched else spec.axes
        if any(a is None or (a and a not in known) for a in rest):
            return False
    return True


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header of an infer request and the binary data after it."""
    if header_length is None:
        end = len(body)
    else:
        try:
            end = int(header_length)
        except ValueError:
            raise InputError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 <= end <= len(body):
            raise InputError(f"{HEADER_LENGTH} {end} is outside the body of {len(body)} bytes")
    request = json.loads(body[:end])
    if not isinstance(request, dict):
        raise InputError("the infer request must be a JSON object")
    return request, body[end:]


def _shape(tensor: dict[str, Any], spec: TensorSpec, max_elements: int) -> tuple[int, ...]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        type(d) is int and d >= 0
        for d in shape  # bool is not a dimension
    ):
        raise InputError(f"input {spec.name!r}: shape must be a list of integers >= 0")
    if len(shape) != len(spec.shape):
        raise InputError(
            f"input {spec.name!r}: expected {len(spec.shape)} dimensions {list(spec.shape)}, "
            f"got shape {shape}"
        )
    for want, got in zip(spec.shape, shape, strict=True):
        if want >= 0 and want != got:
            raise InputError(f"input {spec.name!r}: expected shape {list(spec.shape)}, got {shape}")
    if math.prod(shape) > max_elements:
        raise InputError(f"input {spec.name!r}: shape {shape} has too many elements")
    return tuple(shape)


def _bytes_elements(raw: bytes, count: int, name: str) -> np.ndarray:
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(raw):
            raise InputError(f"input {name!r}: binary BYTES data ends inside element {i}")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise InputError(f"input {name!r}: binary BYTES element {i} runs past the data")
        out[i] = _text(raw[pos : pos + size], name)
        pos += size
    if pos != len(raw):
        raise InputError(f"input {name!r}: {len(raw) - pos} bytes left after {count} elements")
    return out


def _text(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"input {name!r}: a BYTES element is not UTF-8 ({exc.reason})") from None


def _json_data(data: Any, spec: TensorSpec, count: int) -> np.ndarray:
    if not isinstance(data, list):
        raise InputError(f"input {spec.name!r}: data must be a (flat or nested) JSON list")
    flat = _flatten(data)
    if len(flat) != count:
        raise InputError(f"input {spec.name!r}: shape holds {count} elements, data has {len(flat)}")
    if spec.dtype is object:
        if not all(isinstance(v, str) for v in flat):
            raise InputError(f"input {spec.name!r}: BYTES data must be strings")
        out = np.empty(count, dtype=object)
        out[:] = flat
        return out
    kind = np.dtype(spec.dtype).kind
    for v in flat:
        ok = (
            type(v) is bool
            if kind == "b"
            else type(v) is int
            if kind in "iu"
            else type(v) in (int, float)
        )
        if not ok:
            raise InputError(
                f"input {spec.name!r}: {spec.datatype} data cannot hold {json.dumps(v)[:40]}"
            )
    try:
        return np.asarray(flat, dtype=spec.dtype)
    except OverflowError:
        raise InputError(f"input {spec.name!r}: a value is out of {spec.datatype} range") from None


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def decode_inputs(
    request: dict[str, Any], binary: bytes, specs: list[TensorSpec], max_elements: int
) -> dict[str, np.ndarray]:
    """The request's input tensors as numpy arrays, checked against the model's inputs."""
    tensors = request.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InputError("'inputs' must be a non-empty list of tensors")
    by_name = {s.name: s for s in specs}
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in tensors:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise InputError("each input must be an object with a 'name'")
        name = tensor["name"]
        spec = by_name.get(name)
        if spec is None:
            raise InputError(f"unknown input {name!r}; the model's inputs are {list(by_name)}")
        if name in feeds:
            raise InputError(f"input {name!r} is given twice")
        if tensor.get("datatype") != spec.datatype:
            raise InputError(
                f"input {name!r}: datatype must be {spec.datatype}, got {tensor.get('datatype')!r}"
            )
        shape = _shape(tensor, spec, max_elements)
        count = math.prod(shape)
        params = tensor.get("parameters") or {}
        if not isinstance(params, dict):
            raise InputError(f"input {name!r}: parameters must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InputError(f"input {name!r}: binary_data_size {size!r} is past the body")
            raw = binary[offset : offset + size]
            offset += size
            if spec.dtype is object:
                array = _bytes_elements(raw, count, name)
            else:
                if size != count * np.dtype(spec.dtype).itemsize:
                    raise InputError(
                        f"input {name!r}: {size} bytes of binary data for shape {list(shape)}"
                    )
                array = np.frombuffer(raw, dtype=np.dtype(spec.dtype).newbyteorder("<"))
                array = array.astype(spec.dtype)
        else:
            array = _json_data(tensor.get("data"), spec, count)
        feeds[name] = array.reshape(shape)
    if offset != len(binary):
        raise InputError(f"{len(binary) - offset} bytes of binary data belong to no input")
    missing = [n for n in by_name if n not in feeds]
    if missing:
        raise InputError(f"missing inputs {missing}; the model takes {list(by_name)}")
    return feeds


def requested_outputs(
    request: dict[str, Any], specs: list[TensorSpec]
) -> tuple[list[str], dict[str, bool]]:
    """Output names to compute and, per name, whether it goes back as binary data."""
    names = [s.name for s in specs]
    params = request.get("parameters") or {}
    if not isinstance(params, dict):
        raise InputError("parameters must be an object")
    default_binary = params.get("binary_data_output") is True
    outputs = request.get("outputs")
    if outputs is None:
        return names, dict.fromkeys(names, default_binary)
    if not isinstance(outputs, list) or not outputs:
        raise InputError("'outputs' must be a non-empty list")
    binary: dict[str, bool] = {}
    for out in outputs:
        if not isinstance(out, dict) or out.get("name") not in names:
            raise InputError(f"each output must name one of the model's outputs {names}")
        out_params = out.get("parameters") or {}
        if not isinstance(out_params, dict):
            raise InputError("output parameters must be an object")
        binary[out["name"]] = out_params.get("binary_data", default_binary) is True
    return list(binary), binary


def encode_outputs(
    model_name: str,
    request_id: Any,
    values: dict[str, np.ndarray],
    specs: list[TensorSpec],
    binary: dict[str, bool],
) -> tuple[bytes, int | None]:
    """The response body and, when some output is binary, the JSON header's length."""
    datatypes = {s.name: s.datatype for s in specs}
    outputs = []
    blobs: list[bytes] = []
    for name, value in values.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatypes[name],
            "shape": list(value.shape),
        }
        if binary.get(name):
            if value.dtype == object:
                blob = b"".join(
                    struct.pack("<I", len(b)) + b
                    for b in (str(v).encode("utf-8") for v in value.ravel())
                )
            else:
                blob = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = value.ravel().tolist()
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": "1"}
    if isinstance(request_id, str) and request_id:
        response["id"] = request_id
    response["outputs"] = outputs
    header = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
