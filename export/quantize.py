"""Reduced-precision variants of a verified fp32 export: dynamic int8 and float16.

`bilstm export --quantize int8` and `--fp16` first build and verify the fp32 graph as usual,
then derive the variant from it here, check its structure, and compare it with PyTorch under
a looser, named tolerance on `probabilities` (logit differences are recorded, not bounded:
their scale depends on the model). The figures go into the model's `export` metadata.

int8 (`quantize_int8`): ONNX Runtime's `quantize_dynamic`, weights int8 (per tensor,
symmetric), activations uint8 quantised at run time. LSTM layers become com.microsoft
`DynamicQuantizeLSTM` (its quantiser writes int8 W/R whatever `weight_type` says, so QInt8 is
the consistent choice), the output layer (Gemm, rewritten as MatMul by the quantiser) and
attention MatMuls become `MatMulInteger`, and the embedding table is stored as uint8 and
dequantised after the lookup: about 4x smaller. The checks below make sure that really
happened (docs/export-notes.md 6). ONNX Runtime has no quantised GRU operator, so GRU layers stay
fp32 (logged, recorded in the report, not an error). The int8 kernels are CPU kernels.

fp16 (`convert_fp16`): float32 initializers and casts become float16, `logits` and
`probabilities` are cast back to float32 at the end, integer inputs are unchanged, so the same
runtime code reads both. It is meant for the CUDA provider. ONNX Runtime's CPU provider has no
real float16 LSTM kernel (docs/export-notes.md 5) but still runs the file by inserting casts to
float32 around such nodes: slower than fp32 there, and it lets the parity check run on any
machine. On a CUDA machine the check runs on CUDA. A Transpose feeding a MatMul stays float32
(ONNX Runtime 1.32's CPU provider crashes on that pair in float16), and every fp16 file is
opened once in a child process so that a crash of that kind becomes an `ExportError`.

Variants exist for the tasks whose graphs end in `logits`/`probabilities` (classify, tag,
cloze); forecast models are refused (their output is in data units).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bilstm.core.atomic import atomic_path
from bilstm.core.errors import ExportError, ModelLoadError
from bilstm.export.parity import ParityReport, Tolerance, compare_cases
from bilstm.export.verify import FP32_SHAPES, dev_rows, parity_cases, reference_outputs
from bilstm.models.checkpoint import Checkpoint
from bilstm.runtime import metadata as md
from bilstm.runtime.session import CUDA, Device, create_session

log = logging.getLogger(__name__)

PRECISIONS = ("int8", "fp16")

INT8_TOLERANCE = 0.1
"""Max abs difference allowed on `probabilities` for int8 exports.

Measured with ONNX Runtime 1.32 on the shipped sentiment model (9,754 x 128 embedding, one
BiLSTM layer of 128, texts up to 256 tokens): at most 0.038 over the 1,399 dev texts (99th
percentile of the per-text maximum 0.017) and 0.033 on random ragged batches; the tiny test
models stay below 0.004. Quantisation noise grows with weight ranges and sequence length, so
the bound leaves room (2.5x) for bigger models while still catching a broken graph: the same
model with its LSTM's `sequence_lens` dropped differs by 0.30 to 0.91 on those random batches.
"""

FP16_TOLERANCE = 1e-2
"""Max abs difference allowed on `probabilities` for fp16 exports.

float16 keeps about 3 significant digits (epsilon 9.8e-4). Measured on the CPU provider
(float16 storage, casts around kernels): 3.4e-4 on the shipped sentiment model, below 1e-3 on
the tiny test models. CUDA computes the LSTM in float16 and accumulates more rounding over long
sequences, hence the 30x headroom; differences above 1e-2 mean a conversion error.
"""

DEFAULT_TOLERANCE = {"int8": INT8_TOLERANCE, "fp16": FP16_TOLERANCE}

_INTEGER_MATMULS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
_INT8_TYPES = (TensorProto.INT8, TensorProto.UINT8)
_FP16_MAX = float(np.finfo(np.float16).max)


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Node counts per op type (domain-qualified for non-ONNX domains), sorted by name."""
    counts = Counter(
        f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
        for n in model.graph.node
    )
    return dict(sorted(counts.items()))


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {init.name: init for init in model.graph.initializer}


def _weight_bytes(model: onnx.ModelProto) -> dict[str, int]:
    """Bytes of initializer data per element type name."""
    sizes: Counter[str] = Counter()
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        sizes[str(array.dtype)] += int(array.nbytes)
    return dict(sorted(sizes.items()))


@contextlib.contextmanager
def _no_preprocess_hint() -> Iterator[None]:
    """Drop quantize_dynamic's root-logger hint to run static-quantisation pre-processing.

    The hint is about calibration models; dynamic quantisation of this graph does not need it,
    and a bare WARNING on every export would only alarm users.
    """

    def keep(record: logging.LogRecord) -> bool:
        return "consider to run pre-processing" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _check_io_unchanged(before: onnx.ModelProto, after: onnx.ModelProto, what: str) -> None:
    """The variant must keep the graph inputs and outputs: names, element types, axes."""

    def spec(values: Any) -> list[tuple[str, int, list[str | int]]]:
        return [
            (
                v.name,
                v.type.tensor_type.elem_type,
                [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in values
        ]

    for kind, old, new in (
        ("inputs", before.graph.input, after.graph.input),
        ("outputs", before.graph.output, after.graph.output),
    ):
        if spec(old) != spec(new):
            raise ExportError(
                f"the {what} model changed the graph {kind}: {spec(old)} became {spec(new)}"
            )


@dataclass(frozen=True)
class _Int8Targets:
    """What the fp32 graph holds that int8 quantisation must convert (or, GRU, cannot)."""

    lstm: int
    gru: int
    const_matmuls: list[str]
    lookups: list[str]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> _Int8Targets:
        """Count LSTM/GRU layers, MatMul/Gemm with a float weight, lookups in a float table."""
        inits = _initializers(model)
        float_inits = {n for n, t in inits.items() if t.data_type == TensorProto.FLOAT}
        nodes = model.graph.node
        return cls(
            lstm=sum(n.op_type == "LSTM" for n in nodes),
            gru=sum(n.op_type == "GRU" for n in nodes),
            const_matmuls=[
                n.name
                for n in nodes
                if n.op_type in ("MatMul", "Gemm")
                and len(n.input) > 1
                and n.input[1] in float_inits
            ],
            lookups=[n.name for n in nodes if n.op_type == "Gather" and n.input[0] in float_inits],
        )


def _int8_missing(after: onnx.ModelProto, targets: _Int8Targets) -> list[str]:
    """What quantize_dynamic left fp32 although it should not have ([] when complete).

    It silently keeps a node fp32 when it cannot quantise it (docs/export-notes.md 6), so the
    result is checked node type by node type.
    """
    counts = op_counts(after)
    after_inits = _initializers(after)
    missing: list[str] = []
    quantized_lstm = counts.get("com.microsoft.DynamicQuantizeLSTM", 0)
    if quantized_lstm != targets.lstm or counts.get("LSTM"):
        missing.append(
            f"{targets.lstm} LSTM layer(s) should have become DynamicQuantizeLSTM, found "
            f"{quantized_lstm} (and {counts.get('LSTM', 0)} fp32 LSTM left)"
        )
    integer_matmuls = sum(
        counts.get(op, 0) + counts.get(f"com.microsoft.{op}", 0) for op in _INTEGER_MATMULS
    )
    float_matmuls = [
        n.name or n.op_type
        for n in after.graph.node
        if n.op_type in ("MatMul", "Gemm")
        and len(n.input) > 1
        and n.input[1] in after_inits
        and after_inits[n.input[1]].data_type == TensorProto.FLOAT
    ]
    wanted = len(targets.const_matmuls)
    if wanted and (integer_matmuls < wanted or float_matmuls):
        missing.append(
            f"{wanted} constant-weight MatMul/Gemm node(s) should have become "
            f"integer matmuls ({', '.join(_INTEGER_MATMULS)}), found {integer_matmuls}; "
            f"still float: {float_matmuls or 'none'}"
        )
    float_lookups = [
        n.name or n.op_type
        for n in after.graph.node
        if n.op_type == "Gather"
        and n.input[0] in after_inits
        and after_inits[n.input[0]].data_type not in _INT8_TYPES
    ]
    if targets.lookups and float_lookups:
        missing.append(f"embedding lookup(s) {float_lookups} still read a float table")
    for node in after.graph.node:
        if node.op_type in ("DynamicQuantizeLSTM", "GRU") and (
            len(node.input) < 5 or not node.input[4]
        ):
            missing.append(f"{node.op_type} node {node.name} lost its sequence_lens input")
    return missing


def quantize_int8(src: Path, dst: Path) -> dict[str, Any]:
    """Dynamic int8 quantisation of the fp32 model at `src`, written atomically to `dst`.

    Raises `ExportError` naming what stayed fp32 when an LSTM layer, a constant-weight
    MatMul/Gemm or an embedding lookup was not quantised. GRU layers stay fp32 (ONNX Runtime
    has no quantised GRU); that is logged and reported, not an error. Returns a JSON-ready
    report: sizes, op counts before and after, weight bytes per type, settings, notes.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    before = onnx.load(str(src))
    targets = _Int8Targets.of(before)
    with atomic_path(dst) as tmp:
        with _no_preprocess_hint():
            quantize_dynamic(
                str(src),
                str(tmp),
                weight_type=QuantType.QInt8,
                per_channel=False,
                reduce_range=False,
            )
        after = onnx.load(str(tmp))
        missing = _int8_missing(after, targets)
        if missing:
            raise ExportError("int8 quantisation incomplete: " + "; ".join(missing))
        _check_io_unchanged(before, after, "int8")
        onnx.checker.check_model(after)
    return _int8_report(src, dst, before, after, targets.gru)


def _int8_report(
    src: Path, dst: Path, before: onnx.ModelProto, after: onnx.ModelProto, n_gru: int
) -> dict[str, Any]:
    """The `quantization` section of the metadata (docs/model-file.md)."""
    notes: list[str] = []
    if n_gru:
        notes.append(
            f"{n_gru} GRU layer(s) stay fp32: ONNX Runtime has no quantised GRU operator "
            "(only DynamicQuantizeLSTM); the embedding and output layer are still int8"
        )
        log.warning("int8: %s", notes[-1])
    counts = op_counts(after)
    report = {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weights": "int8, symmetric, per tensor (LSTM W/R: int8, scale per direction)",
        "activations": "uint8, asymmetric, quantised at run time",
        "embedding": "uint8 table, asymmetric, per tensor, dequantised after the lookup",
        "per_channel": False,
        "reduce_range": False,
        "size_before": src.stat().st_size,
        "size_after": dst.stat().st_size,
        "ops_before": op_counts(before),
        "ops_after": counts,
        "weight_bytes_before": _weight_bytes(before),
        "weight_bytes_after": _weight_bytes(after),
        "fp32_ops": {"GRU": n_gru} if n_gru else {},
        "notes": notes,
    }
    log.info("int8: %d -> %d bytes, ops %s", report["size_before"], report["size_after"], counts)
    return report


def _to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """float32 weights, constants and casts -> float16; float32 graph I/O kept via Casts.

    Returns the new model and the count per op type of nodes left computing in float32.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    if any(n.op_type in ("If", "Loop", "Scan") for n in graph.node):
        raise ExportError("fp16 conversion does not handle subgraphs (If/Loop/Scan)")
    _constants_to_fp16(graph)
    fp32_ops = _transposed_matmuls_in_fp32(graph)
    _cast_graph_io(graph)
    del graph.value_info[:]  # stale float32 annotations; ONNX Runtime infers them again
    return out, fp32_ops


def _tensor_to_fp16(tensor: onnx.TensorProto) -> None:
    """A float32 tensor becomes float16 in place; `ExportError` when a value does not fit."""
    if tensor.data_type != TensorProto.FLOAT:
        return
    array = numpy_helper.to_array(tensor)
    finite = array[np.isfinite(array)]
    if finite.size and float(np.abs(finite).max()) > _FP16_MAX:
        raise ExportError(
            f"fp16: '{tensor.name}' holds values up to {float(np.abs(finite).max()):.3g}, "
            f"beyond float16's {_FP16_MAX:g}; export it as fp32 or int8"
        )
    tensor.CopyFrom(numpy_helper.from_array(array.astype(np.float16), tensor.name))


def _constants_to_fp16(graph: onnx.GraphProto) -> None:
    """Initializers, Constant nodes and Casts to float32 -> float16."""
    for init in graph.initializer:
        _tensor_to_fp16(init)
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
            elif node.op_type == "Constant" and attr.name == "value":
                _tensor_to_fp16(attr.t)


def _transposed_matmuls_in_fp32(graph: onnx.GraphProto) -> dict[str, int]:
    """Each Transpose + MatMul pair computes in float32: Cast, Transpose, MatMul, Cast back.

    ONNX Runtime 1.32's CPU provider crashes (segfault while creating the session at the
    default ORT_ENABLE_ALL level) on a float16 Transpose feeding a MatMul, as in the per-token
    output layer of tagging models, even with a Cast between the two. Returns the count of
    nodes left in float32 per op type.
    """
    fp32_ops: dict[str, int] = {}
    producers = {out: node for node in graph.node for out in node.output}
    rebuilt: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        source = producers.get(node.input[0]) if node.input else None
        if node.op_type != "MatMul" or source is None or source.op_type != "Transpose":
            rebuilt.append(node)
            continue
        fp32_ops["MatMul"] = fp32_ops.get("MatMul", 0) + 1
        rebuilt.extend(_fp32_matmul(node, source, f"fp32_{index}"))
    used = {name for node in rebuilt for name in node.input} | {o.name for o in graph.output}
    del graph.node[:]
    # The float16 Transpose is left without readers: dropped.
    graph.node.extend(
        n for n in rebuilt if n.op_type != "Transpose" or any(o in used for o in n.output)
    )
    return fp32_ops


def _fp32_matmul(node: onnx.NodeProto, source: onnx.NodeProto, tag: str) -> list[onnx.NodeProto]:
    """The nodes replacing `node` (a MatMul fed by the Transpose `source`) in float32."""
    nodes = [
        helper.make_node(
            "Cast", [source.input[0]], [f"{source.input[0]}_{tag}"], to=TensorProto.FLOAT
        )
    ]
    transpose = onnx.NodeProto()
    transpose.CopyFrom(source)
    transpose.name = f"{source.name}_{tag}"
    transpose.input[0] = f"{source.input[0]}_{tag}"
    transpose.output[0] = f"{source.output[0]}_{tag}"
    nodes.append(transpose)
    node.input[0] = transpose.output[0]
    for i, name in enumerate(node.input[1:], start=1):
        nodes.append(helper.make_node("Cast", [name], [f"{name}_{tag}"], to=TensorProto.FLOAT))
        node.input[i] = f"{name}_{tag}"
    result = node.output[0]
    node.output[0] = f"{result}_{tag}"
    nodes.append(node)
    nodes.append(helper.make_node("Cast", [node.output[0]], [result], to=TensorProto.FLOAT16))
    return nodes


def _cast_graph_io(graph: onnx.GraphProto) -> None:
    """float32 graph inputs and outputs keep their type: Casts at the edges of the graph."""

    def rename(old: str, new: str) -> None:
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new
            for i, name in enumerate(node.output):
                if name == old:
                    node.output[i] = new

    head: list[onnx.NodeProto] = []
    for value in graph.input:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            rename(value.name, value.name + "_fp16")
            head.append(
                helper.make_node(
                    "Cast",
                    [value.name],
                    [value.name + "_fp16"],
                    name=value.name + "_to_fp16",
                    to=TensorProto.FLOAT16,
                )
            )
    tail: list[onnx.NodeProto] = []
    for value in graph.output:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            rename(value.name, value.name + "_fp16")
            tail.append(
                helper.make_node(
                    "Cast",
                    [value.name + "_fp16"],
                    [value.name],
                    name=value.name + "_to_fp32",
                    to=TensorProto.FLOAT,
                )
            )
    nodes = [*head, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)


def _cpu_smoke_test(path: Path) -> None:
    """Open `path` with ONNX Runtime's CPU provider in a child process.

    Some float16 graphs crash ONNX Runtime's CPU provider outright (see `_to_fp16`); a crash
    in a child process becomes an `ExportError` instead of killing the export (or, later, the
    user's program).
    """
    code = (
        "import sys, onnxruntime as ort; "
        "ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ExportError("fp16: ONNX Runtime did not open the float16 model in 300 s") from exc
    if done.returncode < 0:
        raise ExportError(
            f"fp16: ONNX Runtime's CPU provider crashes (signal {-done.returncode}) opening the "
            "float16 model; export fp32 or int8 instead"
        )
    if done.returncode != 0:
        log.warning(
            "fp16: ONNX Runtime's CPU provider cannot open the float16 model: %s",
            done.stderr.strip().splitlines()[-1:] or "no message",
        )


def convert_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """float16 copy of the fp32 model at `src`, written atomically to `dst`, for CUDA.

    Inputs and outputs keep their types (int64 ids and lengths in, float32 `logits` and
    `probabilities` out). Raises `ExportError` when a weight does not fit float16 or the
    result fails `onnx.checker`. Returns a JSON-ready report.
    """
    src, dst = Path(src), Path(dst)
    before = onnx.load(str(src))
    after, fp32_ops = _to_fp16(before)
    try:
        onnx.checker.check_model(after, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"fp16 conversion produced an invalid graph: {exc}") from exc
    _check_io_unchanged(before, after, "fp16")
    left = [i.name for i in after.graph.initializer if i.data_type == TensorProto.FLOAT]
    if left:
        raise ExportError(f"fp16 conversion left float32 initializers: {left}")
    with atomic_path(dst) as tmp:
        onnx.save_model(after, str(tmp))
        _cpu_smoke_test(tmp)
    report = {
        "method": "bilstm: float32 initializers and casts -> float16, float32 outputs via Cast",
        "intended_provider": CUDA,
        "io": "inputs unchanged; float32 outputs cast back from float16 inside the graph",
        "size_before": src.stat().st_size,
        "size_after": dst.stat().st_size,
        "ops_before": op_counts(before),
        "ops_after": op_counts(after),
        "weight_bytes_before": _weight_bytes(before),
        "weight_bytes_after": _weight_bytes(after),
        "fp32_ops": fp32_ops,
        "notes": [
            f"{n} {op} node(s) compute in float32 between Casts: ONNX Runtime's CPU provider "
            "crashes on a float16 MatMul fed by a Transpose"
            for op, n in fp32_ops.items()
        ],
    }
    log.info("fp16: %d -> %d bytes", report["size_before"], report["size_after"])
    return report


def _check_task(ckpt: Checkpoint) -> None:
    """Variants are for tasks whose graphs end in probabilities (the task adapter says so);
    a forecast is in data units, which would need a tolerance of its own."""
    from bilstm.runtime.tasks import MODEL_CLASSES, spec

    if not spec(ckpt.task).variants:
        tasks = [c.SPEC.name for c in MODEL_CLASSES.values() if c.SPEC.variants]
        raise ExportError(
            f"--quantize/--fp16 support {', '.join(tasks)} models, not {ckpt.task}: "
            "its output is in data units and has no int8/fp16 tolerance yet; export it as fp32"
        )


VARIANT_SHAPES = (*FP32_SHAPES, (32, 40))
"""The fp32 cases plus a wider batch: int8 activations are quantised with one scale per call,
so a row's result depends on its neighbours (docs/export-notes.md 13)."""


def _variant_session(path: Path, precision: str) -> tuple[Any, str | None]:
    """(session, None), or (None, why) when an fp16 file cannot run here at all.

    fp16 runs on CUDA when this ONNX Runtime has it (the provider it is meant for), else on the
    CPU, which some ONNX Runtime builds refuse for float16 graphs.
    """
    device = Device.cpu
    if precision == "fp16":
        import onnxruntime as ort

        device = Device.auto if CUDA in ort.get_available_providers() else Device.cpu
    try:
        return create_session(path, device=device, threads=1), None
    except ModelLoadError as exc:
        if precision != "fp16":
            raise
        return None, (
            f"ONNX Runtime cannot run the float16 model on {device.value} ({exc}); "
            "it needs CUDA: run the exported file with --device cuda to check it"
        )


def variant_parity(
    ckpt: Checkpoint, path: Path, precision: str, tolerance: float | None = None
) -> ParityReport:
    """Compare the variant at `path` with PyTorch; raise `ParityError` on a breach.

    `tolerance` (default `INT8_TOLERANCE`/`FP16_TOLERANCE`) bounds the max abs difference of
    `probabilities`; logit differences are reported. Also reports how often the predicted class
    (argmax; per token for tagging) agrees with the fp32 PyTorch model, overall and on the
    checkpoint's dev examples, next to the fp32 dev metrics from training (the stored examples
    carry no labels, so the variant's own accuracy is measured with `bilstm eval`). fp16 runs
    on CUDA when this ONNX Runtime has it, else on the CPU; when the CPU cannot run it either,
    the check is skipped with a warning and the report says so (`skipped`).
    """
    _check_task(ckpt)
    rule = Tolerance(
        DEFAULT_TOLERANCE[precision] if tolerance is None else tolerance,
        outputs=(md.PROBABILITIES,),
        name=precision,
    )
    report = ParityReport(rule=rule, form="variant")
    session, skipped = _variant_session(path, precision)
    if session is None:
        log.warning("fp16 parity NOT checked: %s", skipped)
        report.skipped = skipped
        return report
    outputs = [md.LOGITS, md.PROBABILITIES]

    def variant_outputs(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(outputs, session.run(outputs, feeds), strict=True))

    cases = parity_cases(ckpt, VARIANT_SHAPES)
    report.cases = compare_cases(
        cases,
        ckpt.task,
        lambda feeds: reference_outputs(ckpt, feeds),
        variant_outputs,
        outputs,
        rule,
        label=f"{precision} parity",
    )
    report.dev_examples = dev_rows(cases)
    report.provider = session.get_providers()[0]
    dev = ckpt.summary.get("dev_metrics", {})
    report.fp32_dev_metrics = {
        k: v for k, v in dev.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    report.raise_if_failed(f"{precision} model")
    return report


def build_variant(
    ckpt: Checkpoint,
    fp32: onnx.ModelProto,
    precision: str,
    verify: bool = True,
    tolerance: float | None = None,
) -> tuple[onnx.ModelProto, dict[str, Any], ParityReport | None]:
    """Derive the `precision` variant of the verified fp32 graph; check it unless `verify=False`.

    Returns (variant model, conversion report, parity report or None). Everything happens in a
    temporary folder: on any error nothing is left behind.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    _check_task(ckpt)
    with tempfile.TemporaryDirectory(prefix="bilstm-variant-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / f"{precision}.onnx"
        onnx.save_model(fp32, str(src))
        details = quantize_int8(src, dst) if precision == "int8" else convert_fp16(src, dst)
        parity = variant_parity(ckpt, dst, precision, tolerance) if verify else None
        variant = onnx.load(str(dst))
    return variant, details, parity
