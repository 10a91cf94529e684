"""`export_module`: a user's own `nn.Module` with LSTM/GRU layers -> one padding-exact `.onnx`.

The module is traced by PyTorch's supported exporter (`torch.export` + `torch.onnx.export`,
dynamo) while every `nn.LSTM`/`nn.GRU` emits a placeholder node and packing keeps the batch
padded (export/module_rnn.py); the placeholders then become fused ONNX `LSTM`/`GRU` nodes fed
`sequence_lens`, or the `Scan` lowering for `proj_size` (export/module_lower.py). The graph is
checked, compared with the original module on ragged batches at shapes unlike the example
(export/module_parity.py, the project's one parity checker), and written only when it agrees.
docs/export-module.md is the user's guide.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import helper

from bilstm.core.atomic import atomic_path
from bilstm.core.errors import ExportError, ParityError
from bilstm.core.outpaths import check_output_file
from bilstm.export.exporter import weights_hash
from bilstm.export.module_lower import lower_placeholders
from bilstm.export.module_parity import (
    REFERENCE_ORACLE,
    Axes,
    InputSpec,
    given_case,
    ragged_cases,
    reference_results,
    shape_checked,
    torch_outputs,
)
from bilstm.export.module_rnn import RNNSite, export_patches, find_rnns
from bilstm.export.parity import Case, ParityReport, Tolerance, compare_cases
from bilstm.export.verify import FP32_TOLERANCE
from bilstm.runtime.version import __version__

log = logging.getLogger(__name__)

MODULE_OPSET = 18
"""The dynamo exporter writes opset 18 or later."""
MAX_MODULE_OPSET = 21
METADATA_KEY = "bilstm_module_export"
"""Model property holding what `export_module` did (JSON; docs/export-module.md)."""

DynamicAxes = Mapping[str, Mapping[int, str]]


@dataclass
class ModuleExportReport:
    """What `export_module` wrote and how it was checked."""

    path: Path
    size_bytes: int
    seconds: float
    parity: ParityReport
    rnns: list[dict[str, Any]]
    """Each LSTM/GRU layer: sizes, calls, whether it was fed a PackedSequence."""
    fused_nodes: int
    """Fused `LSTM`/`GRU` nodes in the graph (one per layer and call)."""
    scan_nodes: int
    """`Scan` nodes (one per direction, layer and call of a `proj_size` LSTM)."""
    weights_sha256: str


def export_module(
    module: torch.nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    path: str | Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: DynamicAxes | None = None,
    dynamic_shapes: Mapping[str, Any] | Sequence[Any] | None = None,
    lengths: str | None = None,
    batch_axis: str = "batch",
    time_axis: str = "time",
    pad_value: float = 0,
    check_inputs: Sequence[Sequence[torch.Tensor]] = (),
    reference_check: bool = False,
    opset: int = MODULE_OPSET,
    tolerance: float = FP32_TOLERANCE,
    force: bool = True,
) -> ModuleExportReport:
    """Export `module` (whose forward uses nn.LSTM/nn.GRU) to `path`, verified on ragged batches.

    `example_inputs`: the tensors `forward` takes, in order, named by `input_names`;
    `output_names` name the returned tensors (flattened: a tuple, list or dict of tensors).
    Dynamic axes, by name, in either form: `dynamic_axes` ({"ids": {0: "batch", 1: "time"}})
    or `dynamic_shapes` as for `torch.export` (named `torch.export.Dim`s); axis names are
    `batch_axis` and `time_axis`. `lengths` names the input holding each row's length, if
    any; positions past a row's length get `pad_value` in the generated cases.
    `check_inputs`: real batches to compare on as well. `reference_check`: also compare each
    row with `onnx.reference` (a second, independent ONNX engine; slow on big models).

    Raises `ExportError` (unsupported layer, untraceable forward, bad arguments) or
    `ParityError` (ONNX Runtime differs from the module beyond `tolerance` x (1 + |value|));
    then nothing is written. An existing `path` is replaced only with `force`.
    """
    started = time.perf_counter()
    path = Path(path)
    _check_setup(path, opset, force)
    examples = _as_tuple(example_inputs)
    axes = Axes(batch=batch_axis, time=time_axis, pad_value=float(pad_value))
    specs = _input_specs(module, examples, input_names, dynamic_axes, dynamic_shapes, lengths, axes)
    outputs = _names(output_names, "output_names")
    sites = find_rnns(module)
    if not sites:
        raise ExportError(
            f"{type(module).__name__} has no nn.LSTM or nn.GRU layer; export_module is for "
            "recurrent modules (use torch.onnx.export for others)"
        )
    with _eval_mode(module):
        model = _trace(module, examples, specs, outputs, sites, axes, opset)
        fused, scans = check_module_graph(model, sites, specs, axes)
        parity = _verify(
            model,
            module,
            specs,
            outputs,
            sites,
            axes,
            check_inputs,
            reference_check,
            tolerance,
            path,
        )
    sha = weights_hash(model)
    info = _metadata(module, specs, outputs, lengths, axes, sites, opset, sha, parity)
    helper.set_model_props(model, {METADATA_KEY: json.dumps(info)})
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
    seconds = time.perf_counter() - started
    log.info("exported %s in %.2f s", path, seconds)
    return ModuleExportReport(
        path=path,
        size_bytes=path.stat().st_size,
        seconds=seconds,
        parity=parity,
        rnns=info["rnns"],
        fused_nodes=fused,
        scan_nodes=scans,
        weights_sha256=sha,
    )


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Dropout off while exporting, as at inference; each submodule's mode restored after."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for sub, training in modes.items():
            sub.training = training


def _check_setup(path: Path, opset: int, force: bool) -> None:
    """Refuse before any work: an output that may not be replaced, an opset, no onnxscript."""
    check_output_file(path, force=force, flag="OUT")
    if not MODULE_OPSET <= opset <= MAX_MODULE_OPSET:
        raise ExportError(
            f"opset {opset} is not supported; choose {MODULE_OPSET}..{MAX_MODULE_OPSET}"
        )
    if importlib.util.find_spec("onnxscript") is None:
        raise ExportError(
            "export_module needs onnxscript (PyTorch's ONNX exporter is written on it): "
            "pip install 'bilstm[train]' or pip install onnxscript"
        )


def _metadata(
    module: torch.nn.Module,
    specs: Sequence[InputSpec],
    outputs: Sequence[str],
    lengths: str | None,
    axes: Axes,
    sites: Mapping[str, RNNSite],
    opset: int,
    sha: str,
    parity: ParityReport,
) -> dict[str, Any]:
    """What the file says about itself (`bilstm info` shows it): provenance, axes, parity."""
    return {
        "toolkit_version": __version__,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "opset": opset,
        "module": type(module).__qualname__,
        "inputs": {s.name: {str(d): n for d, n in s.axes.items()} for s in specs},
        "outputs": list(outputs),
        "lengths": lengths,
        "pad_value": axes.pad_value,
        "rnns": [s.describe() for s in sites.values()],
        "weights_sha256": sha,
        "parity": parity.to_dict(),
    }


# -- arguments --------------------------------------------------------------------------------


def _as_tuple(example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    values = (
        (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    )
    for i, v in enumerate(values):
        if not isinstance(v, torch.Tensor):
            raise ExportError(
                f"example_inputs[{i}] is {type(v).__name__}; give tensors only (a Python value "
                "would be frozen into the graph as a constant)"
            )
    return values


def _names(names: Sequence[str], what: str) -> list[str]:
    if isinstance(names, str) or not names:
        raise ExportError(f"{what} must be a non-empty list of names, got {names!r}")
    out = list(names)
    if len(set(out)) != len(out):
        raise ExportError(f"{what} has duplicates: {out}")
    return out


def _input_specs(
    module: torch.nn.Module,
    examples: tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    dynamic_axes: DynamicAxes | None,
    dynamic_shapes: Mapping[str, Any] | Sequence[Any] | None,
    lengths: str | None,
    axes: Axes,
) -> list[InputSpec]:
    """One `InputSpec` per input; `ExportError` for anything inconsistent, before any work."""
    names = _names(input_names, "input_names")
    if len(names) != len(examples):
        raise ExportError(
            f"input_names has {len(names)} name(s) ({', '.join(names)}) for "
            f"{len(examples)} example input(s); name each input"
        )
    if (dynamic_axes is None) == (dynamic_shapes is None):
        raise ExportError(
            "give the dynamic axes once, as dynamic_axes (e.g. {'ids': {0: 'batch', 1: 'time'}}) "
            "or dynamic_shapes (torch.export style); without them batch and time would be frozen"
        )
    per_input = (
        _axes_from_dynamic_axes(dynamic_axes, names)
        if dynamic_axes is not None
        else _axes_from_dynamic_shapes(module, dynamic_shapes, names)
    )
    if lengths is not None and lengths not in names:
        raise ExportError(f"lengths={lengths!r} is not one of input_names ({', '.join(names)})")
    specs = []
    for name, example in zip(names, examples, strict=True):
        dims = per_input.get(name, {})
        for dim, axis in dims.items():
            if axis not in (axes.batch, axes.time):
                raise ExportError(
                    f"input '{name}' axis {dim} is named {axis!r}; name dynamic axes "
                    f"{axes.batch!r} or {axes.time!r} (or pass batch_axis=/time_axis=)"
                )
            if not -example.dim() <= dim < example.dim():
                raise ExportError(
                    f"input '{name}' has {example.dim()} dimension(s); it has no axis {dim}"
                )
            if example.shape[dim] < 2:
                raise ExportError(
                    f"example input '{name}' has size {example.shape[dim]} on its {axis} axis "
                    f"{dim}; torch.export fixes sizes 0 and 1, so give an example with at least 2"
                )
        dims = {d % example.dim(): n for d, n in dims.items()}
        spec = InputSpec(name, example, dims, is_lengths=name == lengths)
        if spec.is_lengths and (
            example.dim() != 1 or example.dtype.is_floating_point or spec.dim(axes.batch) != 0
        ):
            raise ExportError(
                f"lengths input '{name}' must be an integer tensor [batch] with axis 0 named "
                f"{axes.batch!r}; got {example.dtype} {list(example.shape)}"
            )
        specs.append(spec)
    if not any(s.axes for s in specs):
        raise ExportError("no input has a dynamic axis; name at least the batch or time axis")
    return specs


def _axes_from_dynamic_axes(
    dynamic_axes: DynamicAxes, names: list[str]
) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    for name, dims in dynamic_axes.items():
        if not isinstance(dims, Mapping):
            raise ExportError(
                f"dynamic_axes[{name!r}] must map axis numbers to names (e.g. {{0: 'batch'}}), "
                f"got {dims!r}"
            )
        if name in names:
            out[name] = {int(d): str(n) for d, n in dims.items()}
    return out


def _axes_from_dynamic_shapes(
    module: torch.nn.Module, shapes: Mapping[str, Any] | Sequence[Any] | None, names: list[str]
) -> dict[str, dict[int, str]]:
    """Axis names of named `torch.export.Dim`s, by input (dict keyed by forward's arguments)."""
    import inspect

    if isinstance(shapes, Mapping):
        params = list(inspect.signature(module.forward).parameters)
        unknown = [k for k in shapes if k not in params]
        if unknown:
            raise ExportError(
                f"dynamic_shapes names {unknown}, which forward does not take ({params})"
            )
        ordered = [shapes.get(p) for p in params[: len(names)]]
    else:
        ordered = list(shapes or [])
    out: dict[str, dict[int, str]] = {}
    for name, dims in zip(names, ordered, strict=False):
        if dims is None:
            continue
        if not isinstance(dims, Mapping):
            raise ExportError(f"dynamic_shapes for '{name}' must be a {{dim: Dim}} mapping")
        out[name] = {}
        for d, dim in dims.items():
            label = getattr(dim, "__name__", None)
            if not isinstance(label, str) or label.startswith("_"):
                raise ExportError(
                    f"dynamic_shapes for '{name}' axis {d}: use a named torch.export.Dim "
                    "(e.g. Dim('batch')), not Dim.AUTO/Dim.DYNAMIC"
                )
            out[name][int(d)] = label
    return out


# -- tracing ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' chatter: torch.onnx prints progress on stdout (which carries results:
    it goes to stderr with logging at INFO, else nowhere), warns that torchvision's operators
    are not registered (irrelevant here) and raises FutureWarnings about its own internals."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    sink = sys.stderr if log.isEnabledFor(logging.INFO) else io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.")
            yield
    finally:
        registration.setLevel(level)


def _trace(
    module: torch.nn.Module,
    examples: tuple[torch.Tensor, ...],
    specs: list[InputSpec],
    outputs: list[str],
    sites: dict[str, RNNSite],
    axes: Axes,
    opset: int,
) -> onnx.ModelProto:
    """torch.export (non-strict) under the patches, torch.onnx.export, placeholders lowered."""
    dims: dict[str, Any] = {}
    shapes = tuple(
        {d: dims.setdefault(n, torch.export.Dim(n)) for d, n in s.axes.items()} or None
        for s in specs
    )
    try:
        with export_patches(sites), _quiet():
            program = torch.export.export(module, examples, dynamic_shapes=shapes, strict=False)
    except ExportError:
        raise
    except Exception as exc:  # torch raises many types; all mean "cannot trace"
        raise ExportError(_trace_hint(exc)) from exc
    unused = [s.name for s in sites.values() if not s.calls]
    if unused:
        log.info("recurrent layer(s) not called by forward: %s", ", ".join(unused))
    try:
        with _quiet():
            onnx_program = torch.onnx.export(
                program,
                dynamo=True,
                opset_version=opset,
                input_names=[s.name for s in specs],
                output_names=outputs,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed on the traced module: {exc}") from exc
    assert onnx_program is not None
    model = onnx_program.model_proto
    if [o.name for o in model.graph.output] != outputs:
        raise ExportError(
            f"the module returns {len(model.graph.output)} tensor(s) but output_names has "
            f"{len(outputs)} ({', '.join(outputs)}); name each returned tensor"
        )
    model = lower_placeholders(model, sites, opset)
    _clean(model, specs)
    return model


def _trace_hint(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    first = next((line for line in text if line.strip()), type(exc).__name__)
    hint = ""
    if "data-dependent" in str(exc) or "GuardOnDataDependent" in type(exc).__name__:
        hint = (
            " (forward turns a tensor value into a Python number, e.g. lengths.tolist(), "
            "int(x.max()) or a loop over lengths; pass the lengths tensor to "
            "pack_padded_sequence and keep sizes as tensors)"
        )
    elif "Constraints violated" in str(exc) or "specializ" in str(exc):
        hint = (
            " (forward fixes a dynamic axis to the example's size, e.g. a hard-coded "
            "view/reshape or a Python int from x.shape used as a constant)"
        )
    return f"cannot trace the module with torch.export: {first}{hint}"


def _clean(model: onnx.ModelProto, specs: list[InputSpec]) -> None:
    """Axis names as the user gave them, no exporter-internal metadata, IR for ORT >= 1.17."""
    rename: dict[str, str] = {}
    graph_inputs = {v.name: v for v in model.graph.input}
    for s in specs:
        value = graph_inputs.get(s.name)
        if value is None:
            raise ExportError(
                f"input '{s.name}' is not in the exported graph: forward does not use it"
            )
        dims = value.type.tensor_type.shape.dim
        for d, axis in s.axes.items():
            if dims[d].dim_param:
                rename[dims[d].dim_param] = axis
            else:
                raise ExportError(
                    f"input '{s.name}' axis {d} ({axis}) was fixed at {dims[d].dim_value} by "
                    "the trace; forward must not use that size as a constant"
                )
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in rename:
                dim.dim_param = rename[dim.dim_param]
        del value.metadata_props[:]  # torch-internal names and stack traces
    for node in model.graph.node:
        del node.metadata_props[:]
    del model.metadata_props[:]
    model.doc_string = ""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    model.ir_version = 8 if opset <= 18 else 9
    model.producer_name = "bilstm"


def check_module_graph(
    model: onnx.ModelProto, sites: Mapping[str, RNNSite], specs: list[InputSpec], axes: Axes
) -> tuple[int, int]:
    """`onnx.checker`, one fused node fed `sequence_lens` per layer and call (Scans for
    projections), dynamic axes kept; returns (fused nodes, Scan nodes)."""
    onnx.checker.check_model(model, full_check=True)
    rnn = [n for n in model.graph.node if n.op_type in ("LSTM", "GRU")]
    scans = [n for n in model.graph.node if n.op_type == "Scan"]
    want_fused = sum(s.calls * s.module.num_layers for s in sites.values() if not _proj(s))
    want_scans = sum(
        s.calls * s.module.num_layers * s.directions for s in sites.values() if _proj(s)
    )
    if len(rnn) != want_fused or len(scans) < want_scans:
        raise ExportError(
            f"expected {want_fused} fused LSTM/GRU node(s) and {want_scans} Scan node(s), "
            f"found {len(rnn)} and {len(scans)}"
        )
    for node in rnn:
        if len(node.input) < 5 or not node.input[4]:
            raise ExportError(f"RNN node {node.name} has no sequence_lens input")
    for value in model.graph.input:
        spec = next(s for s in specs if s.name == value.name)
        dims = value.type.tensor_type.shape.dim
        for d, axis in spec.axes.items():
            if dims[d].dim_param != axis:
                raise ExportError(f"input '{value.name}' axis {d} is not the dynamic {axis!r}")
    return len(rnn), len(scans)


def _proj(site: RNNSite) -> bool:
    return bool(getattr(site.module, "proj_size", 0))


# -- parity -----------------------------------------------------------------------------------


def _verify(
    model: onnx.ModelProto,
    module: torch.nn.Module,
    specs: list[InputSpec],
    outputs: list[str],
    sites: Mapping[str, RNNSite],
    axes: Axes,
    check_inputs: Sequence[Sequence[torch.Tensor]],
    reference_check: bool,
    tolerance: float,
    path: Path,
) -> ParityReport:
    """ONNX Runtime vs the module on ragged cases, the example and `check_inputs`."""
    from bilstm.runtime.session import Device, create_session

    rule = Tolerance(tolerance, relative=True)
    reference = torch_outputs(module, specs, outputs)
    given = [given_case("example", specs, [s.example for s in specs])]
    given += [given_case(f"check_inputs[{i}]", specs, list(v)) for i, v in enumerate(check_inputs)]
    cases = _ragged(module, specs, axes, reference)
    with tempfile.TemporaryDirectory(prefix="bilstm-export-module-") as tmp:
        candidate = Path(tmp) / "candidate.onnx"
        onnx.save_model(model, str(candidate))
        session = create_session(candidate, device=Device.cpu, threads=1)

        def run(feeds: dict[str, Any]) -> dict[str, Any]:
            return dict(zip(outputs, session.run(outputs, feeds), strict=True))

        want, have = shape_checked(run, reference, "ONNX Runtime")
        results = compare_cases([*cases, *given], None, want, have, outputs, rule)
        note = None
        if reference_check:
            packed = any(any(s.packed) for s in sites.values())
            if packed and not any(s.dim(axes.time) is not None for s in specs):
                note = (
                    f"{REFERENCE_ORACLE} skipped: it ignores sequence_lens and the time axis is "
                    "fixed, so rows cannot be cut to their own length"
                )
            else:
                results += reference_results(
                    candidate, module, specs, outputs, [*cases, *given], axes, rule
                )
    report = ParityReport(rule=rule, cases=results, dev_examples=_rows(given[1:], specs, axes))
    report.note = note
    report.raise_if_failed(f"{path}: ONNX Runtime")
    return report


def _ragged(
    module: torch.nn.Module, specs: list[InputSpec], axes: Axes, reference: Any
) -> list[Case]:
    """The ragged cases, longest row first if the module packs with enforce_sorted=True."""
    cases = ragged_cases(specs, axes)
    try:
        reference(cases[0].feeds)
    except RuntimeError as exc:
        if "sorted in decreasing order" not in str(exc):
            raise ExportError(f"the module fails on a ragged batch: {exc}") from exc
        log.info("the module packs with enforce_sorted=True: cases sorted longest first")
        return ragged_cases(specs, axes, descending=True)
    return cases


def _rows(cases: Sequence[Case], specs: list[InputSpec], axes: Axes) -> int:
    """Rows in `cases` (each case is one row when no input has a batch axis)."""
    batched = [(s.name, d) for s in specs if (d := s.dim(axes.batch)) is not None]
    if not batched:
        return len(cases)
    name, dim = batched[0]
    return sum(int(c.feeds[name].shape[dim]) for c in cases)


__all__ = [
    "MAX_MODULE_OPSET",
    "METADATA_KEY",
    "MODULE_OPSET",
    "ModuleExportReport",
    "ParityError",
    "check_module_graph",
    "export_module",
]
