"""`bilstm export-module PACKAGE.MODULE:FACTORY STATE_DICT OUT.onnx`: `export_module` for a
module built by the user's own code and weights saved with `torch.save(model.state_dict())`.

The factory is imported from the current folder or the installed packages (as `python -m`
would), called with `--factory-kwargs`, and the weights are loaded with
`torch.load(weights_only=True)` (or safetensors): nothing is unpickled. The example inputs are
made from `--input` specs, e.g. `ids=int64[batch,time]:1..9999`, `lengths=lengths`,
`window=float32[time,batch,3]`.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from bilstm.core.errors import BiLSTMError, CheckpointError, InputError

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)

_SPEC = re.compile(
    r"^(?P<name>[A-Za-z_][\w.]*)=(?:(?P<lengths>lengths)|(?P<dtype>\w+)\[(?P<dims>[^\]]*)\]"
    r"(?::(?P<low>-?\d+)\.\.(?P<high>-?\d+))?)$"
)
_DTYPES = ("float32", "float64", "int64", "int32", "bool")


@dataclass(frozen=True)
class InputArg:
    """One `--input`: name, dtype, axes (an axis name or a fixed size each), id range."""

    name: str
    dtype: str
    dims: tuple[str | int, ...]
    low: int | None = None
    high: int | None = None
    lengths: bool = False


def parse_input(text: str, batch_axis: str = "batch", time_axis: str = "time") -> InputArg:
    """`NAME=DTYPE[AXES]` (`:LOW..HIGH` for integer ids) or `NAME=lengths`."""
    m = _SPEC.match(text.strip())
    if m is None:
        raise InputError(
            f"--input {text!r}: expected NAME=DTYPE[AXES] (e.g. ids=int64[batch,time]:1..9999, "
            "window=float32[time,batch,3]) or NAME=lengths"
        )
    if m["lengths"]:
        return InputArg(m["name"], "int64", (batch_axis,), lengths=True)
    dtype = m["dtype"]
    if dtype not in _DTYPES:
        raise InputError(f"--input {text!r}: dtype {dtype} is not one of {', '.join(_DTYPES)}")
    dims: list[str | int] = []
    for part in (p.strip() for p in m["dims"].split(",")):
        if part.isdigit() and int(part) > 0:
            dims.append(int(part))
        elif part in (batch_axis, time_axis):
            dims.append(part)
        else:
            raise InputError(
                f"--input {text!r}: axis {part!r} is neither {batch_axis!r}, {time_axis!r} nor "
                "a positive size"
            )
    integer = dtype.startswith("int")
    if integer and m["low"] is None:
        raise InputError(
            f"--input {text!r}: give the range of valid ids, e.g. {m['name']}={dtype}"
            f"[{m['dims']}]:1..VOCAB_SIZE-1"
        )
    if m["low"] is not None and (not integer or int(m["low"]) > int(m["high"])):
        raise InputError(f"--input {text!r}: a LOW..HIGH range is for integer inputs, LOW <= HIGH")
    low = int(m["low"]) if m["low"] is not None else None
    high = int(m["high"]) if m["high"] is not None else None
    return InputArg(m["name"], dtype, tuple(dims), low, high)


def example_inputs(
    specs: list[InputArg],
    batch: int,
    time: int,
    pad_value: float,
    batch_axis: str = "batch",
    time_axis: str = "time",
    seed: int = 0,
) -> list[Any]:
    """A padded example batch: lengths from `time` down, positions past them `pad_value`."""
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([max(1, time - (i * time) // batch) for i in range(batch)])
    out = []
    for s in specs:
        if s.lengths:
            out.append(lengths.clone())
            continue
        shape = [batch if d == batch_axis else time if d == time_axis else int(d) for d in s.dims]
        dtype = getattr(torch, s.dtype)
        if s.dtype == "bool":
            value = torch.ones(shape, dtype=torch.bool)
        elif s.low is not None and s.high is not None:
            value = torch.randint(s.low, s.high + 1, shape, generator=g, dtype=dtype)
        else:
            value = torch.randn(shape, generator=g).to(dtype)
        if batch_axis in s.dims and time_axis in s.dims:
            b, t = s.dims.index(batch_axis), s.dims.index(time_axis)
            grid = torch.arange(time)[None, :] < lengths[:, None]
            grid = grid if b < t else grid.T
            keep = [1] * len(shape)
            keep[b], keep[t] = batch, time
            valid = grid.reshape(keep).expand(shape)
            pad = False if s.dtype == "bool" else pad_value
            value = torch.where(valid, value, torch.tensor(pad, dtype=dtype))
        out.append(value)
    return out


def load_factory(target: str, kwargs: Mapping[str, Any]) -> Any:
    """Call `package.module:factory(**kwargs)`; the current folder is importable."""
    import torch

    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise InputError(f"{target!r}: expected package.module:factory (e.g. mymodels:build)")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        factory = importlib.import_module(module_name)
        for part in attr.split("."):
            factory = getattr(factory, part)
    except ImportError as exc:
        raise InputError(f"{target}: cannot import {module_name}: {exc}") from exc
    except AttributeError as exc:
        raise InputError(f"{target}: {module_name} has no {attr}") from exc
    if not callable(factory):
        raise InputError(f"{target}: {attr} is not callable")
    try:
        module = factory(**kwargs)
    except TypeError as exc:
        raise InputError(f"{target}: calling it with --factory-kwargs failed: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{target}: returned {type(module).__name__}, not a torch.nn.Module")
    return module


def load_state(path: Path, key: str | None) -> dict[str, Any]:
    """Weights from `torch.save(state_dict)` (weights_only=True) or a .safetensors file."""
    import torch

    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/pickle raise many types for a bad or unsafe file
        raise CheckpointError(
            f"{path}: cannot load it as weights (torch.load with weights_only=True, or "
            f"safetensors): {str(exc).splitlines()[0]}"
        ) from exc
    if key is not None:
        if not isinstance(state, Mapping) or key not in state:
            keys = list(state)[:10] if isinstance(state, Mapping) else []
            raise CheckpointError(f"{path}: no entry {key!r} (top-level keys: {keys})")
        state = state[key]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        hint = (
            f" (keys: {list(state)[:10]}; pick one with --state-key)"
            if isinstance(state, Mapping)
            else ""
        )
        raise CheckpointError(f"{path}: not a state dict of tensors{hint}")
    return dict(state)


@app.command()
def export_module_command(
    factory: Annotated[
        str, typer.Argument(help="package.module:factory that builds the nn.Module.")
    ],
    state_dict: Annotated[
        Path, typer.Argument(help="Its weights: torch.save(model.state_dict()) or .safetensors.")
    ],
    out: Annotated[Path, typer.Argument(help="The .onnx file to write.")],
    inputs: Annotated[
        list[str],
        typer.Option(
            "--input",
            # "\\[" : rich would read "[batch,time]" as a style tag and drop it
            help="forward's inputs in order: NAME=DTYPE\\[AXES] with axes 'batch', 'time' or a "
            "size, ':LOW..HIGH' for ids (ids=int64\\[batch,time]:1..9999), or NAME=lengths.",
        ),
    ],
    outputs: Annotated[
        list[str], typer.Option("--output", help="Names of the returned tensors, in order.")
    ],
    factory_kwargs: Annotated[
        str, typer.Option(help="JSON object of keyword arguments for the factory.")
    ] = "{}",
    state_key: Annotated[
        str | None, typer.Option(help="Entry of the saved dict that holds the state dict.")
    ] = None,
    pad_value: Annotated[float, typer.Option(help="Value at padded positions.")] = 0.0,
    example_batch: Annotated[int, typer.Option(min=2, help="Example batch size.")] = 4,
    example_time: Annotated[int, typer.Option(min=2, help="Example time length.")] = 16,
    opset: Annotated[int, typer.Option(min=18, max=21, help="ONNX opset.")] = 18,
    tolerance: Annotated[float, typer.Option(help="Parity bound x (1 + |value|).")] = 1e-5,
    reference_check: Annotated[
        bool,
        typer.Option(
            "--reference-check", help="Also compare every row with onnx.reference (slower)."
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
    debug: Annotated[bool, typer.Option("--debug")] = False,
) -> None:
    """Export your own PyTorch module with LSTM/GRU layers, padding-exact, checked on ragged
    batches against the module itself (docs/export-module.md)."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s: %(message)s",
    )
    try:
        report = _run(
            factory,
            state_dict,
            out,
            inputs,
            outputs,
            factory_kwargs,
            state_key,
            pad_value,
            example_batch,
            example_time,
            opset,
            tolerance,
            reference_check,
            force,
        )
    except BiLSTMError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for case in report.parity.cases:
        typer.echo(
            f"parity {case.case:<44} {case.output:<12} max abs {case.max_abs:.2e}  "
            f"max rel {case.max_rel:.2e}",
            err=True,
        )
    layers = ", ".join(
        f"{r['name']} ({r['cell']}, {r['num_layers']} layer(s), "
        f"{'bidirectional' if r['bidirectional'] else 'forward'})"
        for r in report.rnns
    )
    typer.echo(
        f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB) in {report.seconds:.2f} s: "
        f"{report.fused_nodes} fused RNN node(s), {report.scan_nodes} Scan node(s) for {layers}",
        err=True,
    )


def _run(
    factory: str,
    state_dict: Path,
    out: Path,
    inputs: list[str],
    outputs: list[str],
    factory_kwargs: str,
    state_key: str | None,
    pad_value: float,
    example_batch: int,
    example_time: int,
    opset: int,
    tolerance: float,
    reference_check: bool,
    force: bool,
) -> Any:
    from bilstm.core.outpaths import check_output_file
    from bilstm.export.module import export_module

    check_output_file(out, [state_dict], force=force, flag="OUT")
    specs = [parse_input(text) for text in inputs]
    if not specs or not outputs:
        raise InputError("give forward's inputs with --input and its outputs with --output")
    try:
        kwargs = json.loads(factory_kwargs)
    except json.JSONDecodeError as exc:
        raise InputError(f"--factory-kwargs is not JSON: {exc}") from exc
    if not isinstance(kwargs, dict):
        raise InputError("--factory-kwargs must be a JSON object, e.g. '{\"vocab_size\": 10000}'")
    module = load_factory(factory, kwargs)
    state = load_state(state_dict, state_key)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        details = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise CheckpointError(f"{state_dict}: does not fit {factory}: {details}") from exc
    dynamic_axes: dict[str, dict[int, str]] = {
        s.name: {i: str(d) for i, d in enumerate(s.dims) if isinstance(d, str)} for s in specs
    }
    lengths = next((s.name for s in specs if s.lengths), None)
    return export_module(
        module,
        example_inputs(specs, example_batch, example_time, pad_value),
        out,
        input_names=[s.name for s in specs],
        output_names=outputs,
        dynamic_axes=dynamic_axes,
        lengths=lengths,
        pad_value=pad_value,
        opset=opset,
        tolerance=tolerance,
        reference_check=reference_check,
        force=force,
    )
