"""Look inside an untrusted `.onnx` file before ONNX Runtime opens it, without the onnx package.

A model file is a protobuf `ModelProto`. This module walks its wire format with the standard
library only, over an `mmap` (a huge file is never read into memory, and tensor bytes are
skipped by their length, never copied), and refuses with `ModelLoadError`, naming the file,
what is wrong and what to do:

- a file that is not a protobuf `ModelProto` (text, random bytes, a truncated copy);
- a tensor whose external data file is given by an absolute path, a path with `..`, a path
  that leads out of the model's folder through a symbolic link, or that does not exist (the
  known path-traversal class: a model must never make the runtime read arbitrary files);
- a node whose operator domain this runtime does not run (custom operators need a library of
  native code that the runtime never loads), unless the model itself defines that function.

The walk covers the main graph, every subgraph held in node attributes (`If`, `Loop`,
`Scan`), the model-local functions and the training-info graphs. Field numbers are those of
onnx/onnx.proto (checked against ONNX 1.23).
"""

from __future__ import annotations

import mmap
import ntpath
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bilstm.core.errors import ModelLoadError

ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
"""Operator domains the runtime runs: standard ONNX, ONNX-ML and ONNX Runtime's contrib ops."""
MAX_DEPTH = 64
"""Deepest nesting of graphs in attributes accepted (ONNX Runtime's own limit is similar)."""
MAX_MODEL_FIELDS = 100_000
"""Most top-level ModelProto fields accepted: a real model has a few dozen (a file of millions
of tiny junk fields would otherwise take seconds to walk)."""

# Wire types.
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

# ModelProto
_MODEL_IR_VERSION = 1
_MODEL_GRAPH = 7
_MODEL_TRAINING_INFO = 20
_MODEL_FUNCTIONS = 25
_MODEL_STRINGS = {2: "producer_name", 3: "producer_version", 4: "domain", 6: "doc_string"}
_MODEL_METADATA_PROPS = 14
# GraphProto
_GRAPH_NODE = 1
_GRAPH_STRINGS = {2: "name", 10: "doc_string"}
_GRAPH_INPUT = 11
_GRAPH_OUTPUT = 12
# ValueInfoProto
_VALUE_NAME = 1
_VALUE_TYPE = 2
# TypeProto and its parts: (message, field) -> what the field holds
_TYPE_TENSOR, _TYPE_SEQUENCE, _TYPE_MAP, _TYPE_SPARSE, _TYPE_OPTIONAL = 1, 4, 5, 8, 9
_TYPE_DENOTATION = 6
_TENSOR_TYPE_ELEM = 1
_TENSOR_TYPE_SHAPE = 2
_STRING_ELEM = 8  # TensorProto.DataType.STRING
_SHAPE_DIM = 1
_DIM_PARAM, _DIM_DENOTATION = 2, 3
_GRAPH_INITIALIZER = 5
_GRAPH_SPARSE_INITIALIZER = 15
# NodeProto
_NODE_INPUT = 1
_NODE_NAME = 3
_NODE_OP_TYPE = 4
_NODE_ATTRIBUTE = 5
_NODE_DOMAIN = 7
# AttributeProto
_ATTR_T = 5
_ATTR_G = 6
_ATTR_TENSORS = 10
_ATTR_GRAPHS = 11
_ATTR_SPARSE_TENSOR = 22
_ATTR_SPARSE_TENSORS = 23
# TensorProto
_TENSOR_DIMS = 1
_TENSOR_NAME = 8
_TENSOR_EXTERNAL_DATA = 13
_TENSOR_DATA_LOCATION = 14
_EXTERNAL = 1
# SparseTensorProto
_SPARSE_VALUES = 1
_SPARSE_INDICES = 2
# StringStringEntryProto
_ENTRY_KEY = 1
_ENTRY_VALUE = 2
# FunctionProto
_FUNCTION_NAME = 1
_FUNCTION_NODE = 7
_FUNCTION_DOMAIN = 10
_FUNCTION_ATTRIBUTE_PROTO = 11
# TrainingInfoProto
_TRAINING_INITIALIZATION = 1
_TRAINING_ALGORITHM = 2

_FIX = "re-export the model, or copy the complete file again"


class _Malformed(Exception):
    """The bytes are not a well-formed protobuf message (internal; becomes ModelLoadError)."""

    def __init__(self, reason: str, offset: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


@dataclass
class ModelSummary:
    """What the walk saw (for tests and diagnostics)."""

    ir_version: int = 0
    nodes: int = 0
    tensors: int = 0
    graphs: int = 0
    functions: int = 0
    domains: set[str] = field(default_factory=set)
    external_files: set[str] = field(default_factory=set)
    # Main graph: rows of the initializer table a Gather reads, by the name of its indices
    # (e.g. "input_ids" -> embedding rows). CUDA's Gather does not bounds-check, so the
    # runtime compares these with the vocabulary sizes the metadata promises.
    gathered_rows: dict[str, int] = field(default_factory=dict)
    # Main graph takes string tensors (a --with-tokenizer model): ORT cannot move them to a GPU
    string_inputs: bool = False


def _varint(buf: mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    """Decode a base-128 varint at `pos`; returns (value, next position)."""
    result = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise _Malformed("a number runs past the end of its message", start)
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("a number is longer than 10 bytes", start)


def _fields(buf: mmap.mmap, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, a, b) of each field in buf[start:end].

    For varints `a` is the value; for the other wire types buf[a:b] holds the payload.
    """
    pos = start
    while pos < end:
        at = pos
        key = buf[pos]  # one-byte keys (fields 1..15) are the common case
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("a field has number 0", at)
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
            continue
        if wire == _LEN:
            size, pos = _varint(buf, pos, end)
        elif wire == _FIXED64:
            size = 8
        elif wire == _FIXED32:
            size = 4
        else:
            raise _Malformed(f"field {number} has wire type {wire}, which ONNX never uses", at)
        if size > end - pos:
            where = "the file" if end == len(buf) else "its message"
            raise _Malformed(
                f"field {number} is {size} bytes long but {where} ends {end - pos} bytes later",
                at,
            )
        yield number, wire, pos, pos + size
        pos += size


def _expect(wire: int, expected: int, number: int, message: str, at: int) -> None:
    if wire != expected:
        raise _Malformed(f"{message} field {number} has wire type {wire}, expected {expected}", at)


def _text(buf: mmap.mmap, a: int, b: int) -> str:
    return buf[a:b].decode("utf-8", "replace")


def _utf8(buf: mmap.mmap, a: int, b: int, what: str) -> str:
    """A string field that ONNX Runtime hands to Python: it must be valid UTF-8."""
    try:
        return buf[a:b].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Malformed(f"the string {what} is not valid UTF-8", a + exc.start) from None


def _show(text: str, limit: int = 80) -> str:
    """A quoted, escaped, shortened form of an untrusted string (keeps messages one line)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class _Walker:
    def __init__(self, path: Path, buf: mmap.mmap) -> None:
        self.path = path
        self.buf = buf
        self.folder = path.parent
        self.real_folder = os.path.realpath(self.folder)
        self.local_functions: set[tuple[str, str]] = set()
        self.summary = ModelSummary()

    def refuse(self, what: str) -> ModelLoadError:
        return ModelLoadError(f"{self.path}: {what}")

    # -- messages --------------------------------------------------------------------------

    def model(self) -> ModelSummary:
        buf = self.buf
        graphs: list[tuple[int, int]] = []
        functions: list[tuple[int, int]] = []
        training: list[tuple[int, int]] = []
        has_ir_version = False
        for count, (number, wire, a, b) in enumerate(_fields(buf, 0, len(buf))):
            if count >= MAX_MODEL_FIELDS:
                raise _Malformed(
                    f"the ModelProto has more than {MAX_MODEL_FIELDS} fields at its top level "
                    "(a model holds its graph, opset imports, metadata and functions there)",
                    a,
                )
            if number == _MODEL_IR_VERSION:
                _expect(wire, _VARINT, number, "ModelProto", b)
                has_ir_version = True
                self.summary.ir_version = a
            elif number == _MODEL_GRAPH:
                _expect(wire, _LEN, number, "ModelProto", b)
                graphs.append((a, b))
            elif number == _MODEL_FUNCTIONS:
                _expect(wire, _LEN, number, "ModelProto", b)
                functions.append((a, b))
            elif number == _MODEL_TRAINING_INFO:
                _expect(wire, _LEN, number, "ModelProto", b)
                training.append((a, b))
            elif number in _MODEL_STRINGS:
                _expect(wire, _LEN, number, "ModelProto", b)
                _utf8(buf, a, b, f"ModelProto.{_MODEL_STRINGS[number]}")
            elif number == _MODEL_METADATA_PROPS:
                _expect(wire, _LEN, number, "ModelProto", b)
                self.entry(a, b, "ModelProto.metadata_props")
        if not has_ir_version or not graphs:
            missing = "graph" if has_ir_version else "ir_version"
            raise _Malformed(f"the ModelProto field '{missing}' is missing", None)
        for a, b in functions:  # local functions first: nodes may call them
            self.function_name(a, b)
        for a, b in graphs:
            self.graph(a, b, 1, main=True)
        for a, b in functions:
            self.function(a, b)
        for a, b in training:
            for number, wire, c, d in _fields(buf, a, b):
                if number in (_TRAINING_INITIALIZATION, _TRAINING_ALGORITHM):
                    _expect(wire, _LEN, number, "TrainingInfoProto", d)
                    self.graph(c, d, 1)
        return self.summary

    def function_name(self, a: int, b: int) -> None:
        name = domain = ""
        for number, wire, c, d in _fields(self.buf, a, b):
            if number == _FUNCTION_NAME:
                _expect(wire, _LEN, number, "FunctionProto", d)
                name = _text(self.buf, c, d)
            elif number == _FUNCTION_DOMAIN:
                _expect(wire, _LEN, number, "FunctionProto", d)
                domain = _text(self.buf, c, d)
        self.local_functions.add((domain, name))
        self.summary.functions += 1

    def function(self, a: int, b: int) -> None:
        for number, wire, c, d in _fields(self.buf, a, b):
            if number == _FUNCTION_NODE:
                _expect(wire, _LEN, number, "FunctionProto", d)
                self.node(c, d, 1)
            elif number == _FUNCTION_ATTRIBUTE_PROTO:
                _expect(wire, _LEN, number, "FunctionProto", d)
                self.attribute(c, d, 1)

    def graph(self, a: int, b: int, depth: int, main: bool = False) -> None:
        if depth > MAX_DEPTH:
            raise self.refuse(
                f"graphs are nested more than {MAX_DEPTH} levels deep in node attributes; "
                "this is not a model bilstm or any usual exporter writes"
            )
        self.summary.graphs += 1
        rows: dict[str, int] = {}  # initializer name -> first dimension
        gathers: list[list[str]] = []
        for number, wire, c, d in _fields(self.buf, a, b):
            if number == _GRAPH_NODE:
                _expect(wire, _LEN, number, "GraphProto", d)
                op_type, inputs = self.node(c, d, depth)
                if main and op_type == "Gather" and len(inputs) == 2:
                    gathers.append(inputs)
            elif number == _GRAPH_INITIALIZER:
                _expect(wire, _LEN, number, "GraphProto", d)
                name, first = self.tensor(c, d)
                if main and first is not None:
                    rows[name] = first
            elif number == _GRAPH_SPARSE_INITIALIZER:
                _expect(wire, _LEN, number, "GraphProto", d)
                self.sparse_tensor(c, d)
            elif main and number in _GRAPH_STRINGS:
                _expect(wire, _LEN, number, "GraphProto", d)
                _utf8(self.buf, c, d, f"GraphProto.{_GRAPH_STRINGS[number]}")
            elif main and number in (_GRAPH_INPUT, _GRAPH_OUTPUT):
                _expect(wire, _LEN, number, "GraphProto", d)
                if self.value_info(c, d) == _STRING_ELEM and number == _GRAPH_INPUT:
                    self.summary.string_inputs = True
        for table, indices in gathers:
            if table in rows:
                self.summary.gathered_rows[indices] = rows[table]

    def value_info(self, a: int, b: int) -> int | None:
        """A graph input or output: its name and shape strings reach Python through ORT.
        Returns its tensor element type, if it is a tensor."""
        elem = None
        for number, wire, c, d in _fields(self.buf, a, b):
            if number == _VALUE_NAME:
                _expect(wire, _LEN, number, "ValueInfoProto", d)
                _utf8(self.buf, c, d, "ValueInfoProto.name")
            elif number == _VALUE_TYPE:
                _expect(wire, _LEN, number, "ValueInfoProto", d)
                elem = self.type_proto(c, d, 0)
        return elem

    def type_proto(self, a: int, b: int, depth: int) -> int | None:
        """Check a type; returns the element type of a (dense) tensor type."""
        elem = None
        if depth > MAX_DEPTH:
            raise _Malformed(f"a type is nested more than {MAX_DEPTH} levels deep", a)
        for number, wire, c, d in _fields(self.buf, a, b):
            if number == _TYPE_DENOTATION:
                _expect(wire, _LEN, number, "TypeProto", d)
                _utf8(self.buf, c, d, "TypeProto.denotation")
            elif number in (_TYPE_TENSOR, _TYPE_SPARSE):
                _expect(wire, _LEN, number, "TypeProto", d)
                for n2, w2, e, f in _fields(self.buf, c, d):
                    if n2 == _TENSOR_TYPE_ELEM and w2 == _VARINT and number == _TYPE_TENSOR:
                        elem = e
                    elif n2 == _TENSOR_TYPE_SHAPE:
                        _expect(w2, _LEN, n2, "TypeProto.Tensor", f)
                        self.shape(e, f)
            elif number in (_TYPE_SEQUENCE, _TYPE_OPTIONAL, _TYPE_MAP):
                _expect(wire, _LEN, number, "TypeProto", d)
                inner = 2 if number == _TYPE_MAP else 1  # map: value_type; else elem_type
                for n2, w2, e, f in _fields(self.buf, c, d):
                    if n2 == inner:
                        _expect(w2, _LEN, n2, "TypeProto", f)
                        self.type_proto(e, f, depth + 1)
        return elem

    def shape(self, a: int, b: int) -> None:
        for number, wire, c, d in _fields(self.buf, a, b):
            if number == _SHAPE_DIM:
                _expect(wire, _LEN, number, "TensorShapeProto", d)
                for n2, w2, e, f in _fields(self.buf, c, d):
                    if n2 in (_DIM_PARAM, _DIM_DENOTATION):
                        _expect(w2, _LEN, n2, "TensorShapeProto.Dimension", f)
                        _utf8(self.buf, e, f, "TensorShapeProto.Dimension.dim_param")

    def node(self, a: int, b: int, depth: int) -> tuple[str, list[str]]:
        """Check a node; returns its operator type and input names."""
        self.summary.nodes += 1
        op_type = domain = name = ""
        inputs: list[str] = []
        attributes: list[tuple[int, int]] = []
        for number, wire, c, d in _fields(self.buf, a, b):
            if number == _NODE_INPUT:
                _expect(wire, _LEN, number, "NodeProto", d)
                inputs.append(_text(self.buf, c, d))
            elif number == _NODE_OP_TYPE:
                _expect(wire, _LEN, number, "NodeProto", d)
                op_type = _text(self.buf, c, d)
            elif number == _NODE_DOMAIN:
                _expect(wire, _LEN, number, "NodeProto", d)
                domain = _text(self.buf, c, d)
            elif number == _NODE_NAME:
                _expect(wire, _LEN, number, "NodeProto", d)
                name = _text(self.buf, c, d)
            elif number == _NODE_ATTRIBUTE:
                _expect(wire, _LEN, number, "NodeProto", d)
                attributes.append((c, d))
        self.summary.domains.add(domain)
        if domain not in ALLOWED_DOMAINS and (domain, op_type) not in self.local_functions:
            known = ", ".join(repr(d) for d in sorted(ALLOWED_DOMAINS))
            raise self.refuse(
                f"node {_show(name)} uses operator {_show(op_type)} of domain {_show(domain)}, "
                f"which this runtime does not run (it runs the domains {known} only; custom "
                "operators need native code it never loads); re-export the model with "
                "standard ONNX operators"
            )
        for c, d in attributes:
            self.attribute(c, d, depth)
        return op_type, inputs

    def attribute(self, a: int, b: int, depth: int) -> None:
        for number, wire, c, d in _fields(self.buf, a, b):
            if number in (_ATTR_T, _ATTR_TENSORS):
                _expect(wire, _LEN, number, "AttributeProto", d)
                self.tensor(c, d)
            elif number in (_ATTR_G, _ATTR_GRAPHS):
                _expect(wire, _LEN, number, "AttributeProto", d)
                self.graph(c, d, depth + 1)
            elif number in (_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS):
                _expect(wire, _LEN, number, "AttributeProto", d)
                self.sparse_tensor(c, d)

    def sparse_tensor(self, a: int, b: int) -> None:
        for number, wire, c, d in _fields(self.buf, a, b):
            if number in (_SPARSE_VALUES, _SPARSE_INDICES):
                _expect(wire, _LEN, number, "SparseTensorProto", d)
                self.tensor(c, d)

    def tensor(self, a: int, b: int) -> tuple[str, int | None]:
        """Check a tensor's external data; returns its name and first dimension (if any)."""
        self.summary.tensors += 1
        name = ""
        first: int | None = None
        location: str | None = None
        external = False
        entries: dict[str, str] = {}
        for number, wire, c, d in _fields(self.buf, a, b):
            if number == _TENSOR_NAME:
                _expect(wire, _LEN, number, "TensorProto", d)
                name = _text(self.buf, c, d)
            elif number == _TENSOR_DIMS and first is None:
                if wire == _VARINT:  # unpacked repeated int64
                    first = c
                else:  # packed: the first varint of the run
                    _expect(wire, _LEN, number, "TensorProto", d)
                    if c < d:
                        first = _varint(self.buf, c, d)[0]
            elif number == _TENSOR_DATA_LOCATION:
                _expect(wire, _VARINT, number, "TensorProto", d)
                external = c == _EXTERNAL
            elif number == _TENSOR_EXTERNAL_DATA:
                _expect(wire, _LEN, number, "TensorProto", d)
                key, value = self.entry(c, d, "TensorProto.external_data")
                entries[key] = value
                if key == "location":
                    location = value
        if external or location is not None:
            self.external(name, location, entries)
        return name, first

    def entry(self, a: int, b: int, what: str) -> tuple[str, str]:
        key = value = ""
        for number, wire, c, d in _fields(self.buf, a, b):
            if number == _ENTRY_KEY:
                _expect(wire, _LEN, number, "StringStringEntryProto", d)
                key = _utf8(self.buf, c, d, f"{what} key")
            elif number == _ENTRY_VALUE:
                _expect(wire, _LEN, number, "StringStringEntryProto", d)
                value = _utf8(self.buf, c, d, f"{what} value")
        return key, value

    # -- external data ---------------------------------------------------------------------

    def external(self, tensor: str, location: str | None, entries: dict[str, str]) -> None:
        what = f"tensor {_show(tensor)} keeps its data in an external file"
        keep = f"keep external data files inside the model's folder {self.folder}"
        if not location:
            raise self.refuse(f"{what} but names no 'location'; {_FIX}")
        shown = _show(location, 300)
        if "\x00" in location:
            raise self.refuse(f"{what} whose path {shown} contains a NUL character; {_FIX}")
        if posixpath.isabs(location) or ntpath.isabs(location) or ntpath.splitdrive(location)[0]:
            raise self.refuse(
                f"{what} given by the absolute path {shown}, which is refused (a model must "
                f"not read files from anywhere on this machine); {keep} and name them by a "
                "relative path"
            )
        if ".." in re.split(r"[\\/]", location):
            raise self.refuse(
                f"{what} whose path {shown} contains '..', which is refused (a model must not "
                f"read files outside its folder); {keep}"
            )
        target = os.path.join(self.folder, location)
        real = os.path.realpath(target)
        if os.path.commonpath([self.real_folder, real]) != self.real_folder:
            raise self.refuse(
                f"{what} {shown} that resolves to {real}, outside the model's folder (through a "
                f"symbolic link); {keep}, as regular files"
            )
        try:
            info = os.stat(real)
        except OSError:
            raise self.refuse(
                f"{what} {shown}, which does not exist in {self.folder}; copy that file next to "
                "the model (a model saved with external data is the .onnx file plus its data "
                "files)"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise self.refuse(f"{what} {shown}, which is not a regular file; {_FIX}")
        offset = entries.get("offset", "0") or "0"
        length = entries.get("length", "")
        if not offset.isdigit() or (length and not length.isdigit()):
            raise self.refuse(
                f"{what} {shown} with a malformed offset {_show(offset)} or length "
                f"{_show(length)}; {_FIX}"
            )
        if int(offset) + int(length or 0) > info.st_size:
            raise self.refuse(
                f"{what} {shown} at offset {offset} with length {length or 0}, beyond the end "
                f"of that file ({info.st_size} bytes): the data file is truncated or does not "
                f"belong to this model; {_FIX}"
            )
        self.summary.external_files.add(location)


def inspect_model(path: str | Path) -> ModelSummary:
    """Check an untrusted model file before ONNX Runtime opens it; raise `ModelLoadError`.

    Returns what the walk saw. The file is mapped, not read: the cost is one pass over the
    protobuf fields (a few milliseconds for a typical model), independent of tensor sizes.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such model file") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ModelLoadError(f"{path}: is a directory, expected an .onnx file")
    if not stat.S_ISREG(info.st_mode):
        raise ModelLoadError(f"{path}: is not a regular file, expected an .onnx file")
    if info.st_size == 0:
        raise ModelLoadError(f"{path}: the file is empty, expected an ONNX model")
    try:
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf,
        ):
            try:
                return _Walker(path, buf).model()
            except _Malformed as exc:
                where = "" if exc.offset is None else f", near byte {exc.offset}"
                raise ModelLoadError(
                    f"{path}: cannot load it as an ONNX model: it is not a well-formed protobuf "
                    f"ModelProto ({exc.reason}{where}); the file is truncated, corrupt or not an "
                    f"ONNX model: {_FIX}"
                ) from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
